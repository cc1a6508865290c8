"""The numbers: per-step and cumulative graph statistics, degree distributions and their fits.

Definitions (the report repeats them):
- the graph of step t is the subgraph induced by the transactions of step t; the cumulative graph
  at t is induced by the transactions of steps 1..t;
- edges are rows of the edge list inside the subgraph (directed, as published: 234,355);
- average in-degree = average out-degree = edges / nodes (every edge has both ends inside);
- density is directed: edges / (nodes · (nodes − 1));
- components are weakly connected components, isolated nodes included;
- clustering is the average local clustering coefficient of the simple undirected graph (no
  self loops, each neighbour once; nodes of degree < 2 count as 0, as networkx does);
  transitivity is 3 · triangles / connected triples of that same graph.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy.sparse.csgraph import connected_components

from replay.data.dataset import EllipticDataset
from txmon.core.contracts import PowerLawFit
from txmon.core.fits import (
    DensificationFit,
    TailFit,
    densification_series,
    fit_densification,
    fit_power_law,
    fit_tail,
)
from txmon.core.graph import local_clustering, undirected_adjacency
from txmon.core.progress import PhaseProgress


@dataclass(frozen=True)
class GraphStats:
    step: int  # the step, or the last step of a cumulative graph
    nodes: int
    edges: int
    avg_in_degree: float
    avg_out_degree: float
    max_in_degree: int
    max_out_degree: int
    density: float
    components: int
    triangles: int
    wedges: int  # connected triples (paths of length 2) of the undirected graph
    clustering: float
    transitivity: float


@dataclass(frozen=True)
class DegreeDistribution:
    direction: str  # "in" or "out"
    degree: list[int]  # distinct degrees, ascending (0 included)
    count: list[int]  # nodes with that degree
    nodes: int
    positive: int  # nodes with degree > 0: the power-law fit only sees these
    mean: float
    max: int
    fit: TailFit | None

    def values(self) -> NDArray[np.int64]:
        """The degree of every node (order lost), rebuilt from the histogram."""
        return np.repeat(np.asarray(self.degree, dtype=np.int64), self.count)


@dataclass(frozen=True)
class StepFits:
    step: int
    in_degree: PowerLawFit | None
    out_degree: PowerLawFit | None


@dataclass(frozen=True)
class NetworkAnalysis:
    per_step: list[GraphStats]
    cumulative: list[GraphStats]
    cross_step_edges: int
    self_loops: int
    in_degree: DegreeDistribution  # of the whole graph (= cumulative at the last step)
    out_degree: DegreeDistribution
    densification: DensificationFit | None  # cumulative E(t) vs N(t); None with a single step
    densification_across_steps: DensificationFit | None  # E_t vs N_t of the steps themselves
    densification_history: list[DensificationFit | None]  # over steps 1..t, for each t
    densification_window: list[DensificationFit | None]  # over the last `window` steps, for each t
    window: int
    step_fits: list[StepFits] = field(default_factory=list)  # empty unless asked for

    @property
    def steps(self) -> list[int]:
        return [s.step for s in self.per_step]


def graph_stats(step: int, n: int, src: NDArray[np.int64], dst: NDArray[np.int64]) -> GraphStats:
    """Statistics of a graph on nodes 0..n-1 with directed edges src → dst."""
    e = len(src)
    adj = undirected_adjacency(n, src, dst)
    clust, transitivity = local_clustering(adj)
    deg = np.diff(adj.indptr).astype(np.int64)
    wedges = int(np.sum(deg * (deg - 1) // 2))
    return GraphStats(
        step=step, nodes=n, edges=e,
        avg_in_degree=e / n if n else 0.0, avg_out_degree=e / n if n else 0.0,
        max_in_degree=int(np.bincount(dst, minlength=n).max(initial=0)),
        max_out_degree=int(np.bincount(src, minlength=n).max(initial=0)),
        density=e / (n * (n - 1)) if n > 1 else 0.0,
        components=int(connected_components(adj, directed=False)[0]) if n else 0,
        triangles=round(transitivity * wedges / 3),  # transitivity = 3·triangles / wedges
        wedges=wedges, clustering=float(clust.mean()) if n else 0.0, transitivity=transitivity,
    )


def merge_disjoint(a: GraphStats, b: GraphStats) -> GraphStats:
    """Statistics of the union of two graphs with no edge between them (b's step is kept)."""
    n, e, w = a.nodes + b.nodes, a.edges + b.edges, a.wedges + b.wedges
    t = a.triangles + b.triangles
    return GraphStats(
        step=b.step, nodes=n, edges=e, avg_in_degree=e / n if n else 0.0, avg_out_degree=e / n if n else 0.0,
        max_in_degree=max(a.max_in_degree, b.max_in_degree), max_out_degree=max(a.max_out_degree, b.max_out_degree),
        density=e / (n * (n - 1)) if n > 1 else 0.0, components=a.components + b.components,
        triangles=t, wedges=w, clustering=(a.clustering * a.nodes + b.clustering * b.nodes) / n if n else 0.0,
        transitivity=3 * t / w if w else 0.0,
    )


def _by_step(ds: EllipticDataset) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """Steps, their first row in step order, and the edges renumbered into step order."""
    steps = ds.steps.astype(np.int64)
    order = np.argsort(steps, kind="stable")
    pos = np.empty(len(order), dtype=np.int64)
    pos[order] = np.arange(len(order))  # node → position when nodes are sorted by step
    values, starts = np.unique(steps[order], return_index=True)
    er = ds.edge_rows
    return values, np.r_[starts, len(order)], pos[er[:, 0]], pos[er[:, 1]]


def step_statistics(
    ds: EllipticDataset, progress: PhaseProgress | None = None
) -> tuple[list[GraphStats], list[GraphStats]]:
    """Per-step and cumulative statistics, one entry per step present in the data."""
    values, bounds, src, dst = _by_step(ds)
    # Renumbered, nodes of step values[i] are bounds[i]..bounds[i+1]-1, so an edge's step is that
    # of its later end and it belongs to the cumulative graph from that step on.
    node_step = np.repeat(np.arange(len(values)), np.diff(bounds))
    s_src, s_dst = node_step[src], node_step[dst]
    edge_step = np.maximum(s_src, s_dst)
    within = s_src == s_dst
    order = np.argsort(edge_step, kind="stable")
    edge_bounds = np.searchsorted(edge_step[order], np.arange(len(values) + 1))
    disjoint = bool(np.all(within))

    per_step: list[GraphStats] = []
    cumulative: list[GraphStats] = []
    for i, t in enumerate(values):
        lo, hi = bounds[i], bounds[i + 1]
        sel = order[edge_bounds[i] : edge_bounds[i + 1]]
        sel_in = sel[within[sel]]
        per_step.append(graph_stats(int(t), int(hi - lo), src[sel_in] - lo, dst[sel_in] - lo))
        if disjoint:  # Elliptic: sums and weighted means of the steps, exactly
            cumulative.append(merge_disjoint(cumulative[-1], per_step[-1]) if cumulative else per_step[-1])
        else:  # an edge across steps can join components and close triangles: recount the prefix
            prefix = order[: edge_bounds[i + 1]]
            cumulative.append(graph_stats(int(t), int(hi), src[prefix], dst[prefix]))
        if progress:
            progress("stats", i + 1, len(values))
    return per_step, cumulative


def degree_distribution(direction: str, degrees: NDArray[np.int64], fit: bool = True) -> DegreeDistribution:
    values, counts = np.unique(degrees, return_counts=True)
    return DegreeDistribution(
        direction=direction, degree=values.tolist(), count=counts.tolist(), nodes=int(degrees.size),
        positive=int(np.sum(degrees > 0)), mean=float(degrees.mean()) if degrees.size else 0.0,
        max=int(degrees.max(initial=0)), fit=fit_tail(degrees) if fit else None,
    )


def _fit_or_none(nodes: NDArray[np.float64], edges: NDArray[np.float64]) -> DensificationFit | None:
    try:
        return fit_densification(nodes, edges)
    except ValueError:  # a single step, or no edges at all
        return None


def analyze_network(
    ds: EllipticDataset, *, step_fits: bool = True, window: int = 10, progress: PhaseProgress | None = None
) -> NetworkAnalysis:
    """All the numbers of the report.

    Power laws are fitted once per degree direction on the whole graph and, with ``step_fits``,
    on each step's graph (about 1.5 s for 49 Elliptic-sized steps). Cumulative graphs are not
    fitted at every step: that would cost ten times as much and the last one is the whole graph.
    """
    if ds.n_nodes == 0:
        raise ValueError("the data set has no transactions")
    per_step, cumulative = step_statistics(ds, progress)
    er = ds.edge_rows
    n = ds.n_nodes
    deg_in, deg_out = np.bincount(er[:, 1], minlength=n), np.bincount(er[:, 0], minlength=n)
    steps = ds.steps.astype(np.int64)

    fits: list[StepFits] = []
    total = 2 + (len(per_step) if step_fits else 0)
    in_dist = degree_distribution("in", deg_in)
    if progress:
        progress("fits", 1, total)
    out_dist = degree_distribution("out", deg_out)
    if progress:
        progress("fits", 2, total)
    if step_fits:
        # Degrees within each step's graph: an edge across steps (none on Elliptic) does not count.
        in_step = steps[er[:, 0]] == steps[er[:, 1]]
        s_in = np.bincount(er[in_step, 1], minlength=n)
        s_out = np.bincount(er[in_step, 0], minlength=n)
        for i, s in enumerate(per_step):
            rows = steps == s.step
            fits.append(StepFits(s.step, fit_power_law(s_in[rows]), fit_power_law(s_out[rows])))
            if progress:
                progress("fits", 3 + i, total)

    cum_n = np.array([c.nodes for c in cumulative], dtype=np.float64)
    cum_e = np.array([c.edges for c in cumulative], dtype=np.float64)
    return NetworkAnalysis(
        per_step=per_step, cumulative=cumulative,
        cross_step_edges=int(np.sum(steps[er[:, 0]] != steps[er[:, 1]])), self_loops=int(np.sum(er[:, 0] == er[:, 1])),
        in_degree=in_dist, out_degree=out_dist,
        densification=_fit_or_none(cum_n, cum_e),
        densification_across_steps=_fit_or_none(
            np.array([s.nodes for s in per_step], dtype=np.float64),
            np.array([s.edges for s in per_step], dtype=np.float64),
        ),
        densification_history=densification_series(cum_n, cum_e),
        densification_window=densification_series(cum_n, cum_e, window=window),
        window=window, step_fits=fits,
    )
