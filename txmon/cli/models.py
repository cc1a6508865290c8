"""``txmon models``: list, inspect and promote versions in the model store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import JustifyMethod
from rich.markup import escape
from rich.table import Table

from txmon.cli.common import console, fail, open_store

models_app = typer.Typer(help="The versioned model store: list, show and promote trained models.",
                         no_args_is_help=True)

StoreOption = Annotated[Path | None, typer.Option("--store", help="model store directory [default: TXMON_MODEL_DIR "
                                                                  "or ./models]")]
TypeOption = Annotated[str | None, typer.Option("--type", "-t", help="model type, e.g. gcn, mlp, rf, lpa")]


def _metric(metrics: dict[str, Any], name: str) -> float | None:
    """The illicit-class metric, wherever a trainer put it: test.f1, test.illicit.f1, f1 or illicit.f1."""
    test = metrics.get("test")
    for scope in (test, test.get("illicit") if isinstance(test, dict) else None, metrics, metrics.get("illicit")):
        value = scope.get(name) if isinstance(scope, dict) else None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


@models_app.command("list")
def list_models(type_: TypeOption = None, store: StoreOption = None) -> None:
    """List saved versions (by type, then version); '*' marks the latest of each type."""
    from model_store.registry import BrokenVersion, ModelStoreError

    s = open_store(store)
    try:
        entries = s.scan(type_)
        latest = {t: s.latest(t) for t in {e.model_type for e in entries}}
    except ModelStoreError as err:
        fail(escape(str(err)))
    if not entries:
        console.print(f"no {type_ + ' ' if type_ else ''}models in {s.root}")
        return
    table = Table(title=f"models in {s.root}", header_style="bold")
    # On a narrow terminal only created/dataset wrap: the marker, ids and numbers stay whole.
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("", "left"), ("version", "left"), ("type", "left"), ("created (UTC)", "left"), ("thresh", "right"),
        ("f1", "right"), ("prec", "right"), ("recall", "right"), ("dataset", "left"))
    for col, justify in columns:
        table.add_column(col, justify=justify, no_wrap=col not in ("created (UTC)", "dataset"))
    broken = []
    for e in entries:
        mark = "*" if latest.get(e.model_type) == e.version else ""
        if isinstance(e, BrokenVersion):
            table.add_row(mark, e.version, e.model_type, "[red]BROKEN[/]", "", "", "", "", "")
            broken.append(e)
            continue
        metrics = [_metric(e.metrics, k) for k in ("f1", "precision", "recall")]
        # Fingerprints are often "sha256:<hex>": the hex is the part worth seeing.
        fingerprint = e.dataset_fingerprint.rsplit(":", 1)[-1][:12]
        table.add_row(mark, e.version, e.model_type, e.created_at.strftime("%Y-%m-%d %H:%M"), f"{e.threshold:.3f}",
                      *("–" if v is None else f"{v:.3f}" for v in metrics), escape(fingerprint))
    console.print(table)
    console.print("* = latest of its type; f1/prec/recall: illicit class (test split when recorded)")
    for e in broken:
        console.print(f"[red]BROKEN[/] {e.version}: {escape(e.error)}")


@models_app.command()
def show(
    ref: Annotated[str, typer.Argument(metavar="VERSION|latest", help="a version id (gcn-v2) or 'latest'")],
    type_: TypeOption = None,
    store: StoreOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the manifest and verification result as JSON")]
    = False,
) -> None:
    """Print a version's full manifest and whether its weights verify (exit code 1 if they do not)."""
    from model_store.registry import ModelStoreError

    s = open_store(store)
    try:
        m = s.manifest(ref, type_)
    except ModelStoreError as e:
        fail(escape(str(e)))
    try:
        if m.model_type == "gcn":  # what a worker checks before it serves one
            from model_store.inference import load_servable_gcn

            load_servable_gcn(s, m.version)
        else:
            s.load(m.version)
        error = None
    except ModelStoreError as e:
        error = str(e)
    if as_json:
        typer.echo(json.dumps({"manifest": m.model_dump(mode="json"), "weights_verified": error is None,
                               "error": error}, indent=2))
    else:
        table = Table(title=f"{m.version}{' (latest)' if s.latest(m.model_type) == m.version else ''}",
                      show_header=False)
        table.add_column(style="bold")
        table.add_column()
        for key, value in m.model_dump(mode="json").items():
            if key in ("feature_mean", "feature_std") and value is not None:
                value = f"{len(value)} values"
            elif key == "arrival" and m.arrival is not None:  # its full metrics: txmon evaluate
                a = m.arrival
                test = a.metrics.get("test", {}).get("f1")
                value = (f"threshold {a.threshold:.4f}, window {a.window_size}, {a.weights_file} "
                         f"(sha256 {a.weights_sha256[:12]}…), validation F1 "
                         f"{a.metrics.get('val', {}).get('f1', float('nan')):.3f}"
                         + (f", test F1 {test:.3f}" if test is not None else ""))
            elif isinstance(value, dict):
                value = json.dumps(value, indent=2)
            table.add_row(key, escape(str(value)))
        checked = "sha256 matches, tensors only" + (", the GCN builds" if m.model_type == "gcn" else "")
        if m.arrival is not None:
            checked += ", and so does its arrival model"
        table.add_row("weights", f"[green]verified[/] ({checked})" if error is None
                      else f"[red]REFUSED[/]: {escape(error)}")
        console.print(table)
    if error is not None:
        raise typer.Exit(1)


@models_app.command()
def promote(
    version: Annotated[str, typer.Argument(help="the version id to make the latest of its type, e.g. gcn-v2")],
    store: StoreOption = None,
) -> None:
    """Make a version the latest of its type (after verifying its weights)."""
    from model_store.registry import ModelStoreError

    s = open_store(store)
    try:
        previous = s.promote(version)
    except ModelStoreError as e:
        fail(escape(str(e)))
    model_type = s.manifest(version).model_type
    console.print(f"latest {model_type} is now {version}" + (f" (was {previous})" if previous else ""))
