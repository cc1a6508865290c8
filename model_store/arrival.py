"""Arrival views: the graphs a transaction is scored on when it arrives, built offline exactly as the worker does.

The worker scores a step's transactions in windows of ``window_size`` consecutive seqs, once every seq up to the
window's end has arrived, on the graph of exactly those transactions (``arrival_view``): a transaction sees the
transactions before it and its window, rarely its outputs. The GCN's output at a node depends on the features
within ``layers`` hops and on those nodes' degrees, so the subgraph induced by the ``layers + 1``-hop ball of the
window (``window_ball``) gives the same scores as the whole view. ``arrival_views`` calls the two for every
window of every step of a data set and joins the balls into one graph, so training and the offline simulation
see what the worker sees: the worker (``stream_app.processor``) builds the same ``arrival_view`` and computes the
same outputs layer by layer on the rows each layer needs (``stream_app.scorer.score_rows``, equal to a few 1e-7).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from scipy import sparse

from model_store.graph import hop_rows
from replay.data.dataset import EllipticDataset
from txmon.core.contracts import ARRIVAL_WINDOW
from txmon.core.graph import undirected_adjacency


def window_end(window: int, window_size: int, size: int) -> int:
    """One past the last seq of ``window`` in a step of ``size`` seqs."""
    return min((window + 1) * window_size, size)


def ahead(seq: NDArray[np.int64], size: NDArray[np.int64] | int,
          window_size: int = ARRIVAL_WINDOW) -> NDArray[np.int64]:
    """How many transactions of its step (of ``size``) come after the window of the transaction at ``seq``: what
    is still to come when its arrival score is known."""
    return np.asarray(size - np.minimum((seq // window_size + 1) * window_size, size), dtype=np.int64)


def arrival_view(step_adj: sparse.csr_matrix, window: int, window_size: int) -> sparse.csr_matrix:
    """The graph the worker scores ``window`` on: the step's transactions with seq below the window's end."""
    end = window_end(window, window_size, step_adj.shape[0])
    return step_adj[:end, :end].tocsr()


def window_ball(view: sparse.csr_matrix, todo: NDArray[np.int64],
                layers: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """(nodes, need): the ``layers + 1``-hop ball of ``todo`` in ``view`` (sorted), whose induced subgraph gives a
    ``layers``-layer GCN's exact output at ``todo``, and its ``layers``-hop part, the only nodes whose features
    matter (the outer shell only gives the others their degrees)."""
    hops = hop_rows(view, todo, layers + 1)
    return hops[-1], hops[layers]


def step_adjacency(ds: EllipticDataset, step: int) -> tuple[NDArray[np.int64], sparse.csr_matrix]:
    """(rows, adjacency over seqs) of one step as a replay sends it: seq = position in the data set's row order
    (producer.plan), edges inside the step only, undirected, no self loops."""
    rows = np.flatnonzero(ds.steps == step)
    pos = np.full(ds.n_nodes, -1, dtype=np.int64)
    pos[rows] = np.arange(rows.size)
    er = ds.edge_rows
    a, b = pos[er[:, 0]], pos[er[:, 1]]
    keep = (a >= 0) & (b >= 0)
    return rows, undirected_adjacency(rows.size, a[keep], b[keep])


@dataclass(frozen=True)
class ArrivalViews:
    """Every window's ball of some steps as one disjoint graph: a GCN on it gives each target its arrival score.

    rows: the data set row of each node (a transaction is a node once per window whose ball holds it);
    has_features: False on the outer shells, whose features the worker leaves at zero (they never matter);
    targets: the node at which each transaction is scored (once per transaction, in its own window's ball);
    target_rows: that transaction's data set row; target_ahead: how many transactions of its step come after its
    window's end, i.e. how much earlier than step close its arrival score is known.
    """

    rows: NDArray[np.int64]
    has_features: NDArray[np.bool_]
    edge_index: torch.Tensor  # both directions, local node ids
    targets: NDArray[np.int64]
    target_rows: NDArray[np.int64]
    target_ahead: NDArray[np.int64]

    @property
    def n_nodes(self) -> int:
        return self.rows.size

    def features(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        """The nodes' features from the data set's (scaled) features ``x``: zeros on the shells, as in the worker."""
        out = x[self.rows]
        out[~self.has_features] = 0.0
        return out


def arrival_views(ds: EllipticDataset, steps: Iterable[int | np.integer], layers: int,
                  window_size: int = ARRIVAL_WINDOW) -> ArrivalViews:
    """The arrival views of every window of ``steps`` for a ``layers``-layer GCN, built with the worker's
    functions (``arrival_view``, ``window_ball``)."""
    rows_out: list[NDArray[np.int64]] = []
    feat_out: list[NDArray[np.bool_]] = []
    src_out: list[NDArray[np.int64]] = []
    dst_out: list[NDArray[np.int64]] = []
    tgt_out: list[NDArray[np.int64]] = []
    trow_out: list[NDArray[np.int64]] = []
    ahead_out: list[NDArray[np.int64]] = []
    offset = 0
    for step in steps:
        rows, adj = step_adjacency(ds, int(step))
        n = rows.size
        for w in range(-(-n // window_size)):
            todo = np.arange(w * window_size, window_end(w, window_size, n))
            view = arrival_view(adj, w, window_size)
            nodes, need = window_ball(view, todo, layers)
            sub = view[nodes][:, nodes].tocoo()
            rows_out.append(rows[nodes])
            feat_out.append(np.isin(nodes, need))
            src_out.append(sub.row.astype(np.int64) + offset)
            dst_out.append(sub.col.astype(np.int64) + offset)
            tgt_out.append(np.searchsorted(nodes, todo) + offset)
            trow_out.append(rows[todo])
            ahead_out.append(ahead(todo, n, window_size))
            offset += nodes.size
    edge_index = torch.from_numpy(np.vstack([_ints(src_out), _ints(dst_out)]))
    has_features = np.concatenate(feat_out) if feat_out else np.zeros(0, dtype=bool)
    return ArrivalViews(_ints(rows_out), has_features, edge_index, _ints(tgt_out), _ints(trow_out), _ints(ahead_out))


def _ints(parts: list[NDArray[np.int64]]) -> NDArray[np.int64]:
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)
