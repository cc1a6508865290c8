"""``txmon train`` and ``txmon evaluate``: fit detectors, store them, compare them honestly."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from model_store import MODEL_TYPES
from txmon.cli.common import console, err_console, fail, load_dataset, open_store

if TYPE_CHECKING:  # imported where used: `txmon --help` stays fast
    import numpy as np
    from numpy.typing import NDArray

    from model_store.arrival_train import ArrivalScores
    from model_store.manifest import ModelManifest
    from model_store.splits import Split
    from replay.data.dataset import EllipticDataset

DataOpt = Annotated[Path, typer.Option("--data", "-d", help="Elliptic-format data directory")]
SplitOpt = Annotated[str, typer.Option(help="temporal (train 1-34, test 35-49) or random (stratified 0.7/0.15/0.15)")]
StoreOpt = Annotated[Path | None, typer.Option("--store", help="model store directory [default: TXMON_MODEL_DIR]")]


@contextmanager
def training_bar(model_type: str, eager: bool = True) -> Iterator[Callable[[int, int, str], None]]:
    """A progress bar on stderr fed by ``train_model``'s ``(done, total, message)`` callbacks; shown at once, or
    with ``eager=False`` from the first callback on (when training may not happen at all)."""
    bar = Progress(TextColumn(f"training {model_type}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.description}"), TimeElapsedColumn(), console=err_console)
    task = bar.add_task("", total=None)
    started = False

    def update(done: int, total: int, message: str) -> None:
        nonlocal started
        if not started:
            bar.start()
            started = True
        bar.update(task, completed=done, total=total, description=message)

    if eager:
        bar.start()
        started = True
    try:
        yield update
    finally:
        if started:
            bar.stop()


def served_model_or_fail(ds: EllipticDataset, epochs: int, model_dir: Path) -> tuple[ModelManifest, str]:
    """The GCN ``txmon demo`` and the embedded ``txmon replay`` serve (``model_store.serving.served_model`` on
    ``model_dir``): (manifest, why). Says when it trains one, with a progress bar; exits with the store's
    message if it refuses."""
    from model_store.registry import ModelStore, ModelStoreError
    from model_store.serving import served_model

    try:
        with training_bar("gcn", eager=False) as progress:
            return served_model(ds, epochs, ModelStore(model_dir),
                                lambda message: console.print(message, highlight=False), progress)
    except ModelStoreError as e:
        fail(str(e))


def _check_split(split: str) -> None:
    from model_store.splits import SPLITS

    if split not in SPLITS:
        fail(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")


def train(
    model: Annotated[str, typer.Argument(help=f"one of: {', '.join(MODEL_TYPES)}")],
    data: DataOpt,
    split: SplitOpt = "temporal",
    seed: Annotated[int, typer.Option(help="random seed (split, initialisation, forest)")] = 0,
    epochs: Annotated[int, typer.Option(help="training epochs (GCN, MLP)", min=1)] = 200,
    store: StoreOpt = None,
    promote: Annotated[bool | None, typer.Option(
        "--promote/--no-promote", help="make this the latest of its type [default: if there is none yet]")] = None,
) -> None:
    """Train a model on a split, store it as a new version, and print its validation and test metrics.

    A gcn version also holds the model the worker serves on arrival, trained on the partial graphs it
    sees then (docs/models.md), with its own threshold chosen on validation; its arrival verdicts are
    compared with the GCN's at step close on the test steps.
    """
    from model_store.plots import confusion, training_curves
    from model_store.registry import ModelStoreError
    from model_store.serving import train_and_store
    from model_store.splits import make_split
    from model_store.train import TrainConfig

    if model not in MODEL_TYPES:
        fail(f"unknown model {model!r}; choose one of {', '.join(MODEL_TYPES)}")
    _check_split(split)
    ds = load_dataset(data)
    sp = make_split(ds, split, seed=seed)
    cfg = TrainConfig(model, split=split, seed=seed, epochs=epochs)
    st = open_store(store)
    try:
        with training_bar(model) as progress:
            manifest, result = train_and_store(ds, sp, cfg, st, promote, progress)
    except ModelStoreError as e:
        fail(str(e))
    vdir = st.root / manifest.version
    if result.curves:  # a forest has no epochs
        training_curves(result.curves, f"{model} on the {split} split", vdir / "training_curves.png")
    if result.arrival is not None:
        training_curves(result.arrival.curves, f"{model}'s arrival model on the {split} split",
                        vdir / "arrival_training_curves.png")
    confusion(result.metrics["test"]["confusion"], f"{model}, {split} test set", vdir / "confusion_test.png")
    _metrics_table(f"{manifest.version}: {sp.description}", {"validation": result.metrics["val"],
                                                             "test": result.metrics["test"]}, "set")
    if manifest.arrival is not None:
        arrival_table(f"{manifest.version}: arrival model (threshold {manifest.arrival.threshold:.3f}, chosen on "
                      f"validation arrival scores) against the GCN at step close, test steps",
                      manifest.arrival.metrics["comparison"])
    latest = st.latest(model)
    console.print(f"stored as [bold]{manifest.version}[/] in {st.root}"
                  f"{' (latest)' if latest == manifest.version else f' (latest {model} is {latest})'}; "
                  f"plots in {vdir}")


def _fmt(x: float) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def _arrival_evaluation(m: ModelManifest, state: dict, ds: EllipticDataset, sp: Split,
                        final: NDArray[np.float64], rate: float) -> tuple[dict, ArrivalScores]:
    """The arrival model of ``m`` (its tensors ``state``) on the test steps against the ``final`` scores."""
    from model_store.arrival_train import compare_on_test
    from model_store.inference import Scaler, build_gcn
    from model_store.train import select_features

    assert m.arrival is not None and m.feature_mean is not None and m.feature_std is not None
    x = Scaler(m.feature_mean, m.feature_std).transform(select_features(ds, m.architecture.get("feature_set", "all")))
    return compare_on_test(build_gcn(m, state, arrival=True), x, ds, sp, m.arrival.threshold, final, m.threshold,
                           m.arrival.window_size, rate)


def _metrics_table(title: str, rows: dict[str, dict], first: str) -> None:
    table = Table(title=title, header_style="bold")
    for col in (first, "precision", "recall", "F1", "accuracy", "ROC-AUC", "PR-AUC", "TP", "FP", "FN", "TN",
                "threshold"):
        table.add_column(col, justify="left" if col == first else "right")
    for name, m in rows.items():
        c = m["confusion"]
        table.add_row(name, _fmt(m["precision"]), _fmt(m["recall"]), _fmt(m["f1"]), _fmt(m["accuracy"]),
                      _fmt(m["roc_auc"]), _fmt(m["pr_auc"]), str(c["tp"]), str(c["fp"]), str(c["fn"]), str(c["tn"]),
                      _fmt(m["threshold"]))
    console.print(table)


def arrival_table(title: str, comparison: dict) -> None:
    """Arrival against final verdicts (``model_store.arrival_train.compare``): per step, per period, overall."""
    rate = comparison.get("rate")
    table = Table(title=title, header_style="bold")
    cols = ["steps", "labelled", "arr P", "arr R", "arr F1", "fin P", "fin R", "fin F1", "F1 ratio", "arrival alerts",
            "retracted", "ahead (tx)"] + (["ahead (s)"] if rate else [])
    for col in cols:
        table.add_column(col, justify="left" if col == "steps" else "right")
    rows = [(str(k), v, False) for k, v in comparison["per_step"].items()]
    rows += [(k, v, True) for k, v in comparison["periods"].items()] + [("all", comparison["overall"], True)]
    for name, b, bold in rows:
        a, f = b["arrival"], b["final"]
        retr = b["retraction_rate"]
        cells = [name, f"{b['labelled']:,}", _fmt(a["precision"]), _fmt(a["recall"]), _fmt(a["f1"]),
                 _fmt(f["precision"]), _fmt(f["recall"]), _fmt(f["f1"]), _fmt(b["f1_ratio"]),
                 f"{b['arrival_alerts']:,}", "–" if math.isnan(retr) else f"{b['retracted']:,} ({retr:.0%})",
                 _fmt1(b["ahead_median_tx"])]
        if rate:
            cells.append(_fmt1(b["ahead_median_s"]))
        table.add_row(*cells, style="bold" if bold else None)
    console.print(table)
    console.print("[dim]arrival: the arrival model's verdicts as the worker raises them (simulated offline); final: "
                  "the GCN's at step close; retracted: arrival alerts the final verdict takes back (all transactions, "
                  "labelled or not); ahead: median transactions of the step after an arrival alert's window"
                  f"{f', and seconds at {rate:g} tx/s' if rate else ''}[/]")


def _fmt1(x: float) -> str:
    return "–" if math.isnan(x) else f"{x:,.1f}"


def evaluate(
    data: DataOpt,
    split: SplitOpt = "temporal",
    seed: Annotated[int, typer.Option(help="seed of the random split")] = 0,
    store: StoreOpt = None,
    out: Annotated[Path | None, typer.Option(help="also write evaluation.json and f1_per_step.png here")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the results as JSON")] = False,
    rate: Annotated[float, typer.Option(min=0.001, help="replay rate (tx/s) that converts how early an arrival "
                                                        "alert comes into seconds")] = 1000.0,
) -> None:
    """Compare every stored model trained on this data set and split, on the split's test set.

    Scores are recomputed from the stored weights (verified), with the threshold each model chose
    on validation; F1 per test step shows the collapse after the dark-market shutdown. A GCN's arrival
    model is scored as the worker scores it on arrival (simulated offline) and compared with the GCN's
    verdicts at step close: precision, recall, F1, retractions, how early; --out adds its PR curves.
    """

    from model_store.arrival_train import comparison_rows
    from model_store.metrics import f1_per_step, illicit_metrics
    from model_store.plots import arrival_pr
    from model_store.plots import f1_per_step as plot_f1
    from model_store.registry import ModelStoreError
    from model_store.scoring import score_stored
    from model_store.splits import make_split
    from txmon.core.elliptic_format import ILLICIT, UNKNOWN

    _check_split(split)
    ds = load_dataset(data)
    sp = make_split(ds, split, seed=seed)
    st = open_store(store)
    try:
        candidates = [m for m in st.list() if m.dataset_fingerprint == ds.fingerprint
                      and m.training.get("split") == split and m.training.get("seed", 0) == seed]
    except ModelStoreError as e:
        fail(str(e))
    newest: dict[str, ModelManifest] = {}
    for m in candidates:  # list() is sorted by version number: the newest of each type wins
        newest[m.model_type] = m
    if not newest:
        fail(f"no model in {st.root} was trained on this data set with the {split} split (seed {seed}); "
             f"run e.g. `txmon train gcn --data {data} --split {split}`")
    y = ds.labels == ILLICIT
    results: dict[str, dict] = {}
    arrival: dict[str, tuple[dict, ArrivalScores, NDArray[np.float64]]] = {}
    for model_type in [t for t in MODEL_TYPES if t in newest]:
        m = newest[model_type]
        try:
            manifest, state, arrival_state = st.load_with_arrival(m.version)
        except ModelStoreError as e:
            fail(str(e))
        scores = score_stored(manifest, state, ds)
        metrics = illicit_metrics(y[sp.test], scores[sp.test], manifest.threshold)
        per_step = f1_per_step(y[sp.test], scores[sp.test], ds.steps[sp.test], manifest.threshold)
        results[model_type] = {"version": manifest.version, **metrics, "f1_per_step": per_step}
        if arrival_state is not None:
            comparison, sim = _arrival_evaluation(manifest, arrival_state, ds, sp, scores, rate)
            arrival[model_type] = (comparison, sim, scores)
            results[model_type]["arrival"] = comparison
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / "evaluation.json").write_text(json.dumps({"split": sp.to_dict(), "models": results}, indent=2))
        plot_f1({k: v["f1_per_step"] for k, v in results.items()}, f"illicit F1 per test step ({split} split)",
                out / "f1_per_step.png")
        for model_type, (_, sim, final) in arrival.items():
            rows = comparison_rows(ds, sp) & (ds.labels != UNKNOWN)
            arrival_pr({"arrival": sim.scores[rows], "final": final[rows]}, y[rows],
                       {"arrival": results[model_type]["arrival"]["arrival_threshold"],
                        "final": results[model_type]["threshold"]},
                       f"{results[model_type]['version']}: arrival and step-close scores, test steps",
                       out / f"arrival_pr_{model_type}.png")
    if as_json:
        typer.echo(json.dumps({"split": sp.to_dict(), "models": results}, indent=2))
        return
    _metrics_table(f"test set: {sp.description}", {f"{k} ({v['version']})": v for k, v in results.items()}, "model")
    if split == "temporal":
        steps = sorted({s for v in results.values() for s in v["f1_per_step"]})
        table = Table(title="illicit F1 per test step (dark-market shutdown at step 43)", header_style="bold")
        table.add_column("model")
        for s in steps:
            table.add_column(str(s), justify="right")
        for k, v in results.items():
            table.add_row(k, *[f"{v['f1_per_step'].get(s, 0.0):.2f}" for s in steps])
        console.print(table)
    for model_type, (comparison, _, _) in arrival.items():
        m = newest[model_type]
        arrival_table(f"{m.version}: arrival model against the GCN at step close, test transactions",
                      comparison)
