"""Arrival views: the graphs the worker scores a transaction on when it arrives, built offline.

The worker's side (the same scores from Redis, whatever the batching) is tested in
tests/integration/stream_app/test_stream_core.py; here, the views themselves on a hand-sized data set.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model_store.arrival import ahead, arrival_view, arrival_views, step_adjacency, window_ball
from model_store.inference import gcn_scores
from model_store.models.gcn import GCN
from replay.data.dataset import EllipticDataset
from txmon.core.elliptic_format import N_FEATURES

WINDOW = 4


@pytest.fixture(scope="module")
def ds() -> EllipticDataset:
    """Step 1: a chain of 11 transactions plus two chords, some edges from later to earlier rows; step 2: 6 with
    random edges; one cross-step edge."""
    rng = np.random.default_rng(5)
    steps = np.array([1] * 11 + [2] * 6, dtype=np.int16)
    ids = np.arange(100, 117, dtype=np.int64)
    chain = [(i + 1, i) if i % 3 else (i, i + 1) for i in range(10)] + [(9, 2), (4, 6)]
    edges = chain + [(a, b) for a in range(11, 17) for b in range(11, 17) if a != b and rng.random() < 0.2] + [(0, 12)]
    return EllipticDataset(ids, steps, rng.normal(size=(17, N_FEATURES)).astype(np.float32),
                           np.full(17, -1, np.int8), ids[np.array(edges)])


def test_a_window_sees_the_step_up_to_its_end(ds: EllipticDataset) -> None:
    rows, adj = step_adjacency(ds, 1)
    assert rows.tolist() == list(range(11)) and (adj != adj.T).nnz == 0 and adj.diagonal().sum() == 0
    assert adj.nnz == 2 * len({frozenset(e) for e in ds.edge_rows.tolist() if max(e) < 11})  # not the cross-step one
    for w, end in ((0, 4), (1, 8), (2, 11)):
        view = arrival_view(adj, w, WINDOW)
        assert view.shape == (end, end) and (view != adj[:end, :end]).nnz == 0
    assert ahead(np.arange(11), 11, WINDOW).tolist() == [7] * 4 + [3] * 4 + [0] * 3


def test_views_hold_each_transaction_once_in_its_windows_ball(ds: EllipticDataset) -> None:
    v = arrival_views(ds, [1, 2], layers=2, window_size=WINDOW)
    assert sorted(v.target_rows.tolist()) == list(range(17))
    assert (v.rows[v.targets] == v.target_rows).all()
    src, dst = v.edge_index.numpy()
    # no edge leaves a ball, and none reaches a transaction after the target's window
    seq = np.r_[np.arange(11), np.arange(6)]
    for t, row in zip(v.targets, v.target_rows, strict=True):
        end = min((seq[row] // WINDOW + 1) * WINDOW, 11 if row < 11 else 6)
        ball = {t}
        for _ in range(3):  # layers + 1 hops
            ball |= set(dst[np.isin(src, list(ball))].tolist())
        assert all(seq[v.rows[n]] < end and ds.steps[v.rows[n]] == ds.steps[row] for n in ball)
    assert not v.has_features.all()  # outer shells: their features never matter, zero as in the worker
    assert (v.features(ds.features)[~v.has_features] == 0).all()


def test_a_gcn_on_the_views_equals_the_gcn_on_each_windows_whole_view(ds: EllipticDataset) -> None:
    """The ball is exact: the union of balls gives each target the score of the GCN on its whole view."""
    torch.manual_seed(0)
    gcn = GCN(N_FEATURES, hidden=8, layers=2).eval()
    v = arrival_views(ds, [1, 2], layers=2, window_size=WINDOW)
    got = np.empty(ds.n_nodes)
    got[v.target_rows] = gcn_scores(gcn, v.features(ds.features), v.edge_index)[v.targets]
    for step in (1, 2):
        rows, adj = step_adjacency(ds, step)
        for w in range(-(-rows.size // WINDOW)):
            view = arrival_view(adj, w, WINDOW).tocoo()
            edges = torch.from_numpy(np.vstack([view.row, view.col]).astype(np.int64))
            whole = gcn_scores(gcn, ds.features[rows[: view.shape[0]]], edges)
            todo = np.arange(w * WINDOW, view.shape[0])
            np.testing.assert_allclose(got[rows[todo]], whole[todo], atol=1e-6)
    nodes, need = window_ball(adj, np.array([0]), 2)
    assert set(need) <= set(nodes) and 0 in need
