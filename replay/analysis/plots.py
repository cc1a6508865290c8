"""PNG figures of a NetworkAnalysis (matplotlib's object API on the Agg canvas: no pyplot state)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from replay.analysis.network import DegreeDistribution, GraphStats, NetworkAnalysis
from txmon.core.fits import alpha_stderr, lognormal_ccdf, power_law_ccdf
from txmon.core.progress import PhaseProgress

DPI = 110


def figure(rows: int, cols: int, width: float, height: float) -> tuple[Figure, np.ndarray]:
    """A figure on the Agg canvas (no GUI backend, thread-safe) and its axes, flat."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()


def alpha_axis(ax: Axes) -> None:
    """Keep 1 and the seed paper's 1.15 in view: tiny wiggles of α around 1 must not fill the axis."""
    lo, hi = ax.get_ylim()
    ax.set_ylim(min(lo, 0.9), max(hi, 1.25))
    ax.ticklabel_format(axis="y", useOffset=False)


def _save(fig: Figure, path: Path) -> str:
    fig.savefig(path)
    return path.name


def empirical_ccdf(dist: DegreeDistribution) -> tuple[np.ndarray, np.ndarray]:
    """Distinct positive degrees k and the share of nodes with degree > 0 whose degree is ≥ k."""
    k = np.asarray(dist.degree, dtype=np.float64)
    c = np.asarray(dist.count, dtype=np.float64)
    k, c = k[k > 0], c[k > 0]
    return k, np.cumsum(c[::-1])[::-1] / c.sum() if c.size else c


def _degree_panel(ax: Axes, dist: DegreeDistribution) -> None:
    k, ccdf = empirical_ccdf(dist)
    ax.loglog(k, ccdf, ".", color="0.25", ms=5, label=f"data ({dist.positive:,} nodes with degree > 0)")
    tail = dist.fit
    if tail is not None:
        pl = tail.power_law
        # Model CCDFs are conditional on k ≥ xmin: scale them to the tail's share of the data.
        xs = np.unique(np.geomspace(pl.xmin, max(k.max(), pl.xmin + 1), 200).round())
        share = pl.n_tail / tail.n_values
        ax.loglog(xs, share * power_law_ccdf(xs, pl.alpha, pl.xmin, tail.discrete), "-", color="tab:red", lw=2,
                  label=f"power law α = {pl.alpha:.2f} ± {tail.alpha_stderr:.2f}, x_min = {pl.xmin:g} "
                        f"({pl.n_tail:,} nodes)")
        ln = lognormal_ccdf(xs, tail.lognormal_mu, tail.lognormal_sigma, pl.xmin, tail.discrete)
        ax.loglog(xs, share * ln, "--", color="tab:blue", lw=1.5,
                  label=f"lognormal (R = {pl.lognormal_loglik_ratio:+.2f}, p = {pl.lognormal_p:.2f})")
        ax.axvline(pl.xmin, color="0.6", ls=":", lw=1)
    else:
        ax.text(0.5, 0.5, "no power-law fit (too few values)", transform=ax.transAxes, ha="center")
    ax.set_title(f"{dist.direction}-degree distribution (CCDF)")
    ax.set_xlabel(f"{dist.direction}-degree k")
    ax.set_ylabel("P(K ≥ k)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")


def plot_degrees(a: NetworkAnalysis, out: Path) -> str:
    fig, axes = figure(1, 2, 12, 4.8)
    _degree_panel(axes[0], a.in_degree)
    _degree_panel(axes[1], a.out_degree)
    return _save(fig, out / "degree_ccdf.png")


