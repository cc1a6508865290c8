"""The report's PNG figures, drawn from the Report alone (matplotlib's object API on the Agg canvas)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator

from replay.analysis.plots import alpha_axis, figure
from replay.report.model import DegreeFit, Report
from txmon.core.contracts import ALERT_KINDS, VERDICTS

KIND_COLOURS = {"arrival": "tab:blue", "confirmed": "tab:red", "retracted": "tab:gray", "final": "tab:orange"}


def _step_axis(ax: Axes, r: Report) -> None:
    ax.set_xlabel("step")
    ax.set_xlim(r.header.first_step - 0.5, r.header.last_step + 0.5)  # the whole period, also where nothing is drawn
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _nan(x: float | None) -> float:
    return np.nan if x is None else x  # matplotlib leaves a gap at NaN: an undefined metric is not drawn


def plot_metrics_per_step(r: Report, path: Path) -> None:
    fig, axes = figure(1, 2, 12, 4.2)
    steps = [m.step for m in r.metrics.per_step]
    for ax, verdict in zip(axes, VERDICTS, strict=True):
        for metric, style in (("precision", "-o"), ("recall", "-s"), ("f1", "-^")):
            ax.plot(steps, [_nan(getattr(getattr(m, verdict), metric)) for m in r.metrics.per_step], style, ms=3,
                    label=metric)
        ax.set(title=f"{verdict} verdict per step (illicit = positive; gaps: undefined)", ylim=(-0.02, 1.02))
        _step_axis(ax, r)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.savefig(path)


def plot_confusion(r: Report, path: Path) -> None:
    fig, axes = figure(1, 2, 8, 3.6)
    for ax, verdict in zip(axes, VERDICTS, strict=True):
        m = np.array(r.metrics.confusion[verdict])
        ax.imshow(m, cmap="Blues")
        for (i, j), v in np.ndenumerate(m):
            ax.text(j, i, f"{v:,}", ha="center", va="center", color="white" if v > m.max() / 2 else "black")
        ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["not flagged", "flagged"],
               yticklabels=["licit", "illicit"], xlabel="verdict", ylabel="label", title=f"{verdict} verdict")
    fig.savefig(path)


def plot_early(r: Report, path: Path) -> None:
    """Arrival against final verdicts: each step's (recall, precision) of both, joined, and the retraction rate."""
    fig, (pr, retr) = figure(1, 2, 12, 4.2)
    steps = [e for e in r.metrics.early if "-" not in e.steps]
    for e in steps:
        a, f = e.arrival, e.final
        if None not in (a.recall, a.precision, f.recall, f.precision):
            pr.plot([_nan(f.recall), _nan(a.recall)], [_nan(f.precision), _nan(a.precision)], color="lightgray",
                    lw=0.8, zorder=1)
    for verdict, colour in (("arrival", KIND_COLOURS["arrival"]), ("final", KIND_COLOURS["final"])):
        pr.scatter([_nan(getattr(e, verdict).recall) for e in steps],
                   [_nan(getattr(e, verdict).precision) for e in steps], s=14, color=colour, label=f"{verdict}, a step")
        whole = r.metrics.early[0]
        pr.scatter([_nan(getattr(whole, verdict).recall)], [_nan(getattr(whole, verdict).precision)], s=90,
                   marker="*", color=colour, edgecolor="black", label=f"{verdict}, steps {whole.steps}", zorder=3)
    pr.set(title="precision against recall: arrival and final verdicts", xlabel="recall", ylabel="precision",
           xlim=(-0.02, 1.02), ylim=(-0.02, 1.02))
    pr.grid(True, alpha=0.3)
    pr.legend(fontsize=8, loc="lower left")
    retr.bar([int(e.steps) for e in steps], [_nan(e.retraction_rate) for e in steps], color=KIND_COLOURS["retracted"])
    retr.set(title="share of arrival alerts retracted at step close", ylabel="retracted", ylim=(0, 1.02))
    _step_axis(retr, r)
    retr.grid(True, axis="y", alpha=0.3)
    fig.savefig(path)


def plot_alerts_per_step(r: Report, path: Path) -> None:
    fig, (ax,) = figure(1, 1, 10, 3.8)
    steps = np.array([c.step for c in r.alerts.per_step])
    bottom = np.zeros(steps.size)
    for kind in ALERT_KINDS:
        counts = np.array([getattr(c, kind) for c in r.alerts.per_step])
        ax.bar(steps, counts, bottom=bottom, color=KIND_COLOURS[kind], label=f"{kind} ({r.alerts.by_kind[kind]:,})")
        bottom += counts
    ax.set(title="alerts per step by kind (the step the alert names)", ylabel="alerts")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("step")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path)


