"""The GCNs as the worker runs them: load from the model store, score a subgraph, explain a score.

A served version has two: the GCN that scores a step when it closes, and the arrival model, trained on the
partial graphs the worker sees on arrival (model_store.arrival). Step close scores with the PyG path
(``GCN.forward`` in eval mode) on the step's graph with undirected edges, exactly what
``model_store.inference.gcn_scores`` does on the full graph; arrival windows with ``score_rows``, each layer on
the rows the next one reads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray
from scipy import sparse

from model_store.fitting import RowPlan
from model_store.graph import gcn_rows, hop_rows, neighbours, row_block, row_entries
from model_store.inference import Scaler, gcn_scores, load_servable_gcn
from model_store.models.gcn import GCN
from model_store.registry import ModelStore


@dataclass(frozen=True)
class LoadedModel:
    gcn: GCN  # in eval mode
    scaler: Scaler
    threshold: float
    version: str
    # The model that scores on arrival, with its own threshold (same scaler and version); None: this one.
    arrival: LoadedModel | None = None
    _last_input: threading.local = field(default_factory=threading.local, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Explanations need the last layer's input. One hook for the model's lifetime, writing to a
        # thread-local: adding and removing hooks per call would race with another thread's forward.
        self.gcn.conv(-1).register_forward_pre_hook(self._keep_input)

    def _keep_input(self, _module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        self._last_input.value = args[0]

    @property
    def on_arrival(self) -> LoadedModel:
        """The model that scores transactions on arrival."""
        return self.arrival or self

    @property
    def layers(self) -> int:
        return len(self.gcn.convs)

    @property
    def n_features(self) -> int:
        """The model reads the first n features of an event (165 for "all", 93 for "local")."""
        return self.gcn.conv(0).in_channels

    def scale(self, raw: NDArray[np.float32]) -> NDArray[np.float32]:
        return self.scaler.transform(raw[:, : self.n_features])

    @classmethod
    def from_store(cls, store_dir: Path | str, ref: str = "latest") -> LoadedModel:
        """The GCN ``ref`` of the store with its arrival model, checked as ``load_servable_gcn`` checks them
        (ModelStoreError)."""
        manifest, gcn, scaler, arrival_gcn = load_servable_gcn(ModelStore(Path(store_dir)), ref)
        arrival = None
        if arrival_gcn is not None and manifest.arrival is not None:
            arrival = cls(arrival_gcn, scaler, manifest.arrival.threshold, manifest.version)
        return cls(gcn, scaler, manifest.threshold, manifest.version, arrival)


@dataclass(frozen=True)
class Scored:
    """GCN outputs on a subgraph (local node indices)."""

    probs: NDArray[np.float64]  # P(illicit) per node
    hidden: torch.Tensor  # input of the last layer, for explanations
    adj: sparse.csr_matrix  # the subgraph's undirected adjacency


def induced(adj: sparse.csr_matrix, nodes: NDArray[np.int64]) -> sparse.csr_matrix:
    """Adjacency of the subgraph induced by ``nodes`` (sorted), in their order."""
    return adj[nodes][:, nodes].tocsr()


def score(model: LoadedModel, x: NDArray[np.float32], adj: sparse.csr_matrix) -> Scored:
    """P(illicit) of every node of a graph given by scaled features and a symmetric adjacency."""
    coo = adj.tocoo()
    edge_index = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    probs = gcn_scores(model.gcn, x, edge_index)  # the offline path itself: final scores must equal it
    return Scored(probs, model._last_input.value, adj)


def score_rows(model: LoadedModel, view: sparse.csr_matrix, todo: NDArray[np.int64],
               features: Callable[[NDArray[np.int64]], NDArray[np.float32]]) -> tuple[Scored, NDArray[np.int64]]:
    """P(illicit) of the nodes ``todo`` (sorted) of the graph ``view``, computing each layer on the rows the next
    one reads only (``GCN.forward_rows``): the layers-hop ball of ``todo`` feeds the first layer, its inner balls
    the others. On arrival windows that is half the work of PyG's forward on the (layers+1)-hop ball, whose
    outer shells only give degrees (benchmarks/bench_window_scoring.py). Only the rows of Â the layers read are
    built (``gcn_rows``, not Â of the whole view: on a step's last windows the view is most of the step), and
    row blocks are cut without scipy's per-call checks (``row_block``); the outputs are those of Â built whole.

    ``features(seqs)``: the scaled features of those nodes. Returns the outputs on R_2, the 2-hop ball of
    ``todo`` (in its order: the probabilities at ``todo``, the last layer's input on R_1, zero elsewhere — what
    ``top_neighbours`` reads), and R_2. Models of two layers or more (every GCN here has three)."""
    # R_0 .. R_{L-1} for the layers, and R_2 for the explanations (the self loops Â adds change no row set)
    hops = hop_rows(view, todo, max(model.layers - 1, 2))
    layer_hops = hops[:model.layers]
    adj = gcn_rows(view, layer_hops[-1])  # the rows the layers read, not Â of the whole view

    def ax_rows(rows: NDArray[np.int64]) -> torch.Tensor:
        cols = np.unique(neighbours(adj, rows))
        return torch.from_numpy((row_block(adj, rows, cols) @ features(cols)).astype(np.float32))

    plan = RowPlan(adj, ax_rows, todo, model.layers, layer_hops)
    with torch.no_grad():
        logits, last_input = model.gcn.forward_rows_with_input(plan.ax, plan.blocks)
    inner = hops[1]  # R_1: the last layer's input rows, todo and its neighbours
    nodes = hops[2]  # R_1's neighbours too: its degrees in the view, as in Â
    probs = np.zeros(nodes.size)
    probs[np.searchsorted(nodes, plan.targets)] = torch.softmax(logits, dim=1)[:, 1].numpy()
    hidden = torch.zeros((nodes.size, last_input.shape[1]), dtype=last_input.dtype)
    hidden[np.searchsorted(nodes, inner)] = last_input
    return Scored(probs, hidden, induced(view, nodes)), nodes


def top_neighbours(model: LoadedModel, scored: Scored, nodes: NDArray[np.int64],
                   k: int = 3) -> list[list[tuple[int, float]]]:
    """For each node, the k neighbours that moved its illicit logit margin most in the last layer.

    The last layer computes out_v = Σ_j Â_vj (W h_j) + b, so neighbour j adds Â_vj · (W h_j)[1] − (W h_j)[0]
    to logit(illicit) − logit(licit): signed, exact for that layer, and one matrix-vector product.
    Returns (local index, contribution) pairs, largest |contribution| first.
    """
    w = model.gcn.conv(-1).lin.weight.detach()
    margin = (scored.hidden @ (w[1] - w[0])).numpy().astype(np.float64)
    deg = np.diff(scored.adj.indptr) + 1.0  # GCN degrees count the self loop
    # Every node's neighbours at once: row r of the block is nodes[r]'s; one sort orders them all by row, then
    # |contribution| descending, then position in the row (what a stable sort of each row alone gives).
    take, indptr = row_entries(scored.adj, nodes)
    nb = scored.adj.indices[take]
    row = np.repeat(np.arange(nodes.size), np.diff(indptr))
    contrib = margin[nb] / np.sqrt(deg[nodes][row] * deg[nb])
    order = np.lexsort((np.arange(nb.size), -np.abs(contrib), row))
    rank = np.arange(nb.size) - indptr[row[order]]  # place within its row, after the sort
    kept = order[rank < k]
    nb_kept, contrib_kept = nb[kept].tolist(), contrib[kept].tolist()
    ends = np.minimum(np.diff(indptr), k).cumsum().tolist()
    starts = [0, *ends[:-1]] if ends else []
    return [list(zip(nb_kept[a:b], contrib_kept[a:b], strict=True)) for a, b in zip(starts, ends, strict=True)]
