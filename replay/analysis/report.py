"""report.md and analysis.json from a NetworkAnalysis: tables, plus findings worded from the values."""

from __future__ import annotations

import json
import math
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from replay.analysis.network import DegreeDistribution, GraphStats, NetworkAnalysis
from txmon.core.fits import DensificationFit, TailFit

NEAR_ONE = 0.05  # |α − 1| below this is "no densification" in practice (α's standard error is tiny)
CLUSTERING_PUBLISHED = 0.02  # Elliptic: clustering coefficient below 0.02
DENSITY_PUBLISHED = 0.0005  # Elliptic: density below 0.0005 per step
SIGNIFICANT_P = 0.1  # Clauset et al. treat the likelihood-ratio sign as meaningful below p = 0.1
SEED_PAPER_ALPHA = 1.15


def to_jsonable(obj: Any) -> Any:
    """Plain JSON values: dataclasses and pydantic models as dicts, numpy scalars as numbers, NaN/inf as null."""
    if isinstance(obj, BaseModel):
        return to_jsonable(obj.model_dump())
    if is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


# ---------------------------------------------------------------- findings, worded from the numbers


def _pm(x: float) -> str:
    return f"{x:.2g}" if math.isfinite(x) else "n/a"


def _span(lo: float, hi: float, fmt: str = ".3f") -> str:
    a, b = format(lo, fmt), format(hi, fmt)
    return a if a == b else f"{a}–{b}"


def _change(before: float, after: float) -> str:
    a, b = f"{before:.3f}", f"{after:.3f}"
    return f"stayed at {a}" if a == b else f"went from {a} to {b}"


def densification_findings(a: NetworkAnalysis) -> list[str]:
    f = a.densification
    if f is None:
        return ["Densification: not fitted (it needs at least two steps with edges)."]
    last, first = a.cumulative[-1], a.cumulative[0]
    ratio = last.edges / last.nodes
    head = f"Densification: α = {f.alpha:.3f} ± {_pm(f.stderr)} (R² {f.r2:.4f}, {f.n_points} cumulative steps)"
    if abs(f.alpha - 1) <= NEAR_ONE:
        out = [f"{head}: **no densification** — edges grow in proportion to nodes (E ∝ N¹), "
               f"with E/N = {ratio:.3f} over the whole history."]
    elif f.alpha > 1:
        out = [f"{head}: **densification** — edges grow faster than nodes, so the average degree rises over time "
               f"(E/N {_change(first.edges / first.nodes, ratio)})."]
    else:
        out = [f"{head}: **sparsification** — edges grow more slowly than nodes "
               f"(E/N {_change(first.edges / first.nodes, ratio)})."]

    if abs(f.alpha - 1) <= NEAR_ONE:
        per_step = [s.edges / s.nodes for s in a.per_step if s.nodes]
        growth = (last.nodes / first.nodes) ** (SEED_PAPER_ALPHA - 1)
        disjoint = (f"No edge crosses two steps ({a.cross_step_edges} cross-step edges), so N(t) and E(t) are sums "
                    "over steps; " if a.cross_step_edges == 0 else "")
        out.append(
            f"{disjoint}every step has E_t/N_t of {_span(min(per_step), max(per_step))}, so E(t) ≈ "
            f"{ratio:.2f}·N(t): a line of slope 1 on log-log axes. The α = {SEED_PAPER_ALPHA} that the seed paper "
            f"quotes for Bitcoin matches this edges-per-node ratio (here {ratio:.3f}; Elliptic publishes 1.150), not "
            f"an exponent: E ∝ N^{SEED_PAPER_ALPHA} would make E/N grow by a factor of {growth:.2f} while N grows "
            f"from {first.nodes:,} to {last.nodes:,}, whereas here E/N {_change(first.edges / first.nodes, ratio)}."
        )
    across = a.densification_across_steps
    if across is not None:
        size = "bigger steps are not denser" if abs(across.alpha - 1) <= NEAR_ONE else (
            "bigger steps are denser" if across.alpha > 1 else "bigger steps are sparser")
        out.append(f"Across single steps, E_t ∝ N_t^α with α = {across.alpha:.3f} (R² {across.r2:.4f}): {size}.")
    window = [w.alpha for w in a.densification_window if w is not None]
    if window:
        out.append(f"α fitted over a rolling window of the last {a.window} steps: {_span(min(window), max(window))}.")
    return out


