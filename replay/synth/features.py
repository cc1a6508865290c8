"""Features in Elliptic's layout: 93 local features, then 72 neighbourhood aggregates.

Local features are noisy, partly heavy-tailed mixtures of a few latent traits of a transaction
(inputs, outputs, amount, fee rate, how uniform and round its outputs are, ...). Illicit
patterns shift some traits, with overlap, and the shift drifts over time and changes at the
shutdown; licit users come in a few behavioural types. Aggregates are computed from each node's
actual neighbours, exactly, so they can be recomputed from the files.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from replay.synth.typologies import Typology
from txmon.core.elliptic_format import N_LOCAL
from txmon.core.graph import undirected_adjacency

N_LATENT = 16
# Latent traits (columns of the latent matrix).
N_IN, N_OUT, AMOUNT, FEE_RATE, UNIFORM, ROUND, CHANGE, REUSE, SCRIPT, LOCKTIME = range(10)

# The 72 aggregates: four statistics over the undirected one-hop neighbours of each of the first
# 18 local features, statistic by statistic (18 means, then 18 stds, 18 maxima, 18 minima).
AGGREGATE_BASE = 18
AGGREGATE_STATS = ("mean", "std", "max", "min")

# How each pattern shifts the latent traits of its transactions (in standard deviations).
_SIGNATURES: dict[Typology, dict[int, float]] = {
    Typology.PEELING_CHAIN: {CHANGE: 2.0, FEE_RATE: -1.0, AMOUNT: 0.8},
    Typology.MIXING: {UNIFORM: 2.5, ROUND: 1.2},
    Typology.LAYERING: {ROUND: 1.8, REUSE: -1.5, FEE_RATE: 0.8},
    # Post-shutdown launderers look different: traits the earlier patterns never moved.
    Typology.SMURFING: {REUSE: 1.0, SCRIPT: -1.2, 12: 1.0, AMOUNT: -1.0},
}


def latent_traits(rng: np.random.Generator, step: NDArray[np.int16], n_steps: int, typology: NDArray[np.int8],
                  hub: NDArray[np.bool_], rank: NDArray[np.int64], deg_in: NDArray[np.int64],
                  deg_out: NDArray[np.int64]) -> NDArray[np.float64]:
    n = len(step)
    z = rng.standard_normal((n, N_LATENT))
    # Inputs/outputs outside the data set (coinbase, addresses that never transact again...).
    n_in = deg_in + rng.poisson(0.8, n) + (deg_in == 0)
    n_out = deg_out + rng.poisson(1.0, n) + (deg_out == 0)
    z[:, N_IN] = np.log1p(n_in) + 0.1 * z[:, N_IN]
    z[:, N_OUT] = np.log1p(n_out) + 0.1 * z[:, N_OUT]

    # Licit users come in behavioural types, which makes the licit class multimodal.
    user_type = rng.choice(3, size=n, p=[0.5, 0.3, 0.2])
    type_shift = rng.normal(0.0, 0.7, (3, N_LATENT))
    type_shift[:, :2] = 0.0
    z += type_shift[user_type]
    time_frac = ((step - 1) / max(1, n_steps - 1))[:, None]
    licit_drift = rng.normal(0.0, 0.3, N_LATENT)
    licit_drift[:2] = 0.0
    z += time_frac * licit_drift

    z[hub, AMOUNT] += 2.0
    z[hub, REUSE] += 1.0
    for typ, signature in _SIGNATURES.items():
        sel = typology == typ
        shift = np.zeros(N_LATENT)
        for k, v in signature.items():
            shift[k] = v
        drift = rng.normal(0.0, 0.25, N_LATENT)  # the pattern's style drifts over the steps
        drift[:2] = 0.0
        z[sel] += shift + time_frac[sel] * drift
    chain = typology == Typology.PEELING_CHAIN
    z[chain, AMOUNT] -= 0.08 * rank[chain]  # each hop peels some amount off
    return z


def local_features(rng: np.random.Generator, z: NDArray[np.float64]) -> NDArray[np.float64]:
    """93 standardised local features from the latent traits."""
    n = len(z)
    noise = rng.standard_normal((n, N_LOCAL))
    f = np.empty((n, N_LOCAL))
    amount = np.exp(z[:, AMOUNT])
    fee = np.exp(z[:, FEE_RATE] - 3.0) * (0.5 + np.expm1(z[:, N_IN]) + 0.3 * np.expm1(z[:, N_OUT]))
    f[:, 0] = np.round(np.expm1(z[:, N_IN]))  # number of inputs
    f[:, 1] = np.round(np.expm1(z[:, N_OUT]))  # number of outputs
    f[:, 2] = amount
    f[:, 3] = np.maximum(amount - fee, 0.0)
    f[:, 4] = fee
    f[:, 5] = np.exp(z[:, FEE_RATE])
    for j, k in enumerate((UNIFORM, ROUND, CHANGE, REUSE, SCRIPT, LOCKTIME), start=6):
        f[:, j] = z[:, k] + 0.5 * noise[:, j]
    f[:, 12] = (f[:, 0] + 1) / (f[:, 1] + 1)
    f[:, 13] = 10 + 148 * f[:, 0] + 34 * f[:, 1]  # size in bytes
    f[:, 14] = f[:, 4] / f[:, 13]
    f[:, 15] = np.log1p(amount) * z[:, UNIFORM]
    f[:, 16] = z[:, 10] + 0.3 * noise[:, 16]
    f[:, 17] = z[:, 11] + 0.3 * noise[:, 17]
    # The rest: sparse mixtures of two or three traits, a third of them heavy-tailed.
    for j in range(18, N_LOCAL):
        ks = rng.choice(N_LATENT, size=int(rng.integers(2, 4)), replace=False)
        x = z[:, ks] @ rng.normal(0.0, 1.0, len(ks)) / np.sqrt(len(ks)) + 0.5 * noise[:, j]
        f[:, j] = np.expm1(0.8 * x) if j % 3 == 0 else x
    return standardise(f)


def standardise(x: NDArray[np.float64]) -> NDArray[np.float64]:
    sd = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def neighbour_aggregates(local: NDArray[np.float64], src: NDArray[np.int64],
                         dst: NDArray[np.int64]) -> NDArray[np.float64]:
    """Mean, std, max and min over each node's undirected one-hop neighbours (0 where none).

    Unstandardised; the generator standardises the 72 columns before writing, so a file's
    aggregates are an exact affine function of this, recomputed from its local features.
    """
    n = len(local)
    base = local[:, :AGGREGATE_BASE]
    adj = undirected_adjacency(n, src, dst)
    deg = np.asarray(adj.sum(axis=1)).ravel()
    safe = np.maximum(deg, 1.0)[:, None]
    mean = (adj @ base) / safe
    var = np.maximum((adj @ (base**2)) / safe - mean**2, 0.0)
    # Max/min per row of the CSR structure with reduceat over each row's neighbour values.
    mx = np.zeros_like(base)
    mn = np.zeros_like(base)
    has = deg > 0
    if adj.nnz:
        vals = base[adj.indices]
        starts = adj.indptr[:-1][has]
        mx[has] = np.maximum.reduceat(vals, starts, axis=0)
        mn[has] = np.minimum.reduceat(vals, starts, axis=0)
    return np.hstack([mean, np.sqrt(var), mx, mn])
