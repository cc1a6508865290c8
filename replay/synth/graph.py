"""One time step's transaction graph: a heavy-tailed licit background plus illicit patterns.

The background is a tree grown by attractiveness (so every step is one weakly connected
component, with smoothly heavy-tailed degrees) whose best-connected nodes are licit services:
payout hubs early in the step (mostly outgoing edges), consolidation hubs late (mostly
incoming). Edges point from the earlier transaction to
the later one, so each step is a DAG, and a few random extra edges bring the ratio to the
published ~1.15 edges per node while keeping clustering near zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from replay.synth.typologies import Pattern, Typology, draw_pattern

FITNESS_SHAPE = 1.3  # Pareto shape of a transaction's attractiveness: sets the degree tail
P_FITNESS = 0.7  # a tree edge goes to an earlier node by attractiveness, else uniformly
P_PEEL_IN_GRAPH = 0.5  # a peeled payment lands on a transaction in the data set (else outside)


@dataclass
class StepGraph:
    n: int
    src: NDArray[np.int64]  # local node indices, src pays into dst
    dst: NDArray[np.int64]
    illicit: NDArray[np.bool_]  # ground truth, before labels are hidden
    typology: NDArray[np.int8]  # Typology per node (BACKGROUND for licit)
    hub: NDArray[np.bool_]
    rank: NDArray[np.int64]  # position inside the node's pattern (peeling-chain hop), else 0


def _fitness_tree(rng: np.random.Generator, b: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Undirected tree on b nodes: node i attaches to an earlier node chosen by Pareto
    attractiveness (or uniformly), so degrees are smoothly heavy-tailed (a fitness model)."""
    fitness = rng.pareto(FITNESS_SHAPE, b) + 1.0
    cum = np.cumsum(fitness)
    child = np.arange(1, b)
    by_fitness = np.minimum(np.searchsorted(cum, rng.random(b - 1) * cum[child - 1], side="right"), child - 1)
    uniform = (rng.random(b - 1) * child).astype(np.int64)
    parent = np.where(rng.random(b - 1) < P_FITNESS, by_fitness, uniform)
    return parent.astype(np.int64), child


def generate_step(rng: np.random.Generator, n: int, illicit_budget: int, step: int,
                  mix: dict[Typology, float], edges_per_node: float, hub_fraction: float) -> StepGraph:
    # Illicit patterns first, so the background fills the rest of the step.
    patterns: list[Pattern] = []
    left = min(illicit_budget, n // 3)
    kinds, probs = list(mix), np.array(list(mix.values()))
    while left >= 2:
        typ = kinds[int(rng.choice(len(kinds), p=probs / probs.sum()))]
        p = draw_pattern(rng, typ, step, left)
        patterns.append(p)
        left -= p.size
    n_ill = sum(p.size for p in patterns)
    b = n - n_ill
    parent, child = _fitness_tree(rng, b)
    # The best-connected background transactions are the licit services (exchanges...).
    n_hubs = max(1, round(b * hub_fraction))
    tree_degree = np.bincount(np.r_[parent, child], minlength=b)
    hub_ids = np.argsort(-tree_degree, kind="stable")[:n_hubs]

    # Time of each node inside the step, in [0, 1): it orients every edge.
    time = np.empty(n)
    time[:b] = rng.random(b)
    late = rng.random(n_hubs) < 0.5  # consolidations come late (mostly inputs), payouts early
    time[hub_ids] = np.where(late, 0.8 + 0.2 * rng.random(n_hubs), 0.2 * rng.random(n_hubs))

    typology = np.zeros(n, dtype=np.int8)
    rank = np.zeros(n, dtype=np.int64)
    src, dst = parent.tolist(), child.tolist()
    bg_by_time = np.argsort(time[:b])
    bg_times = time[:b][bg_by_time]

    def earlier_bg(t: float) -> int | None:
        k = int(np.searchsorted(bg_times, t))
        return int(bg_by_time[rng.integers(0, k)]) if k else None

    def later_bg(t: float, prefer_hub: bool) -> int | None:
        if prefer_hub:
            late_hubs = hub_ids[time[hub_ids] > t]
            if late_hubs.size:
                return int(rng.choice(late_hubs))
        k = int(np.searchsorted(bg_times, t, side="right"))
        return int(bg_by_time[rng.integers(k, b)]) if k < b else None

    offset = b
    for p in patterns:
        start, span = 0.05 + 0.55 * rng.random(), 0.1 + 0.25 * rng.random()
        top = max(p.rank) + 1
        t_local = start + span * (np.asarray(p.rank) + rng.random(p.size) * 0.9) / top
        time[offset:offset + p.size] = t_local
        typology[offset:offset + p.size] = p.typology
        rank[offset:offset + p.size] = p.rank
        src += [offset + a for a, _ in p.edges]
        dst += [offset + c for _, c in p.edges]
        for e in p.entries:
            f = earlier_bg(t_local[e])
            if f is not None:
                src.append(f)
                dst.append(offset + e)
        for x in p.exits:
            h = later_bg(t_local[x], prefer_hub=True)
            if h is not None:
                src.append(offset + x)
                dst.append(h)
        for c in p.peels:
            if rng.random() < P_PEEL_IN_GRAPH:
                r = later_bg(t_local[c], prefer_hub=rng.random() < 0.3)
                if r is not None:
                    src.append(offset + c)
                    dst.append(r)
        offset += p.size

    # A pattern whose entry found no earlier funder hangs loose: tie it to any background node.
    # (Rare; keeps every step one weakly connected component.)
    seen = {(min(a, c), max(a, c)) for a, c in zip(src, dst, strict=True)}
    _connect_components(n, src, dst, seen, rng, b)

    # Extra edges: uniform one end, degree-proportional other end, never a duplicate.
    target = round(edges_per_node * n)
    ends = np.concatenate([np.asarray(src), np.asarray(dst)])
    ends = ends[ends < b]
    tries = 0
    while len(src) < target and tries < 20 * n and ends.size:
        tries += 1
        a = int(rng.integers(0, n))
        c = int(ends[rng.integers(0, ends.size)])
        key = (min(a, c), max(a, c))
        if a == c or key in seen:
            continue
        seen.add(key)
        src.append(a)
        dst.append(c)

    s, d = np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64)
    flip = time[s] > time[d]  # money flows forward in time
    s, d = np.where(flip, d, s), np.where(flip, s, d)
    illicit = typology != Typology.BACKGROUND
    hub = np.zeros(n, dtype=bool)
    hub[hub_ids] = True
    return StepGraph(n, s, d, illicit, typology, hub, rank)


def _connect_components(n: int, src: list[int], dst: list[int], seen: set[tuple[int, int]],
                        rng: np.random.Generator, b: int) -> None:
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, c in zip(src, dst, strict=True):
        parent[find(a)] = find(c)
    root = find(0)
    for v in range(n):
        if find(v) != root:
            u = int(rng.integers(0, b)) if b else 0
            src.append(u)
            dst.append(v)
            seen.add((min(u, v), max(u, v)))
            parent[find(v)] = find(u)
            root = find(0)
