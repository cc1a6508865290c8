"""Network analysis of an Elliptic-format data set: statistics, fits, plots, report.

``run_analysis`` writes report.md, analysis.json and PNG figures; the fits in ``txmon.core.fits``
work on plain arrays and are shared with the streaming worker.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from replay.analysis.network import GraphStats, NetworkAnalysis, analyze_network
from replay.data.dataset import EllipticDataset
from txmon.core.fits import (
    DensificationFit,
    TailFit,
    densification_series,
    fit_densification,
    fit_power_law,
    fit_tail,
)
from txmon.core.progress import PhaseProgress

__all__ = [
    "AnalysisResult", "DensificationFit", "GraphStats", "NetworkAnalysis", "TailFit", "analyze_network",
    "densification_series", "fit_densification", "fit_power_law", "fit_tail", "run_analysis",
]


@dataclass(frozen=True)
class AnalysisResult:
    network: NetworkAnalysis
    report: Path
    json: Path
    plots: dict[str, str]  # figure key → file name inside the output directory
    seconds: dict[str, float]  # wall time per phase


def run_analysis(
    ds: EllipticDataset,
    out: Path,
    *,
    step_fits: bool = True,
    window: int = 10,
    source: str | None = None,
    progress: PhaseProgress | None = None,
) -> AnalysisResult:
    """Analyse ``ds`` and write report.md, analysis.json and the figures into ``out`` (created, overwritten)."""
    from replay.analysis.plots import write_plots
    from replay.analysis.report import write_json, write_report

    if window < 3:
        raise ValueError(f"window must be at least 3 steps, got {window}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    network = analyze_network(ds, step_fits=step_fits, window=window, progress=progress)
    t1 = time.perf_counter()
    plots = write_plots(network, out, progress)
    t2 = time.perf_counter()
    report = write_report(network, plots, out, source=source, fingerprint=ds.fingerprint or None)
    seconds = {"statistics_and_fits": t1 - t0, "plots": t2 - t1, "report": time.perf_counter() - t2}
    meta = {"source": source, "fingerprint": ds.fingerprint or None,
            "options": {"step_fits": step_fits, "window": window}, "seconds": seconds}
    path = write_json(network, plots, out, extra=meta)
    if progress:
        progress("report", 1, 1)
    return AnalysisResult(network, report, path, plots, seconds)