def plot_latency(r: Report, path: Path) -> None:
    series = [(f"{k} alerts: event → alert", lat, KIND_COLOURS[k]) for k, lat in r.latency.event_to_alert.items()
              if lat.histogram is not None]
    close = r.latency.step_close
    if close is not None and close.histogram is not None:
        series.append(("step close: end marker sent → statistics", close, "tab:green"))
    fig, axes = figure(1, len(series), 4.5 * len(series), 3.6)
    for ax, (title, lat, colour) in zip(axes, series, strict=True):
        h = lat.histogram
        assert h is not None
        ax.stairs(h.counts, h.edges, fill=True, color=colour, alpha=0.7)
        for q, style in (("p50", "-"), ("p90", "--"), ("p99", ":")):
            ax.axvline(getattr(lat, q), color="black", ls=style, lw=1, label=f"{q} {getattr(lat, q):.3f} s")
        ax.set(title=f"{title} (n = {lat.count:,})", xlabel="seconds", ylabel="count")
        ax.title.set_fontsize(9)
        ax.legend(fontsize=8)
    fig.savefig(path)


def _fit_alpha(fit: DegreeFit | None) -> float:
    return np.nan if fit is None else _nan(fit.alpha)


def plot_step_stats(r: Report, path: Path) -> None:
    fig, axes = figure(2, 3, 14, 7.2)
    steps = [s.step for s in r.steps]

    def panel(ax: Axes, title: str, series: list[tuple[str, list[float]]]) -> None:
        for label, ys in series:
            ax.plot(steps, ys, "-o", ms=3, label=label)
        ax.set_title(title, fontsize=10)
        _step_axis(ax, r)
        ax.grid(True, alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize=8)

    panel(axes[0], "nodes and edges per step", [("nodes", [s.nodes_step for s in r.steps]),
                                                ("edges", [s.edges_step for s in r.steps])])
    panel(axes[1], "average degree (E / N)", [("", [_nan(s.avg_degree) for s in r.steps])])
    panel(axes[2], "clustering (3 · triangles / wedges)", [("", [_nan(s.clustering) for s in r.steps])])
    panel(axes[3], "triangles per step", [("", [s.triangles_step for s in r.steps])])
    panel(axes[4], "degree power-law α per step", [("in", [_fit_alpha(s.in_degree_fit) for s in r.steps]),
                                                    ("out", [_fit_alpha(s.out_degree_fit) for s in r.steps])])
    panel(axes[5], "density E / (N(N−1))", [("", [_nan(s.density) for s in r.steps])])
    fig.savefig(path)


def plot_densification(r: Report, path: Path) -> None:
    fig, (left, right) = figure(1, 2, 12, 4.6)
    n = np.array([s.nodes_total for s in r.steps], dtype=np.float64)
    e = np.array([s.edges_total for s in r.steps], dtype=np.float64)
    ok = (n > 0) & (e > 0)  # a log axis cannot show zero
    left.loglog(n[ok], e[ok], "o", color="tab:blue", ms=4, label="cumulative E(t) vs N(t)")
    fit = r.densification.fit
    if fit is not None and fit.alpha is not None and fit.intercept is not None and ok.any():
        xs = np.geomspace(n[ok].min(), n[ok].max(), 50)
        r2 = f"{fit.r2:.4f}" if fit.r2 is not None else "n/a"
        left.loglog(xs, np.exp(fit.intercept) * xs ** fit.alpha, "-", color="tab:red",
                    label=f"fit over the period: α = {fit.alpha:.3f}, R² = {r2}")
        left.loglog(xs, xs, ":", color="0.4", label="E = N (α = 1)")
    left.set(xlabel="nodes N (cumulative)", ylabel="edges E (cumulative)", title="densification E ∝ N^α")
    left.grid(True, which="major", alpha=0.3)
    left.legend(fontsize=8, loc="upper left")

    steps = [s.step for s in r.steps]
    right.plot(steps, [_nan(s.densification_alpha) for s in r.steps], "-o", ms=3, color="tab:red",
               label="α over the stream's history")
    window = r.densification.window
    right.plot(steps, [_nan(s.densification_alpha_window) for s in r.steps], "-s", ms=3, color="tab:green",
               label=f"α over the last {window} steps" if window else "α over the rolling window")
    right.axhline(1.0, color="0.4", ls=":", lw=1, label="α = 1 (no densification)")
    alpha_axis(right)
    right.set(ylabel="α", title="α from each step's statistics record")
    _step_axis(right, r)
    right.grid(True, alpha=0.3)
    right.legend(fontsize=8)
    fig.savefig(path)


PLOTTERS: dict[str, Callable[[Report, Path], None]] = {
    "metrics_per_step": plot_metrics_per_step,
    "confusion": plot_confusion,
    "alerts_per_step": plot_alerts_per_step,
    "early": plot_early,
    "latency": plot_latency,
    "step_stats": plot_step_stats,
    "densification": plot_densification,
}


def write_plots(r: Report, out_dir: Path) -> dict[str, Path]:
    """Every figure the report names in ``r.plots``, written into ``out_dir``."""
    paths = {}
    for key, name in r.plots.items():
        PLOTTERS[key](r, out_dir / name)
        paths[key] = out_dir / name
    return paths
