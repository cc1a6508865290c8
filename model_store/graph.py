"""Graph matrices shared by the models: undirected edges, GCN normalisation, row blocks."""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import NDArray
from scipy import sparse
from torch_geometric.nn.conv.gcn_conv import gcn_norm


def undirected_edge_index(edge_rows: NDArray[np.int64], n: int) -> torch.Tensor:
    """Both directions of every edge, once, no self loops: money flows matter both ways for AML."""
    if len(edge_rows) == 0:
        return torch.zeros((2, 0), dtype=torch.long)
    s, d = edge_rows[:, 0].astype(np.int64), edge_rows[:, 1].astype(np.int64)
    keep = s != d
    s, d = s[keep], d[keep]
    # One integer per directed pair: np.unique on it is ~3x faster than on rows (axis=0), same sorted order.
    key = np.unique(np.concatenate([s * n + d, d * n + s]))
    return torch.from_numpy(np.stack([key // n, key % n])).long()


def gcn_adjacency(edge_index: torch.Tensor, n: int) -> sparse.csr_matrix:
    """Â = D^-1/2 (A + I) D^-1/2 with exactly PyG's GCNConv weights, as out = Â @ x."""
    ei, w = gcn_norm(edge_index, None, num_nodes=n, add_self_loops=True)
    src, dst = ei.numpy()
    return sparse.csr_matrix((w.numpy().astype(np.float64), (dst, src)), shape=(n, n))


def row_entries(adj: sparse.csr_matrix, rows: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """(where the entries of ``rows`` are in adj.indices and adj.data, in row order; the indptr of those rows)."""
    starts = adj.indptr[rows]
    counts = adj.indptr[rows + 1] - starts
    indptr = np.zeros(rows.size + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return np.repeat(starts - indptr[:-1], counts) + np.arange(indptr[-1]), indptr


def neighbours(adj: sparse.csr_matrix, rows: NDArray[np.int64]) -> NDArray[np.int64]:
    """The column indices of ``rows``' entries, in row order: ``adj[rows].indices``."""
    return adj.indices[row_entries(adj, rows)[0]]


def row_block(adj: sparse.csr_matrix, rows: NDArray[np.int64], cols: NDArray[np.int64]) -> sparse.csr_matrix:
    """``adj[rows][:, cols]`` where ``cols`` (sorted, distinct) holds every column ``rows`` use — the blocks a
    GCN's layers read: the same matrix, entries in the same order, without scipy's checks on each indexing
    step (most of the cost on a small block). ValueError when a column of ``rows`` is not in ``cols``."""
    take, indptr = row_entries(adj, rows)
    used = adj.indices[take]
    at = np.searchsorted(cols, used)
    if used.size and (at.max() >= cols.size or not np.array_equal(cols[at], used)):
        raise ValueError("row_block: the rows use columns outside cols")
    return sparse.csr_matrix((adj.data[take], at, indptr), shape=(rows.size, cols.size))


def gcn_rows(adj: sparse.csr_matrix, rows: NDArray[np.int64]) -> sparse.csr_matrix:
    """Rows ``rows`` (distinct) of Â for the graph of ``adj`` (symmetric, no self loops, no repeated entries), in
    an n × n matrix whose other rows are empty: bit for bit ``gcn_adjacency``'s values there, at the cost of those
    rows — for callers that read a few rows of a large graph (an arrival window's ball in its step)."""
    n = adj.shape[0]
    # gcn_norm's own arithmetic: float32 degrees with the self loop, torch's pow(-0.5), then d_j^-1/2 · d_i^-1/2
    deg = torch.from_numpy((np.diff(adj.indptr) + 1).astype(np.float32))
    dis = deg.pow_(-0.5).numpy()
    take, indptr = row_entries(adj, rows)
    dst = np.concatenate([np.repeat(rows, np.diff(indptr)), rows])
    src = np.concatenate([adj.indices[take], rows])
    order = np.lexsort((src, dst))  # CSR order, as scipy's COO conversion leaves gcn_adjacency's
    dst, src = dst[order], src[order]
    w = (dis[src] * dis[dst]).astype(np.float64)
    return sparse.csr_matrix((w, src, np.searchsorted(dst, np.arange(n + 1))), shape=(n, n))


def transition_matrix(edge_index: torch.Tensor, n: int) -> sparse.csr_matrix:
    """T = D^-1 A (rows of isolated nodes stay zero)."""
    src, dst = edge_index.numpy()
    a = sparse.csr_matrix((np.ones(len(src)), (src, dst)), shape=(n, n))
    deg = np.asarray(a.sum(axis=1)).ravel()
    return sparse.diags(np.where(deg > 0, 1.0 / np.maximum(deg, 1), 0.0)) @ a


def hop_rows(adj: sparse.csr_matrix, rows: NDArray[np.int64], hops: int) -> list[NDArray[np.int64]]:
    """[rows, rows ∪ N(rows), ...]: the nodes each GCN layer must compute, innermost last."""
    out = [np.unique(rows)]
    for _ in range(hops):
        nxt = neighbours(adj, out[-1])
        out.append(np.union1d(out[-1], nxt))
    return out