def plot_densification(a: NetworkAnalysis, out: Path) -> str:
    fig, (left, right) = figure(1, 2, 12, 4.8)
    n = np.array([c.nodes for c in a.cumulative], dtype=np.float64)
    e = np.array([c.edges for c in a.cumulative], dtype=np.float64)
    left.loglog(n, e, "o", color="tab:blue", ms=4, label="cumulative E(t) vs N(t)")
    left.loglog([s.nodes for s in a.per_step], [s.edges for s in a.per_step], "x", color="0.6", ms=4,
                label="single steps E_t vs N_t")
    fit = a.densification
    if fit is not None:
        xs = np.geomspace(min(n.min(), min(s.nodes for s in a.per_step)), n.max(), 50)
        left.loglog(xs, fit.predict(xs), "-", color="tab:red",
                    label=f"fit: α = {fit.alpha:.3f} ± {fit.stderr:.2g}, R² = {fit.r2:.4f}")
        left.loglog(xs, xs, ":", color="0.4", label="E = N (α = 1)")
    left.set_xlabel("nodes N")
    left.set_ylabel("edges E")
    left.set_title("densification E ∝ N^α")
    left.grid(True, which="major", alpha=0.3)
    left.legend(fontsize=8, loc="upper left")

    steps = np.array(a.steps)
    for series, label, colour in ((a.densification_history, "steps 1..t", "tab:red"),
                                  (a.densification_window, f"last {a.window} steps", "tab:green")):
        ok = [i for i, f in enumerate(series) if f is not None]
        fits = [f for f in series if f is not None]
        if not fits:
            continue
        alpha = np.array([f.alpha for f in fits])
        se = np.nan_to_num(np.array([f.stderr for f in fits]))
        right.plot(steps[ok], alpha, "-o", ms=3, color=colour, label=f"α over {label}")
        right.fill_between(steps[ok], alpha - 2 * se, alpha + 2 * se, color=colour, alpha=0.15)
    right.axhline(1.0, color="0.4", ls=":", lw=1, label="α = 1 (no densification)")
    right.axhline(1.15, color="tab:purple", ls="--", lw=1, label="1.15: the seed paper's figure for Bitcoin")
    alpha_axis(right)
    right.set_xlabel("step t")
    right.set_ylabel("α (band: ± 2 standard errors)")
    right.set_title("α as the history grows")
    right.grid(True, alpha=0.3)
    right.legend(fontsize=8)
    return _save(fig, out / "densification.png")


def _series(ax: Axes, steps: np.ndarray, rows: list[GraphStats], attr: str, label: str, style: str) -> None:
    ax.plot(steps, [getattr(r, attr) for r in rows], style, ms=3, label=label)


def plot_step_series(a: NetworkAnalysis, out: Path) -> str:
    fig, axes = figure(2, 3, 14, 7.5)
    steps = np.array(a.steps)
    panels = [
        ("nodes", "nodes per step", False),
        ("edges", "edges per step", False),
        ("avg_in_degree", "average in-degree = out-degree (E/N)", True),
        ("density", "density E / (N(N−1))", True),
        ("clustering", "average clustering coefficient", True),
        ("components", "weakly connected components per step", False),
    ]
    for ax, (attr, title, with_cumulative) in zip(axes, panels, strict=True):
        _series(ax, steps, a.per_step, attr, "step", "-o")
        if with_cumulative:
            _series(ax, steps, a.cumulative, attr, "cumulative", "--")
            ax.legend(fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
    for i, ax in enumerate(axes):
        if i == 3:
            ax.set_yscale("log")
        else:  # from zero, so that a flat series looks flat instead of magnified noise
            ax.set_ylim(bottom=0, top=ax.get_ylim()[1] * 1.05)
            ax.ticklabel_format(axis="y", useOffset=False, style="plain")
    axes[5].yaxis.get_major_locator().set_params(integer=True)
    return _save(fig, out / "step_series.png")


def plot_step_fits(a: NetworkAnalysis, out: Path) -> str | None:
    if not a.step_fits:
        return None
    fig, axes = figure(1, 2, 12, 4.2)
    whole = {"in": a.in_degree.fit, "out": a.out_degree.fit}
    for ax, direction in zip(axes, ("in", "out"), strict=True):
        pts = [(f.step, getattr(f, f"{direction}_degree")) for f in a.step_fits]
        pts = [(s, p) for s, p in pts if p is not None]
        if pts:
            s = np.array([p[0] for p in pts])
            alpha = np.array([p[1].alpha for p in pts])
            se = np.array([alpha_stderr(p[1].alpha, p[1].n_tail) for p in pts])
            ax.errorbar(s, alpha, yerr=se, fmt="o", ms=3, capsize=2, label="step's graph (± 1 s.e.)")
        fit = whole[direction]
        if fit is not None:
            ax.axhline(fit.power_law.alpha, color="tab:red", ls="--",
                       label=f"whole graph: {fit.power_law.alpha:.2f} (x_min {fit.power_law.xmin:g})")
        ax.set_title(f"{direction}-degree power-law α per step")
        ax.set_xlabel("step")
        ax.set_ylabel("α")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, out / "step_power_law.png")


def write_plots(a: NetworkAnalysis, out: Path, progress: PhaseProgress | None = None) -> dict[str, str]:
    """Write every figure into ``out``; returns figure key → file name (relative to ``out``)."""
    plotters = {"degrees": plot_degrees, "densification": plot_densification, "step_series": plot_step_series,
                "step_fits": plot_step_fits}
    names: dict[str, str] = {}
    for i, (key, plot) in enumerate(plotters.items(), start=1):
        name = plot(a, out)
        if name:
            names[key] = name
        if progress:
            progress("plots", i, len(plotters))
    return names
