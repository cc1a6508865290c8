"""``txmon demo``: the main job on the embedded default.

Data set (synthetic unless --data) → a GCN for it (trained once, then reused from the store) →
Kafka and Redis (an embedded Apache Kafka broker — Tansu where Java is missing — and redis-server unless
TXMON_KAFKA_BOOTSTRAP / TXMON_REDIS_URL are set) → a worker subprocess → the replay, with alerts and per-step statistics
shown live → a summary that joins the held-back labels to the alerts. Everything started here is
stopped here, also on Ctrl-C (exit code 130).
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from txmon.cli.common import console, err_console, fail, load_dataset, phase_progress, quiet_kafka_logs, read_settings
from txmon.core.elliptic_format import FILES
from txmon.core.settings import Settings

if TYPE_CHECKING:  # imported where used: `txmon --help` stays fast
    import numpy as np
    from numpy.typing import NDArray

    from model_store.manifest import ModelManifest
    from producer.send import ReplaySummary
    from replay.data.dataset import EllipticDataset
    from txmon.pipeline.follow import DemoState


class _Terminated(BaseException):
    """SIGTERM to the demo: unwind like Ctrl-C, so every child is stopped."""


def demo(
    data: Annotated[Path | None, typer.Option(help="an Elliptic-format data directory; default: synthetic")] = None,
    scale: Annotated[float, typer.Option(help="size of the synthetic data set when --data is not given")] = 0.25,
    full: Annotated[bool, typer.Option("--full", help="use a full-size synthetic data set (scale 1.0)")] = False,
    seed: Annotated[int, typer.Option(help="seed of the synthetic data set")] = 0,
    epochs: Annotated[int, typer.Option(min=1, help="GCN training epochs, when a model must be trained")] = 200,
    rate: Annotated[float | None, typer.Option(help="replay at this many transactions per second")] = None,
    max_speed: Annotated[bool, typer.Option("--max", help="replay as fast as the broker takes it (the default)")]
    = False,
    timeout: Annotated[float, typer.Option(min=1, help="seconds to wait, once the replay is sent, for the last "
                                                       "step's statistics")] = 300.0,
) -> None:
    """Run the main job: replay a data set through Kafka and the worker, with live alerts and statistics.

    Uses a synthetic data set unless --data, and a GCN trained on it (trained and stored if the store has none).

    Starts an embedded Apache Kafka broker (Tansu where Java is missing, or with TXMON_EMBEDDED_BROKER=tansu)
    and redis-server unless TXMON_KAFKA_BOOTSTRAP / TXMON_REDIS_URL are set.

    Ends with throughput and the alerts' precision/recall against the labels, which never travel on Kafka.
    """
    from txmon.cli.produce import check_replay_options

    check_replay_options(None, None, rate, max_speed, None)
    if not scale > 0:
        fail(f"--scale must be positive, got {scale:g}")
    previous = None
    with suppress(ValueError):  # not the main thread (e.g. a test harness's): leave SIGTERM alone
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        _run(read_settings(), data, 1.0 if full else scale, seed, epochs, rate, timeout)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]: everything the demo started has been stopped", highlight=False)
        raise typer.Exit(130) from None
    except _Terminated:
        err_console.print("[yellow]terminated[/]: everything the demo started has been stopped", highlight=False)
        raise typer.Exit(143) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Terminated()


@contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = time.perf_counter() - t0


def _prepare_data(data_dir: Path, data: Path | None, scale: float, seed: int) -> Path:
    if data is not None:
        return data
    data = data_dir / f"synthetic-scale{scale:g}-seed{seed}"
    if all((data / f).exists() for f in FILES):
        console.print(f"using the synthetic data set in {data}", highlight=False)
    else:
        from replay.synth import synthesize

        console.print(f"generating a synthetic data set (scale {scale:g}, seed {seed}) in {data}", highlight=False)
        with phase_progress() as progress:
            synthesize(data, scale=scale, seed=seed, progress=progress)
    return data


def _one_line(ds: EllipticDataset) -> str:
    counts = ds.label_counts()
    n = max(ds.n_nodes, 1)
    steps = sorted({int(s) for s in ds.steps})
    span = f"steps {steps[0]}..{steps[-1]}" if steps else "no steps"
    return (f"{ds.n_nodes:,} transactions, {ds.n_edges:,} edges ({ds.n_edges / n:.3f} per node), {span}; labels "
            f"{counts['illicit'] / n:.1%} illicit / {counts['licit'] / n:.1%} licit / {counts['unknown'] / n:.1%} "
            f"unknown")


def _run(settings: Settings, data: Path | None, scale: float, seed: int, epochs: int, rate: float | None,
         timeout: float) -> None:
    from rich.live import Live

    from model_store.splits import make_split
    from producer.send import new_replay_id
    from txmon.cli.live import render
    from txmon.cli.produce import plan_or_fail
    from txmon.cli.train import served_model_or_fail
    from txmon.core.errors import TxmonError
    from txmon.pipeline.follow import DemoState
    from txmon.pipeline.runner import Pipeline

    timings: dict[str, float] = {}
    with _timed(timings, "data"):
        data = _prepare_data(settings.data_dir, data, scale, seed)
        ds = load_dataset(data, settings)
    console.print(f"data set {data}: {_one_line(ds)}", highlight=False)

    with _timed(timings, "model"):
        manifest, how = served_model_or_fail(ds, epochs, settings.model_dir)
    test_f1 = (manifest.metrics.get("test") or {}).get("f1")
    console.print(f"serving [bold]{manifest.version}[/] ({how}; threshold {manifest.threshold:.3f}"
                  + (f", offline test F1 {test_f1:.3f}" if isinstance(test_f1, float) else "") + ")",
                  highlight=False)

    replay_id = new_replay_id()
    plan = plan_or_fail(ds, None, None, replay_id)
    quiet_kafka_logs()

    state = DemoState(replay_id, plan.count, plan.first_step, plan.last_step)
    pipeline = Pipeline(settings.model_copy(update={"model_version": manifest.version}),
                        app_id=f"txmon-demo-{replay_id}")
    try:
        pipeline.start()
    except TxmonError as e:
        fail(str(e), code=1)
    # Unwinds in reverse: live view, follower, worker (SIGTERM, wait, SIGKILL), then the embedded services.
    with ExitStack() as stack:
        stack.enter_context(pipeline)
        timings["services"] = pipeline.timings["services"]
        console.print(f"services: {pipeline.stack.describe() if pipeline.stack else ''}",
                      highlight=False)
        for note in pipeline.topics.notes:
            err_console.print(f"[yellow]warning:[/] {note}", highlight=False)

        worker = pipeline.start_worker(web_port=0)
        console.print(f"worker pid {worker.pid} (consumer group {pipeline.app_id}); its log: {worker.log_path}",
                      highlight=False)
        follower = pipeline.follow(state)

        def check() -> None:  # a dead worker or a failed follower stops every wait at once
            pipeline.check()
            follower.check()

        live = None
        try:
            follower.wait_assigned()
            with err_console.status("waiting for the worker to join its consumer group ..."):
                ready = pipeline.wait_ready(60, check=check)
            ready_after = time.monotonic() - worker.started_at
            if ready:
                state.worker_ready_after = ready_after
                console.print(f"worker ready after {ready_after:.1f} s", highlight=False)
            else:
                err_console.print("[yellow]warning:[/] no 'Ready' line in the worker's log after 60 s; "
                                  "replaying anyway", highlight=False)
            timings["worker ready"] = ready_after

            max_rows = max(5, console.size.height - 22) if console.is_terminal else 10**6
            live = stack.enter_context(Live(get_renderable=lambda: render(state, worker, max_rows), console=console,
                                            refresh_per_second=4, transient=False))

            def progress(sent: int, total: int) -> None:
                with state.lock:
                    state.sent = sent

            state.replay_started = time.monotonic()
            result = pipeline.run(plan, rate=rate, timeout=timeout, progress=progress, check=follower.check)
            summary = result.summary
            with state.lock:
                state.sent = summary.events
            # Everything the worker published for the replay is on the topics: wait until the view has it all.
            follower.wait_caught_up(sum(result.published.values()), 60, check=pipeline.check)
            live.stop()
            console.line()
        except TxmonError as e:  # a dead worker, the follower, the producer, no replay_end in time
            if live is not None:
                live.stop()
            fail(str(e), code=1)  # the stack unwinds: follower, worker, services
        timings["pipeline"] = (state.done_at or time.monotonic()) - state.replay_started
        follower.stop()
        t0 = time.perf_counter()
        worker_code = pipeline.stop_workers()[0]
        timings["worker stop"] = time.perf_counter() - t0
        stack.close()
        timings["shutdown"] = time.perf_counter() - t0

    test_mask = None
    if manifest.training.get("split") in ("temporal", "random"):
        test_mask = make_split(ds, manifest.training["split"], seed=manifest.training.get("seed", 0)).test
    broker = pipeline.stack.broker_name if pipeline.stack else "Kafka"
    _print_summary(state, summary, timings, manifest, ds, test_mask, worker_code, worker.log_path,
                   pipeline.run_dir, broker)


def _print_summary(state: DemoState, summary: ReplaySummary, timings: dict[str, float], manifest: ModelManifest,
                   ds: EllipticDataset, test_mask: NDArray[np.bool_] | None, worker_code: int | None, log_path: Path,
                   run_dir: Path, broker: str) -> None:
    import statistics

    from rich.table import Table

    from replay.report.evaluate import alerted_sets, evaluate_alerts, latency_percentiles, resolution_seconds
    from txmon.core.contracts import ALERT_KINDS

    alerts = list(state.alerts.values())
    kinds = state.kind_counts()
    elapsed = timings["pipeline"]
    throughput = summary.events / elapsed if elapsed > 0 else 0.0
    flagged = alerted_sets(alerts)
    n_flagged = len(next(iter(flagged.values())))
    lat = latency_percentiles(alerts)

    table = Table(title=f"summary of replay {state.replay_id}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    pace = f"target {summary.target_rate:,.0f} tx/s" if summary.target_rate else "--max"
    rows = [
        ("events", f"{summary.events:,} transactions over steps {summary.first_step}..{summary.last_step} "
                   f"(+ {summary.markers:,} markers, {summary.bytes / 1e6:,.1f} MB)"),
        ("elapsed", f"{elapsed:,.1f} s from the first transaction sent to the last step's statistics "
                    f"(sending took {summary.seconds:,.1f} s, {summary.rate:,.0f} tx/s, {pace})"),
        ("throughput", f"{throughput:,.0f} tx/s end to end"),
        ("alerts", " · ".join(f"{k} {kinds[k]:,}" for k in ALERT_KINDS) + f"; {n_flagged:,} transactions alerted "
                   "at the end"),
    ]
    if lat:
        rows.append(("latency", f"arrival alerts {lat[0]:.2f} s (p50) / {lat[1]:.2f} s (p95) after the transaction "
                                "was sent"))
    if kinds["arrival"]:
        ahead = list(resolution_seconds(alerts).values())
        rows.append(("arrival alerts", f"{kinds['retracted'] / kinds['arrival']:.0%} retracted at step close; "
                                       + (f"resolved a median {statistics.median(ahead):.2f} s after they were raised"
                                          if ahead else "none resolved yet")))
    rows.append(("broker", broker))
    on_arrival = (f"; on arrival its arrival model, threshold {manifest.arrival.threshold:.3f}" if manifest.arrival
                  else "; no arrival model (the GCN scores on arrival too)")
    rows.append(("model", f"{manifest.version}, threshold {manifest.threshold:.3f}{on_arrival}"))
    rows.append(("timings", " · ".join(f"{k} {v:,.1f} s" for k, v in timings.items())))
    if state.bad_records or state.other_replays:
        rows.append(("skipped", f"{state.bad_records:,} malformed records, {state.other_replays:,} of earlier "
                                "replays"))
    rows.append(("shutdown", f"worker exit code {worker_code}; embedded services stopped; worker log {log_path}"))
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)

    scores = evaluate_alerts(ds, alerts, summary.first_step, summary.last_step, test_mask)
    first = next(iter(scores.values()))
    n_all = first["replayed"].n
    m = Table(title=f"alerts against the held-back labels (illicit = positive; {n_all:,} labelled transactions"
                    + (f", {first['test'].n:,} of them in {manifest.version}'s test set" if "test" in first else "")
                    + ")", header_style="bold", title_justify="left")
    m.add_column("alerted set")
    for col in ("precision", "recall", "F1", "TP", "FP", "FN"):
        m.add_column(col, justify="right")
    if test_mask is not None:
        for col in ("test P", "test R", "test F1"):
            m.add_column(col, justify="right")

    def f(x: float | None) -> str:
        return "–" if x is None else f"{x:.3f}"  # undefined → dash

    for name, row in scores.items():
        s = row["replayed"]
        cells = [f(s.precision), f(s.recall), f(s.f1), f"{s.tp:,}", f"{s.fp:,}", f"{s.fn:,}"]
        if "test" in row:
            t = row["test"]
            cells += [f(t.precision), f(t.recall), f(t.f1)]
        m.add_row(name, *cells)
    console.print(m)
    offline = (manifest.metrics.get("test") or {}).get("f1")
    if isinstance(offline, float) and "test" in first:
        console.print(f"offline test F1 of {manifest.version} (from its manifest): {offline:.3f}; the steps before "
                      "its test set include its training data, so read the test columns as the honest ones",
                      highlight=False)

    _dump_json(run_dir / "summary.json", {
        "replay_id": state.replay_id, "events": summary.events, "elapsed_s": elapsed, "throughput_tx_s": throughput,
        "send_s": summary.seconds, "alerts": {k: kinds[k] for k in ALERT_KINDS}, "alerted": n_flagged,
        "model": manifest.version, "broker": broker, "timings": timings, "worker_exit_code": worker_code,
        "metrics": {name: {k: v.model_dump() for k, v in row.items()} for name, row in scores.items()},
    })
    console.print(f"summary.json and the worker log are in {run_dir}", highlight=False)


def _dump_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=2, default=str))
