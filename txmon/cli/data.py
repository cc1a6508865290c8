"""``txmon data``: generate synthetic data sets and describe any data set."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from txmon.cli.common import console, fail, load_dataset, phase_progress
from txmon.core.elliptic_format import FILES, N_STEPS

data_app = typer.Typer(help="Elliptic-format data sets: generate synthetic ones, describe any.", no_args_is_help=True)


@data_app.command()
def synth(
    out: Annotated[Path, typer.Option("--out", "-o", help="directory to write the three Kaggle-format files to")],
    scale: Annotated[float, typer.Option(help="size: 1.0 = Elliptic (≈203,769 transactions, ≈234k edges)")] = 1.0,
    steps: Annotated[int, typer.Option(help=f"number of time steps (1..{N_STEPS}); the shutdown pattern needs 43+")]
    = N_STEPS,
    seed: Annotated[int, typer.Option(help="random seed: same seed, same bytes")] = 0,
    force: Annotated[bool, typer.Option("--force", help="overwrite files already in --out")] = False,
) -> None:
    """Generate a synthetic data set in exactly the Kaggle format (features, classes, edge list)."""
    from replay.synth import synthesize

    existing = [f for f in FILES if (out / f).exists()]
    if existing and not force:
        fail(f"{out} already holds {', '.join(existing)}; pass --force to overwrite")
    if not 0 < scale <= 10:
        fail(f"--scale must be in (0, 10], got {scale}")
    if not 1 <= steps <= N_STEPS:
        fail(f"--steps must be in 1..{N_STEPS}, got {steps}")
    t0 = time.perf_counter()
    with phase_progress() as progress:
        data = synthesize(out, scale=scale, n_steps=steps, seed=seed, progress=progress)
    console.print(f"wrote {len(data.tx_ids):,} transactions and {len(data.edges):,} edges over {steps} steps "
                  f"to {out} in {time.perf_counter() - t0:.1f} s (seed {seed})")


@data_app.command()
def describe(
    data_dir: Annotated[Path, typer.Argument(help="directory holding the three Elliptic CSV files")],
    as_json: Annotated[bool, typer.Option("--json", help="print the statistics as JSON")] = False,
    per_step: Annotated[bool, typer.Option("--per-step/--no-per-step", help="include the per-step table")] = True,
) -> None:
    """Print a data set's statistics (per-step counts, edges per node, labels, degrees, clustering)."""
    from replay.data.describe import describe as compute

    ds = load_dataset(data_dir)
    stats = compute(ds)
    if as_json:
        typer.echo(json.dumps(stats.to_dict(), indent=2))
        return
    if per_step:
        table = Table(title=f"{data_dir}: per time step", header_style="bold")
        for col in ("step", "nodes", "edges", "E/N", "density", "WCC", "illicit", "licit", "unknown",
                    "max in", "max out", "clustering"):
            table.add_column(col, justify="right")
        for s in stats.per_step:
            table.add_row(str(s.step), f"{s.nodes:,}", f"{s.edges:,}", f"{s.edges_per_node:.3f}", f"{s.density:.2e}",
                          str(s.components), f"{s.illicit:,}", f"{s.licit:,}", f"{s.unknown:,}",
                          str(s.max_in_degree), str(s.max_out_degree), f"{s.clustering:.4f}")
        console.print(table)

    summary = Table(title=f"{data_dir}: summary (Elliptic's published value in brackets)", show_header=False)
    summary.add_column(style="bold")
    summary.add_column()
    rows = [
        ("transactions", f"{stats.nodes:,} over {stats.steps} steps  [203,769 over 49]"),
        ("edges", f"{stats.edges:,}  [234,355]"),
        ("edges per node", f"{stats.edges_per_node:.3f}  [1.150]"),
        ("per step", f"min {stats.step_size_min:,} / mean {stats.step_size_mean:,.0f} / max {stats.step_size_max:,}"
                     "  [1,000–8,000, mean 4,159]"),
        ("labels", f"illicit {stats.share_illicit:.1%} / licit {stats.share_licit:.1%} / unknown "
                   f"{stats.share_unknown:.1%}  [2.2% / 20.6% / 77.2%]"),
        ("cross-step edges", f"{stats.cross_step_edges:,}  [0]"),
        ("self loops / duplicates", f"{stats.self_loops:,} / {stats.duplicate_edges:,}"),
        ("weakly connected steps", f"{stats.steps_weakly_connected} of {stats.steps}  [all]"),
        ("clustering", f"average {stats.clustering:.4f}, transitivity {stats.transitivity:.5f}  [< 0.02]"),
    ]
    for name, d in (("in-degree", stats.in_degree), ("out-degree", stats.out_degree)):
        rows.append((name, f"mean {d.mean:.2f}, median {d.median:.0f}, p90 {d.p90:.0f}, p99 {d.p99:.0f}, "
                           f"max {d.max:,}"))
    rows.append(("illicit homophily", f"{stats.illicit_neighbour_share:.1%} of an illicit node's labelled neighbours "
                                      f"are illicit (base rate {stats.illicit_base_share:.1%})"))
    for name, value in rows:
        summary.add_row(name, value)
    console.print(summary)
