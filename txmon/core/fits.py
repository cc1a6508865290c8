"""Fits on plain numpy arrays: degree power laws (Clauset–Shalizi–Newman) and densification E ∝ N^α.

Nothing here knows about data sets, so the streaming worker can call the same functions at each
step close on the counters it keeps in Redis.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special, stats

from txmon.core.contracts import PowerLawFit


@dataclass(frozen=True)
class TailFit:
    """A power-law fit with what the wire contract leaves out but a report or a plot needs."""

    power_law: PowerLawFit
    alpha_stderr: float  # (α − 1) / √n_tail, the MLE's standard error
    lognormal_mu: float  # the lognormal fitted to the same tail (x ≥ xmin)
    lognormal_sigma: float
    n_values: int  # positive values the fit saw (the tail is n_tail of them)
    discrete: bool


@dataclass(frozen=True)
class DensificationFit:
    """Least squares on ln E = intercept + α ln N, i.e. E ≈ e^intercept · N^α."""

    alpha: float
    intercept: float
    r2: float
    stderr: float  # standard error of α; NaN with only 2 points
    n_points: int

    def predict(self, nodes: ArrayLike) -> NDArray[np.float64]:
        return np.exp(self.intercept) * np.asarray(nodes, dtype=np.float64) ** self.alpha


@contextmanager
def _quiet() -> Iterator[None]:
    # powerlaw warns on every xmin candidate it rejects and numpy on log(0) in the lognormal fit.
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        yield


def fit_tail(values: ArrayLike, discrete: bool = True, min_tail: int = 10) -> TailFit | None:
    """Power-law fit of the positive ``values``: MLE α, xmin by KS distance, lognormal comparison.

    xmin candidates are limited to those leaving at least ``min_tail`` points in the tail (the KS
    minimum otherwise likes tails of two or three points). None when there are too few positive
    values, too few distinct ones, or the fit is degenerate.
    """
    import powerlaw  # slow to import (pulls in pyplot); only callers that fit pay for it

    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[np.isfinite(x) & (x > 0)]
    if x.size < min_tail or np.unique(x).size < 3:
        return None
    top = float(np.partition(x, x.size - min_tail)[x.size - min_tail])  # the min_tail-th largest value
    with _quiet():
        fit = powerlaw.Fit(x, discrete=discrete, xmin=(float(x.min()), top), verbose=False)
        if not np.isfinite(fit.xmin):
            return None
        pl, ln = fit.power_law, fit.lognormal
        ratio, p = fit.distribution_compare("power_law", "lognormal", normalized_ratio=True)
    n_tail = int(fit.n_tail)
    numbers = (pl.alpha, pl.D, ratio, p, ln.mu, ln.sigma)
    if n_tail < min_tail or not all(np.isfinite(v) for v in numbers):
        return None
    return TailFit(
        power_law=PowerLawFit(
            alpha=float(pl.alpha), xmin=float(fit.xmin), ks_distance=float(pl.D), n_tail=n_tail,
            lognormal_loglik_ratio=float(ratio), lognormal_p=float(p),
        ),
        alpha_stderr=alpha_stderr(pl.alpha, n_tail),
        lognormal_mu=float(ln.mu), lognormal_sigma=float(ln.sigma), n_values=int(x.size), discrete=discrete,
    )


def alpha_stderr(alpha: float, n_tail: int) -> float:
    """Standard error of the MLE power-law exponent (Clauset, Shalizi & Newman 2009, eq. 3.2)."""
    return float((alpha - 1) / np.sqrt(n_tail))


def fit_power_law(values: ArrayLike, discrete: bool = True, min_tail: int = 10) -> PowerLawFit | None:
    """The wire-contract view of :func:`fit_tail` (lognormal_loglik_ratio is normalised: R/(σ√n))."""
    tail = fit_tail(values, discrete=discrete, min_tail=min_tail)
    return tail.power_law if tail else None


def power_law_ccdf(x: ArrayLike, alpha: float, xmin: float, discrete: bool = True) -> NDArray[np.float64]:
    """P(X ≥ x | X ≥ xmin) of the fitted power law (Hurwitz zeta when discrete)."""
    x = np.asarray(x, dtype=np.float64)
    if discrete:
        return special.zeta(alpha, x) / special.zeta(alpha, xmin)
    return (x / xmin) ** (1.0 - alpha)


def lognormal_ccdf(x: ArrayLike, mu: float, sigma: float, xmin: float, discrete: bool = True) -> NDArray[np.float64]:
    """P(X ≥ x | X ≥ xmin) of the lognormal; discrete as powerlaw does it (mass of [k − ½, k + ½])."""
    x = np.asarray(x, dtype=np.float64)
    shift = 0.5 if discrete else 0.0
    dist = stats.lognorm(s=sigma, scale=np.exp(mu))
    return dist.sf(x - shift) / dist.sf(xmin - shift)


def fit_densification(nodes: ArrayLike, edges: ArrayLike) -> DensificationFit:
    """Fit E ∝ N^α by least squares on log E vs log N over the points with N > 0 and E > 0."""
    n = np.asarray(nodes, dtype=np.float64).ravel()
    e = np.asarray(edges, dtype=np.float64).ravel()
    if n.shape != e.shape:
        raise ValueError(f"nodes and edges must have the same length, got {n.size} and {e.size}")
    usable = np.isfinite(n) & np.isfinite(e) & (n > 0) & (e > 0)
    k = int(usable.sum())
    if k < 2:
        raise ValueError(f"densification fit needs at least 2 points with nodes > 0 and edges > 0, got {k}")
    lx, ly = np.log(n[usable]), np.log(e[usable])
    sxx = float(np.sum((lx - lx.mean()) ** 2))
    if sxx == 0.0:
        raise ValueError("densification fit needs at least 2 distinct node counts")
    alpha = float(np.sum((lx - lx.mean()) * (ly - ly.mean())) / sxx)
    intercept = float(ly.mean() - alpha * lx.mean())
    ssr = float(np.sum((ly - intercept - alpha * lx) ** 2))
    sst = float(np.sum((ly - ly.mean()) ** 2))
    r2 = 1.0 - ssr / sst if sst > 0 else 1.0  # constant E: the flat line fits exactly
    stderr = float(np.sqrt(ssr / (k - 2) / sxx)) if k > 2 else float("nan")
    return DensificationFit(alpha=alpha, intercept=intercept, r2=r2, stderr=stderr, n_points=k)


def densification_series(
    nodes: ArrayLike, edges: ArrayLike, window: int | None = None, min_points: int = 3
) -> list[DensificationFit | None]:
    """α after each point: over all points so far (window None) or the last ``window`` points.

    Entry i is None while fewer than ``min_points`` points are available (two points always fit
    exactly, so they say nothing about quality) or when the points cannot be fitted.
    """
    n = np.asarray(nodes, dtype=np.float64).ravel()
    e = np.asarray(edges, dtype=np.float64).ravel()
    out: list[DensificationFit | None] = []
    for i in range(n.size):
        lo = 0 if window is None else max(0, i + 1 - window)
        if i + 1 - lo < min_points:
            out.append(None)
            continue
        try:
            out.append(fit_densification(n[lo : i + 1], e[lo : i + 1]))
        except ValueError:
            out.append(None)
    return out
