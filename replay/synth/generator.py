"""The synthetic Elliptic generator: step sizes, illicit budgets, graphs, features, labels."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from replay.synth.calibration import ELLIPTIC, Calibration
from replay.synth.features import latent_traits, local_features, neighbour_aggregates, standardise
from replay.synth.graph import StepGraph, generate_step
from replay.synth.typologies import typology_mix
from replay.synth.writer import write_kaggle_files
from txmon.core.elliptic_format import ILLICIT, LICIT, N_STEPS, UNKNOWN
from txmon.core.progress import PhaseProgress

MAX_TX_ID = 310_000_000


@dataclass(frozen=True)
class SynthData:
    """A generated data set before writing; ``illicit`` is the ground truth behind the labels."""

    tx_ids: NDArray[np.int64]
    steps: NDArray[np.int16]
    features: NDArray[np.float64]
    labels: NDArray[np.int8]
    illicit: NDArray[np.bool_]
    typology: NDArray[np.int8]
    edges: NDArray[np.int64]  # tx ids


def step_sizes(rng: np.random.Generator, n_steps: int, scale: float, cal: Calibration) -> NDArray[np.int64]:
    raw = np.exp(rng.normal(0.0, 0.45, n_steps))
    sizes = raw / raw.mean() * cal.mean_step_size()
    for _ in range(20):  # clip into the published range while keeping the published mean
        sizes = np.clip(sizes, cal.step_min, cal.step_max)
        sizes *= cal.mean_step_size() / sizes.mean()
    sizes = np.clip(sizes, cal.step_min, cal.step_max) * scale
    out = np.maximum(np.round(sizes).astype(np.int64), 8)
    target = max(round(cal.mean_step_size() * n_steps * scale), 8 * n_steps)
    order = np.argsort(-out)  # absorb rounding on the largest steps: scale 1.0 gives exactly 203,769
    for i in range(abs(target - int(out.sum()))):
        out[order[i % n_steps]] += 1 if target > out.sum() else -1
    return out


def illicit_budgets(rng: np.random.Generator, sizes: NDArray[np.int64], cal: Calibration) -> NDArray[np.int64]:
    n_steps = len(sizes)
    x = np.zeros(n_steps)
    for t in range(1, n_steps):  # activity waxes and wanes from step to step
        x[t] = 0.7 * x[t - 1] + rng.normal(0.0, 0.3)
    intensity = np.exp(x)
    intensity[np.arange(1, n_steps + 1) >= cal.shutdown_step] *= cal.shutdown_illicit_factor
    true_share = cal.share_illicit_labelled / cal.p_label_illicit
    rate = true_share * sizes.sum() / float((sizes * intensity).sum())
    return np.round(sizes * intensity * rate).astype(np.int64)


def generate(scale: float = 1.0, n_steps: int = N_STEPS, seed: int = 0, cal: Calibration = ELLIPTIC,
             progress: PhaseProgress | None = None) -> SynthData:
    if not 0 < scale <= 10:
        raise ValueError(f"scale must be in (0, 10], got {scale}")
    if not 1 <= n_steps <= N_STEPS:
        raise ValueError(f"steps must be in 1..{N_STEPS}, got {n_steps}")
    rng = np.random.default_rng(seed)
    sizes = step_sizes(rng, n_steps, scale, cal)
    budgets = illicit_budgets(rng, sizes, cal)
    # Steps differ in how densely they connect; the ratio over all steps stays at the published one.
    ratios = np.exp(rng.normal(0.0, 0.05, n_steps))
    ratios = np.maximum(cal.edges_per_node * ratios * sizes.sum() / float((ratios * sizes).sum()), 1.02)

    graphs: list[StepGraph] = []
    for t in range(1, n_steps + 1):
        mix = typology_mix(t, n_steps, cal.shutdown_step)
        graphs.append(generate_step(rng, int(sizes[t - 1]), int(budgets[t - 1]), t, mix,
                                    float(ratios[t - 1]), cal.hub_fraction))
        if progress:
            progress("graph", t, n_steps)

    # Rows grouped by step; inside a step the file order is shuffled, not time order.
    offsets = np.cumsum([0] + [g.n for g in graphs])
    perms = [rng.permutation(g.n) for g in graphs]  # perm[new_row] = local node
    inv = [np.argsort(p) for p in perms]  # local node -> new row within the step
    steps = np.repeat(np.arange(1, n_steps + 1, dtype=np.int16), [g.n for g in graphs])
    cat = lambda f: np.concatenate([f(g)[p] for g, p in zip(graphs, perms, strict=True)])  # noqa: E731
    illicit, typology = cat(lambda g: g.illicit), cat(lambda g: g.typology)
    hub, rank = cat(lambda g: g.hub), cat(lambda g: g.rank)
    src = np.concatenate([off + iv[g.src] for g, off, iv in zip(graphs, offsets[:-1], inv, strict=True)])
    dst = np.concatenate([off + iv[g.dst] for g, off, iv in zip(graphs, offsets[:-1], inv, strict=True)])
    edge_order = np.concatenate([off_e + rng.permutation(len(g.src)) for g, off_e in
                                 zip(graphs, np.cumsum([0] + [len(g.src) for g in graphs])[:-1], strict=True)])
    src, dst = src[edge_order], dst[edge_order]
    n = int(offsets[-1])

    deg_in = np.bincount(dst, minlength=n)
    deg_out = np.bincount(src, minlength=n)
    z = latent_traits(rng, steps, n_steps, typology, hub, rank, deg_in, deg_out)
    local = local_features(rng, z)
    if progress:
        progress("features", 1, 2)
    aggregates = standardise(neighbour_aggregates(local, src, dst))
    features = np.hstack([local, aggregates])
    if progress:
        progress("features", 2, 2)

    labels = _labels(rng, illicit, hub, cal)
    tx_ids = _unique_ids(rng, n)
    return SynthData(tx_ids, steps, features, labels, illicit, typology,
                     np.stack([tx_ids[src], tx_ids[dst]], axis=1))


def _labels(rng: np.random.Generator, illicit: NDArray[np.bool_], hub: NDArray[np.bool_],
            cal: Calibration) -> NDArray[np.int8]:
    n = len(illicit)
    labels = np.full(n, UNKNOWN, dtype=np.int8)
    u = rng.random(n)
    labels[illicit & (u < cal.p_label_illicit)] = ILLICIT
    licit_hub = hub & ~illicit
    labels[licit_hub & (u < cal.p_label_hub)] = LICIT
    ordinary = ~illicit & ~hub
    wanted = cal.share_licit_labelled * n - cal.p_label_hub * licit_hub.sum()
    p = min(1.0, max(0.0, wanted / max(1, ordinary.sum())))
    labels[ordinary & (u < p)] = LICIT
    return labels


def _unique_ids(rng: np.random.Generator, n: int) -> NDArray[np.int64]:
    """n distinct positive ids up to ~3.1e8, in no particular order (like Elliptic's)."""
    draws = rng.integers(1, MAX_TX_ID + 1, size=int(n * 1.1) + 64)
    _, first = np.unique(draws, return_index=True)
    keep = np.sort(first)[:n]  # first occurrences, in draw order
    if len(keep) < n:
        raise RuntimeError("id space exhausted")  # impossible below ~1e8 transactions
    return draws[keep].astype(np.int64)


def synthesize(out_dir: Path, scale: float = 1.0, n_steps: int = N_STEPS, seed: int = 0,
               progress: PhaseProgress | None = None) -> SynthData:
    """Generate and write the three Kaggle files to ``out_dir``."""
    data = generate(scale, n_steps, seed, progress=progress)
    write_kaggle_files(out_dir, data.tx_ids, data.steps, data.features, data.labels, data.edges)
    if progress:
        progress("write", 1, 1)
    return data
