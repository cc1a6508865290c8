"""Label propagation by k steps of the transition matrix T = D⁻¹A, labelled nodes absorbing."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import sparse


def propagate(t: sparse.csr_matrix, seeds: NDArray[np.bool_], seed_illicit: NDArray[np.bool_],
              k_max: int) -> list[NDArray[np.float64]]:
    """Illicit scores after 1..k_max steps.

    F holds (licit, illicit) mass per node; seed rows are reset to their one-hot label after
    every step, so labelled nodes stay fixed. A node no mass has reached yet scores the seeds'
    illicit share (the prior), not 0, so unreached nodes do not look confidently licit.
    """
    n = t.shape[0]
    f = np.zeros((n, 2))
    f[seeds & ~seed_illicit, 0] = 1.0
    f[seeds & seed_illicit, 1] = 1.0
    fixed = f[seeds].copy()
    prior = float(seed_illicit[seeds].mean()) if seeds.any() else 0.0
    scores = []
    for _ in range(k_max):
        f = t @ f
        f[seeds] = fixed
        mass = f.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            scores.append(np.where(mass > 0, f[:, 1] / mass, prior))
    return scores
