"""stream_app.scorer.score_rows: the arrival path, layer by layer on the rows each layer needs, gives PyG's scores
and explanations on the (layers + 1)-hop ball (model_store.arrival.window_ball) — what the worker computed before."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model_store.arrival import window_ball
from model_store.inference import Scaler
from model_store.models.gcn import GCN
from stream_app.scorer import LoadedModel, Scored, induced, score, score_rows, top_neighbours
from txmon.core.graph import undirected_adjacency


@pytest.mark.parametrize("layers", [2, 3])
def test_score_rows_equals_pyg_on_the_ball(layers: int) -> None:
    rng = np.random.default_rng(layers)
    n = 400
    src, dst = rng.integers(0, n, 700), rng.integers(0, n, 700)
    hub = rng.integers(0, n, 60)  # a hub, as Elliptic's steps have
    view = undirected_adjacency(n, np.r_[src, hub], np.r_[dst, np.zeros(60, dtype=np.int64)])
    x = rng.normal(size=(n, 8)).astype(np.float32)
    torch.manual_seed(0)
    model = LoadedModel(GCN(8, hidden=16, layers=layers).eval(), Scaler.fit(x), 0.5, "t")
    todo = np.sort(rng.choice(np.arange(100, 140), 25, replace=False))

    nodes, need = window_ball(view, todo, layers)
    xb = np.zeros((nodes.size, 8), dtype=np.float32)
    xb[np.searchsorted(nodes, need)] = x[need]
    want = score(model, xb, induced(view, nodes))
    at_want = np.searchsorted(nodes, todo)

    asked: list[np.ndarray] = []

    def features(seqs: np.ndarray) -> np.ndarray:
        asked.append(seqs)
        return x[seqs]

    got, got_nodes = score_rows(model, view, todo, features)
    at_got = np.searchsorted(got_nodes, todo)
    np.testing.assert_allclose(got.probs[at_got], want.probs[at_want], atol=1e-6, rtol=0)
    assert np.isin(np.concatenate(asked), need).all()  # no features beyond the layers-hop ball are read
    for a, b in zip(top_neighbours(model, got, at_got, k=5), top_neighbours(model, want, at_want, k=5), strict=True):
        assert [got_nodes[j] for j, _ in a] == [nodes[j] for j, _ in b]
        np.testing.assert_allclose([w for _, w in a], [w for _, w in b], atol=1e-5, rtol=0)


def _top_neighbours_one_by_one(model: LoadedModel, scored: Scored, nodes: np.ndarray,
                               k: int) -> list[list[tuple[int, float]]]:
    """The definition, a node at a time: a stable sort of each node's neighbours by |contribution|."""
    w = model.gcn.conv(-1).lin.weight.detach()
    margin = (scored.hidden @ (w[1] - w[0])).numpy().astype(np.float64)
    deg = np.diff(scored.adj.indptr) + 1.0
    out = []
    for v in nodes:
        nb = scored.adj.indices[scored.adj.indptr[v]: scored.adj.indptr[v + 1]]
        contrib = margin[nb] / np.sqrt(deg[v] * deg[nb])
        order = np.argsort(-np.abs(contrib), kind="stable")[:k]
        out.append([(int(nb[i]), float(contrib[i])) for i in order])
    return out


@pytest.mark.parametrize("k", [1, 3, 50])
def test_top_neighbours_is_each_node_sorted_alone(k: int) -> None:
    rng = np.random.default_rng(k)
    n = 120
    adj = undirected_adjacency(n - 10, rng.integers(0, n - 10, 300), rng.integers(0, n - 10, 300))
    adj.resize((n, n))  # the last 10 nodes isolated: no neighbours to explain with
    torch.manual_seed(k)
    model = LoadedModel(GCN(8, hidden=16).eval(), Scaler.fit(rng.normal(size=(10, 8))), 0.5, "t")
    hidden = torch.from_numpy(rng.normal(size=(n, 16)).astype(np.float32))
    scored = Scored(np.zeros(n), hidden, adj)
    nodes = np.r_[rng.choice(n - 10, 40, replace=False), n - 1, 3, 3]  # any order, repeats, an isolated node
    assert top_neighbours(model, scored, nodes, k=k) == _top_neighbours_one_by_one(model, scored, nodes, k)
    assert top_neighbours(model, scored, nodes[:0], k=k) == []
    # A star whose leaves weigh the same: the ties keep the neighbours' order.
    star = Scored(np.zeros(7), hidden[:7].clone(), undirected_adjacency(7, np.zeros(6, dtype=np.int64),
                                                                       np.arange(1, 7)))
    star.hidden[1:] = 0  # zero contributions: exact ties
    got = top_neighbours(model, star, np.array([0]), k=k)
    assert got == _top_neighbours_one_by_one(model, star, np.array([0]), k)
    row = star.adj.indices[star.adj.indptr[0]:star.adj.indptr[1]]
    assert [j for j, _ in got[0]] == row[:k].tolist() and len({w for _, w in got[0]}) == 1