def structure_findings(a: NetworkAnalysis) -> list[str]:
    last = a.cumulative[-1]
    steps = len(a.per_step)
    clust = [s.clustering for s in a.per_step]
    single = sum(s.components == 1 for s in a.per_step)
    dens = [s.density for s in a.per_step]
    deg = [s.avg_in_degree for s in a.per_step]
    above = sum(c >= CLUSTERING_PUBLISHED for c in clust)
    level = (f"**close to 0**, below Elliptic's published {CLUSTERING_PUBLISHED}: a transaction's neighbours are "
             "rarely linked to each other" if above == 0 else
             f"**above** Elliptic's published {CLUSTERING_PUBLISHED} in {above} of {steps} steps")
    comps = ("every step is one weakly connected component, as published for Elliptic" if single == steps else
             f"{single} of {steps} steps are one weakly connected component (Elliptic: all of them); components per "
             f"step range from {min(s.components for s in a.per_step)} to {max(s.components for s in a.per_step)}")
    below = sum(d < DENSITY_PUBLISHED for d in dens)
    dens_cmp = "below it" if below == steps else f"below it in {below} of {steps} steps"
    return [
        f"Clustering: average local clustering {last.clustering:.4f} over the whole graph (per step "
        f"{min(clust):.4f}–{max(clust):.4f}), transitivity {last.transitivity:.5f}, {last.triangles:,} triangles "
        f"in all — {level}.",
        f"Components: {comps}.",
        f"Density per step: {min(dens):.2e}–{max(dens):.2e} (Elliptic publishes below {DENSITY_PUBLISHED}; "
        f"{dens_cmp}); "
        f"average in-degree = out-degree = E/N per step: {_span(min(deg), max(deg), '.2f')} (undirected degree "
        f"2E/N ≈ {2 * last.edges / last.nodes:.2f}).",
    ]


def degree_finding(d: DegreeDistribution) -> str:
    head = (f"{d.direction.capitalize()}-degree: {d.positive:,} of {d.nodes:,} nodes have {d.direction}-degree > 0 "
            f"(mean {d.mean:.2f}, max {d.max:,})")
    tail = d.fit
    if tail is None:
        return f"{head}; too few values for a power-law fit."
    pl = tail.power_law
    share = pl.n_tail / tail.n_values
    if pl.lognormal_p < SIGNIFICANT_P:
        verdict = ("the power law fits the tail significantly better" if pl.lognormal_loglik_ratio > 0 else
                   "the **lognormal fits significantly better**: the tail is not a convincing power law")
    else:
        verdict = (f"the test **cannot tell them apart** (p ≥ {SIGNIFICANT_P}), so a power-law tail is plausible "
                   "but not established")
    scope = (f"; the power law only describes the top {share:.1%} of these nodes, not the bulk of the distribution"
             if share < 0.05 else "")
    return (f"{head}. Power law α = {pl.alpha:.2f} ± {tail.alpha_stderr:.2f} for k ≥ {pl.xmin:g} "
            f"({pl.n_tail:,} nodes; KS distance {pl.ks_distance:.3f}). Against a lognormal fitted to the same tail: "
            f"R = {pl.lognormal_loglik_ratio:+.2f}, p = {pl.lognormal_p:.2g} — {verdict}{scope}.")


