"""``txmon analyze``: network statistics, power-law and densification fits, plots and a report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from txmon.cli.common import console, fail, load_dataset, phase_progress


def analyze(
    data_dir: Annotated[Path, typer.Argument(help="directory holding the three Elliptic CSV files")],
    out: Annotated[Path, typer.Option("--out", "-o", help="report directory; created, report files in it are "
                                                          "overwritten")] = Path("out/analysis"),
    step_fits: Annotated[bool, typer.Option("--step-fits/--no-step-fits",
                                            help="also fit degree power laws on each step's graph")] = True,
    window: Annotated[int, typer.Option(help="steps in the rolling densification window (>= 3)")] = 10,
) -> None:
    """Analyse the transaction network: write report.md, analysis.json and PNG plots to --out.

    Per step and cumulative: nodes, edges, average degree, density, weakly connected components, clustering.

    In/out-degree power laws (MLE, x_min by KS distance, vs lognormal); densification exponent α of E ∝ N^α.
    """
    from replay.analysis import run_analysis

    if window < 3:
        fail(f"--window must be at least 3, got {window}")
    if out.exists() and not out.is_dir():
        fail(f"--out {out} exists and is not a directory")
    ds = load_dataset(data_dir)
    t0 = time.perf_counter()
    try:
        with phase_progress() as progress:
            result = run_analysis(ds, out, step_fits=step_fits, window=window, source=str(data_dir), progress=progress)
    except OSError as e:
        fail(f"cannot write to {out}: {e.strerror or e}")

    a = result.network
    last = a.cumulative[-1]
    table = Table(title=f"{data_dir}: network", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    d = a.densification
    table.add_row("nodes / edges", f"{last.nodes:,} / {last.edges:,} over {len(a.per_step)} steps")
    table.add_row("densification α", f"{d.alpha:.3f} (R² {d.r2:.4f})" if d else "–")
    table.add_row("clustering", f"{last.clustering:.4f} (transitivity {last.transitivity:.5f})")
    for dist in (a.in_degree, a.out_degree):
        pl = dist.fit.power_law if dist.fit else None
        table.add_row(f"{dist.direction}-degree power law",
                      f"α {pl.alpha:.2f}, x_min {pl.xmin:g}, {pl.n_tail:,} tail nodes, vs lognormal "
                      f"R {pl.lognormal_loglik_ratio:+.2f} (p {pl.lognormal_p:.2f})" if pl else "–")
    console.print(table)
    console.print(f"wrote {result.report} and {result.json.name} + {len(result.plots)} plots in "
                  f"{time.perf_counter() - t0:.1f} s")
