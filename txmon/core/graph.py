"""Graph primitives on integer node rows (scipy sparse), shared by the worker, the generator and the analysis."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import sparse


def undirected_adjacency(n: int, src: NDArray[np.int64], dst: NDArray[np.int64]) -> sparse.csr_matrix:
    """Simple undirected graph: no self loops, each neighbour once."""
    keep = src != dst
    s, d = src[keep], dst[keep]
    a = sparse.coo_matrix((np.ones(2 * len(s)), (np.r_[s, d], np.r_[d, s])), shape=(n, n)).tocsr()
    a.data[:] = 1.0
    return a


def local_clustering(adj: sparse.csr_matrix) -> tuple[NDArray[np.float64], float]:
    """Per-node clustering coefficient and the global transitivity."""
    deg = np.asarray(adj.sum(axis=1)).ravel()
    triangles = np.asarray((adj @ adj).multiply(adj).sum(axis=1)).ravel() / 2.0
    wedges = deg * (deg - 1) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.where(wedges > 0, triangles / wedges, 0.0)
    total_wedges = wedges.sum()
    return c, float(triangles.sum() / total_wedges) if total_wedges else 0.0