def step_fit_finding(a: NetworkAnalysis) -> str | None:
    if not a.step_fits:
        return None
    parts = []
    for direction in ("in", "out"):
        fits = [getattr(f, f"{direction}_degree") for f in a.step_fits]
        fits = [f for f in fits if f is not None]
        if not fits:
            continue
        alpha = np.array([f.alpha for f in fits])
        xmin = np.array([f.xmin for f in fits])
        sig = [f for f in fits if f.lognormal_p < SIGNIFICANT_P]
        ln = sum(f.lognormal_loglik_ratio < 0 for f in sig)
        parts.append(f"{direction}-degree fitted in {len(fits)} of {len(a.step_fits)} steps, α median "
                     f"{np.median(alpha):.2f} (range {alpha.min():.2f}–{alpha.max():.2f}, x_min median "
                     f"{np.median(xmin):g}); lognormal significantly better in {ln} and power law in {len(sig) - ln} "
                     "of them")
    return "Per-step fits: " + "; ".join(parts) + "." if parts else None


def findings(a: NetworkAnalysis) -> list[str]:
    out = densification_findings(a) + structure_findings(a)
    out += [degree_finding(a.in_degree), degree_finding(a.out_degree)]
    step = step_fit_finding(a)
    return [*out, step] if step else out


# ---------------------------------------------------------------- Markdown


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _alpha(f: DensificationFit | None) -> str:
    return f"{f.alpha:.4f}" if f else "–"


def _densification_rows(a: NetworkAnalysis) -> list[list[str]]:
    window = next((w for w in reversed(a.densification_window) if w is not None), None)
    rows = []
    named = (("cumulative E(t) vs N(t)", a.densification), ("single steps E_t vs N_t", a.densification_across_steps),
             (f"cumulative, last {a.window} steps", window))
    for name, f in named:
        if f is None:
            rows.append([name, "–", "–", "–", "–", "–"])
        else:
            rows.append([name, f"{f.alpha:.4f}", _pm(f.stderr), f"{math.exp(f.intercept):.4f}", f"{f.r2:.6f}",
                         str(f.n_points)])
    return rows


def _degree_row(d: DegreeDistribution) -> list[str]:
    t: TailFit | None = d.fit
    base = [d.direction, f"{d.positive:,}", f"{d.mean:.3f}", f"{d.max:,}"]
    if t is None:
        return base + ["–"] * 9
    pl = t.power_law
    return base + [f"{pl.alpha:.3f}", f"{t.alpha_stderr:.3f}", f"{pl.xmin:g}", f"{pl.n_tail:,}",
                   f"{pl.ks_distance:.4f}", f"{pl.lognormal_loglik_ratio:+.3f}", f"{pl.lognormal_p:.3f}",
                   f"{t.lognormal_mu:.3f}", f"{t.lognormal_sigma:.3f}"]


def _stats_row(s: GraphStats) -> list[str]:
    return [str(s.step), f"{s.nodes:,}", f"{s.edges:,}", f"{s.avg_in_degree:.3f}", f"{s.density:.3e}",
            f"{s.components:,}", f"{s.triangles:,}", f"{s.clustering:.5f}", f"{s.transitivity:.5f}",
            f"{s.max_in_degree:,}", f"{s.max_out_degree:,}"]


STATS_HEADER = ["step", "nodes", "edges", "avg in = out degree", "density", "WCC", "triangles", "clustering",
                "transitivity", "max in", "max out"]


