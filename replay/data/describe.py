"""Statistics of a data set, to check it against the published Elliptic numbers."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.sparse.csgraph import connected_components

from replay.data.dataset import EllipticDataset
from txmon.core.elliptic_format import ILLICIT, LICIT, UNKNOWN
from txmon.core.graph import local_clustering, undirected_adjacency


@dataclass(frozen=True)
class StepSummary:
    """One step of a data set as loaded (its labels included); not the worker's StepStats record."""

    step: int
    nodes: int
    edges: int
    edges_per_node: float
    density: float
    components: int
    illicit: int
    licit: int
    unknown: int
    max_in_degree: int
    max_out_degree: int
    clustering: float


@dataclass(frozen=True)
class DegreeSummary:
    mean: float
    median: float
    p90: float
    p99: float
    max: int


@dataclass(frozen=True)
class DatasetStats:
    nodes: int
    edges: int
    steps: int
    edges_per_node: float
    step_size_min: int
    step_size_mean: float
    step_size_max: int
    share_illicit: float
    share_licit: float
    share_unknown: float
    cross_step_edges: int
    self_loops: int
    duplicate_edges: int
    steps_weakly_connected: int
    clustering: float  # average local clustering, undirected, nodes of degree < 2 count as 0
    transitivity: float
    in_degree: DegreeSummary
    out_degree: DegreeSummary
    # Homophily: how often a labelled neighbour of an illicit node is illicit, vs the base rate.
    illicit_neighbour_share: float
    illicit_base_share: float
    per_step: list[StepSummary]

    def to_dict(self) -> dict:
        return asdict(self)


def _degree_summary(deg: NDArray[np.int64]) -> DegreeSummary:
    if deg.size == 0:
        return DegreeSummary(0.0, 0.0, 0.0, 0.0, 0)
    p50, p90, p99 = np.percentile(deg, [50, 90, 99])
    return DegreeSummary(float(deg.mean()), float(p50), float(p90), float(p99), int(deg.max()))


def describe(ds: EllipticDataset) -> DatasetStats:
    n = ds.n_nodes
    er = ds.edge_rows
    src, dst = er[:, 0], er[:, 1]
    steps = ds.steps.astype(np.int64)
    adj = undirected_adjacency(n, src, dst)
    clust, transitivity = local_clustering(adj)
    deg_in = np.bincount(dst, minlength=n)
    deg_out = np.bincount(src, minlength=n)
    _, comp = connected_components(adj, directed=False)

    pairs = np.unique(er, axis=0) if len(er) else er
    same_step = steps[src] == steps[dst]
    step_values = np.unique(steps)
    per_step: list[StepSummary] = []
    for t in step_values:
        rows = steps == t
        k = int(rows.sum())
        e = int(np.sum(same_step & (steps[src] == t)))
        labels = ds.labels[rows]
        per_step.append(StepSummary(
            step=int(t), nodes=k, edges=e, edges_per_node=e / k if k else 0.0,
            density=e / (k * (k - 1)) if k > 1 else 0.0,
            components=int(np.unique(comp[rows]).size),
            illicit=int(np.sum(labels == ILLICIT)), licit=int(np.sum(labels == LICIT)),
            unknown=int(np.sum(labels == UNKNOWN)),
            max_in_degree=int(deg_in[rows].max(initial=0)), max_out_degree=int(deg_out[rows].max(initial=0)),
            clustering=float(clust[rows].mean()) if k else 0.0,
        ))

    # Homophily over labelled-labelled edges touching an illicit node.
    lab_s, lab_d = ds.labels[src], ds.labels[dst]
    both = (lab_s != UNKNOWN) & (lab_d != UNKNOWN)
    ends_ill = np.r_[lab_d[both & (lab_s == ILLICIT)], lab_s[both & (lab_d == ILLICIT)]]
    known = ds.labels[ds.labels != UNKNOWN]
    sizes = np.array([s.nodes for s in per_step]) if per_step else np.zeros(1, dtype=np.int64)
    return DatasetStats(
        nodes=n, edges=ds.n_edges, steps=len(step_values), edges_per_node=ds.n_edges / n if n else 0.0,
        step_size_min=int(sizes.min()), step_size_mean=float(sizes.mean()), step_size_max=int(sizes.max()),
        share_illicit=float(np.mean(ds.labels == ILLICIT)) if n else 0.0,
        share_licit=float(np.mean(ds.labels == LICIT)) if n else 0.0,
        share_unknown=float(np.mean(ds.labels == UNKNOWN)) if n else 0.0,
        cross_step_edges=int(np.sum(~same_step)), self_loops=int(np.sum(src == dst)),
        duplicate_edges=int(len(er) - len(pairs)),
        steps_weakly_connected=sum(s.components == 1 for s in per_step),
        clustering=float(clust.mean()) if n else 0.0, transitivity=transitivity,
        in_degree=_degree_summary(deg_in), out_degree=_degree_summary(deg_out),
        illicit_neighbour_share=float(np.mean(ends_ill == ILLICIT)) if ends_ill.size else 0.0,
        illicit_base_share=float(np.mean(known == ILLICIT)) if known.size else 0.0,
        per_step=per_step,
    )
