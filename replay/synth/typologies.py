"""Laundering typologies: small directed subgraphs of illicit transactions.

Each pattern says which of its nodes are funded from the wider graph (entries), which cash out
into it (exits, usually at an exchange's consolidation transaction) and which peel small
payments off to ordinary recipients. Ranks order the nodes in time (edges go low → high rank).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np


class Typology(IntEnum):
    BACKGROUND = 0
    PEELING_CHAIN = 1  # a long chain, each hop peels a small payment off the remaining amount
    MIXING = 2  # fan-out into many equal-sized intermediates, fan-in to a few collectors
    LAYERING = 3  # several levels of intermediaries that hide the origin before cash-out
    SMURFING = 4  # after the shutdown: many small deposits, each funded separately, merged once


@dataclass
class Pattern:
    typology: Typology
    size: int
    edges: list[tuple[int, int]] = field(default_factory=list)
    rank: list[int] = field(default_factory=list)  # position in time within the pattern
    entries: list[int] = field(default_factory=list)
    exits: list[int] = field(default_factory=list)
    peels: list[int] = field(default_factory=list)


def peeling_chain(rng: np.random.Generator, length: int) -> Pattern:
    length = max(2, length)
    return Pattern(
        Typology.PEELING_CHAIN,
        length,
        edges=[(i, i + 1) for i in range(length - 1)],
        rank=list(range(length)),
        entries=[0],
        exits=[length - 1],
        peels=list(range(length - 1)),
    )


def mixing(rng: np.random.Generator, width: int, collectors: int) -> Pattern:
    width, collectors = max(1, width), max(1, collectors)
    size = 1 + width + collectors
    mids = range(1, 1 + width)
    outs = list(range(1 + width, size))
    edges = [(0, m) for m in mids]
    fed = set()
    for m in mids:
        k = 1 + int(rng.random() < 0.3) if collectors > 1 else 1
        for c in rng.choice(outs, size=k, replace=False):
            edges.append((m, int(c)))
            fed.add(int(c))
    for c in outs:  # every collector receives something
        if c not in fed:
            edges.append((int(rng.choice(list(mids))), c))
    return Pattern(Typology.MIXING, size, edges, [0] + [1] * width + [2] * collectors, [0], outs)


def layering(rng: np.random.Generator, depth: int, max_width: int) -> Pattern:
    levels: list[list[int]] = [[0]]
    size = 1
    for _ in range(max(1, depth)):
        w = int(rng.integers(1, max_width + 1))
        levels.append(list(range(size, size + w)))
        size += w
    edges: list[tuple[int, int]] = []
    for prev, cur in zip(levels, levels[1:], strict=False):
        for v in cur:  # every node of a level is paid by one or two of the level before
            k = min(len(prev), 1 + int(rng.random() < 0.3))
            edges.extend((int(u), v) for u in rng.choice(prev, size=k, replace=False))
    rank = [lvl for lvl, nodes in enumerate(levels) for _ in nodes]
    return Pattern(Typology.LAYERING, size, edges, rank, [0], levels[-1])


def smurfing(rng: np.random.Generator, deposits: int) -> Pattern:
    deposits = max(1, deposits)
    collector = deposits
    return Pattern(
        Typology.SMURFING,
        deposits + 1,
        edges=[(d, collector) for d in range(deposits)],
        rank=[0] * deposits + [1],
        entries=list(range(deposits)),
        exits=[collector],
    )


def typology_mix(step: int, n_steps: int, shutdown_step: int) -> dict[Typology, float]:
    """Which patterns launderers use at a step: a slow drift, then a break at the shutdown."""
    if step >= shutdown_step:
        return {Typology.SMURFING: 0.6, Typology.PEELING_CHAIN: 0.25, Typology.MIXING: 0.15}
    x = (step - 1) / max(1, min(n_steps, shutdown_step - 1) - 1)
    return {
        Typology.PEELING_CHAIN: 0.55 - 0.30 * x,
        Typology.MIXING: 0.25 + 0.15 * x,
        Typology.LAYERING: 0.20 + 0.15 * x,
    }


def draw_pattern(rng: np.random.Generator, typ: Typology, step: int, budget: int) -> Pattern:
    """One pattern of ``typ`` with at most ``budget`` (>= 2) nodes; sizes grow slowly over time.

    A pattern that would not fit shrinks within its own typology, so small data sets keep the
    same mix of patterns as large ones.
    """
    if typ == Typology.MIXING and budget >= 3:
        collectors = min(int(rng.integers(1, 4)), budget - 2)
        width = min(int(rng.integers(3, 9 + step // 6)), budget - 1 - collectors)
        return mixing(rng, width, collectors)
    if typ == Typology.LAYERING and budget >= 3:
        p = layering(rng, int(rng.integers(2, 5)), 3)
        while p.size > budget:  # fewer, narrower levels until it fits
            p = layering(rng, max(1, len(set(p.rank)) - 2), 1 if p.size > budget + 2 else 2)
        return p
    if typ == Typology.SMURFING:
        return smurfing(rng, min(int(rng.integers(4, 16)), budget - 1))
    return peeling_chain(rng, min(int(rng.integers(4, 11 + step // 3)), budget))