def render_report(a: NetworkAnalysis, plots: dict[str, str], source: str | None = None,
                  fingerprint: str | None = None) -> str:
    last = a.cumulative[-1]
    title = f"# Network analysis{f' of `{source}`' if source else ''}"
    meta = (f"{last.nodes:,} transactions, {last.edges:,} edges, {len(a.per_step)} steps "
            f"({a.steps[0]}–{a.steps[-1]})" + (f"; data fingerprint `{fingerprint[:12]}`" if fingerprint else "") + ".")
    parts = [title, meta, "## Findings", "\n".join(f"- {f}" for f in findings(a))]

    parts += ["## Densification", f"![densification]({plots['densification']})" if "densification" in plots else "",
              "Least squares on ln E = ln c + α ln N.",
              _table(["fit", "α", "s.e. of α", "c", "R²", "points"], _densification_rows(a))]

    parts += ["## Degree distributions",
              f"![degree distributions]({plots['degrees']})" if "degrees" in plots else "",
              "Complementary CDFs of the whole graph's degrees (nodes with degree > 0). The power law is the discrete "
              "maximum-likelihood fit above x_min, x_min chosen by the smallest Kolmogorov–Smirnov distance "
              "(Clauset, Shalizi & Newman 2009, via the `powerlaw` package, tails of at least 10 nodes); R is the "
              "normalised log-likelihood ratio power law vs lognormal on the same tail (> 0 favours the power law) "
              "and p its significance. The model curves are scaled to the tail's share of the nodes.",
              _table(["degree", "nodes > 0", "mean", "max", "α", "s.e.", "x_min", "tail nodes", "KS D", "R", "p",
                      "lognormal μ", "lognormal σ"], [_degree_row(a.in_degree), _degree_row(a.out_degree)])]

    if a.step_fits:
        rows = []
        for f in a.step_fits:
            row = [str(f.step)]
            for pl in (f.in_degree, f.out_degree):
                row += ([f"{pl.alpha:.3f}", f"{pl.xmin:g}", f"{pl.n_tail:,}", f"{pl.lognormal_loglik_ratio:+.2f}",
                         f"{pl.lognormal_p:.3f}"] if pl else ["–"] * 5)
            rows.append(row)
        parts += ["## Per-step power-law fits",
                  f"![per-step power-law fits]({plots['step_fits']})" if "step_fits" in plots else "",
                  "Each step's own graph, fitted as above.",
                  _table(["step", "in α", "in x_min", "in tail", "in R", "in p", "out α", "out x_min", "out tail",
                          "out R", "out p"], rows)]

    parts += ["## Per-step series", f"![per-step series]({plots['step_series']})" if "step_series" in plots else "",
              "### Each step's graph", _table(STATS_HEADER, [_stats_row(s) for s in a.per_step]),
              "### Cumulative graph (steps up to t)",
              _table([*STATS_HEADER, "α steps 1..t", f"α last {a.window}"],
                     [[*_stats_row(c), _alpha(h), _alpha(w)] for c, h, w in
                      zip(a.cumulative, a.densification_history, a.densification_window, strict=True)])]

    parts += ["## Definitions", "\n".join(f"- {d}" for d in (
        "The graph of step t is the subgraph induced by the step's transactions; the cumulative graph at t is "
        "induced by the transactions of steps up to t.",
        "Edges are rows of the edge list (directed, BTC flows from txId1 to txId2); average in-degree = average "
        "out-degree = E/N.",
        "Density is directed: E / (N (N − 1)).",
        "WCC: weakly connected components, isolated transactions included.",
        "Clustering: average local clustering coefficient of the simple undirected graph, nodes of degree < 2 "
        "counting as 0; transitivity: 3 × triangles / connected triples of the same graph.",
        f"Cross-step edges: {a.cross_step_edges:,}; self loops: {a.self_loops:,}.",
    ))]
    return "\n\n".join(p for p in parts if p) + "\n"


def write_report(a: NetworkAnalysis, plots: dict[str, str], out: Path, source: str | None = None,
                 fingerprint: str | None = None) -> Path:
    path = out / "report.md"
    path.write_text(render_report(a, plots, source, fingerprint), encoding="utf-8")
    return path


def write_json(a: NetworkAnalysis, plots: dict[str, str], out: Path, extra: dict[str, Any] | None = None) -> Path:
    doc = {**(extra or {}), "findings": findings(a), "plots": plots, "network": a}
    path = out / "analysis.json"
    path.write_text(json.dumps(to_jsonable(doc), indent=1, allow_nan=False) + "\n", encoding="utf-8")
    return path
