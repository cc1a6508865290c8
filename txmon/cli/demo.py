"""``txmon demo``: the main job on the embedded default.

Data set (synthetic unless --data) → a GCN for it (trained once, then reused from the store) →
Kafka and Redis (an embedded Tansu broker and redis-server unless TXMON_KAFKA_BOOTSTRAP /
TXMON_REDIS_URL are set) → a worker subprocess → the replay, with alerts and per-step statistics
shown live → a summary that joins the held-back labels to the alerts. Everything started here is
stopped here, also on Ctrl-C (exit code 130).
"""

from __future__ import annotations

import signal
import tempfile
import time
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Annotated

import typer

from txmon.cli.common import console, err_console, fail, load_dataset, phase_progress, quiet_kafka_logs
from txmon.core.elliptic_format import FILES
from txmon.core.settings import Settings


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

    Starts an embedded Tansu broker and redis-server unless TXMON_KAFKA_BOOTSTRAP / TXMON_REDIS_URL are set.

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
        _run(data, 1.0 if full else scale, seed, epochs, rate, timeout)
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
def _timed(timings: dict[str, float], name: str):
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = time.perf_counter() - t0


def _prepare_data(data: Path | None, scale: float, seed: int) -> Path:
    if data is not None:
        return data
    data = Settings().data_dir / f"synthetic-scale{scale:g}-seed{seed}"
    if all((data / f).exists() for f in FILES):
        console.print(f"using the synthetic data set in {data}", highlight=False)
    else:
        from replay.synth import synthesize

        console.print(f"generating a synthetic data set (scale {scale:g}, seed {seed}) in {data}", highlight=False)
        with phase_progress() as progress:
            synthesize(data, scale=scale, seed=seed, progress=progress)
    return data


def _one_line(ds) -> str:  # noqa: ANN001
    counts = ds.label_counts()
    n = max(ds.n_nodes, 1)
    steps = sorted({int(s) for s in ds.steps})
    span = f"steps {steps[0]}..{steps[-1]}" if steps else "no steps"
    return (f"{ds.n_nodes:,} transactions, {ds.n_edges:,} edges ({ds.n_edges / n:.3f} per node), {span}; labels "
            f"{counts['illicit'] / n:.1%} illicit / {counts['licit'] / n:.1%} licit / {counts['unknown'] / n:.1%} "
            f"unknown")


def served_model(ds, epochs: int):  # noqa: ANN001, ANN202
    """The GCN to serve for this data set: the latest one if it was trained on it, else the newest that was,
    else a new one (trained on the temporal split, stored, promoted only if the store has no latest GCN)."""
    from model_store.manifest import ModelManifest
    from model_store.registry import ModelStore, ModelStoreError

    st = ModelStore(Settings().model_dir)
    try:
        latest = st.latest("gcn")
        if latest is not None:
            m = st.manifest(latest, "gcn")
            if m.dataset_fingerprint == ds.fingerprint:
                return m, "the latest gcn, trained on this data set"
        matching = [m for m in st.scan("gcn") if isinstance(m, ModelManifest)
                    and m.dataset_fingerprint == ds.fingerprint]
    except ModelStoreError as e:
        fail(str(e))
    if matching:
        return matching[-1], f"trained on this data set (the latest gcn, {latest}, was not)"

    from model_store.splits import make_split
    from model_store.train import TrainConfig
    from txmon.cli.train import train_and_store

    reason = "the store has no gcn" if latest is None else f"the latest gcn ({latest}) was trained on other data"
    console.print(f"training a GCN ({epochs} epochs, temporal split): {reason}", highlight=False)
    cfg = TrainConfig("gcn", split="temporal", epochs=epochs)
    m, _ = train_and_store(ds, make_split(ds, "temporal"), cfg, st, promote=latest is None)
    promoted = " and promoted to latest" if latest is None else f" (not promoted: the latest gcn stays {latest})"
    return m, f"just trained, stored in {st.root}{promoted}"


def _services_line(settings: Settings, bootstrap: str, redis_url: str, started: dict[int, str]) -> str:
    def pid_of(prefix: str) -> str:
        pids = [p for p, comm in started.items() if comm.startswith(prefix)]
        return f" (pid {pids[0]})" if pids else ""

    kafka = (f"Kafka {bootstrap} (configured)" if settings.kafka_bootstrap
             else f"embedded Tansu broker {bootstrap}{pid_of('tansu')}")
    redis = (f"Redis {redis_url} (configured)" if settings.redis_url
             else f"embedded redis-server {redis_url}{pid_of('redis-server')}")
    return f"services: {kafka}, {redis}"


def _run(data: Path | None, scale: float, seed: int, epochs: int, rate: float | None, timeout: float) -> None:
    from rich.live import Live

    from model_store.splits import make_split
    from producer.kafka_io import ProducerError
    from producer.send import new_replay_id, prepare_topics, send_replay
    from txmon.cli.live import (
        DemoState,
        Follower,
        FollowerError,
        WorkerDied,
        WorkerProcess,
        child_processes,
        render,
        worker_env,
    )
    from txmon.cli.produce import plan_or_fail
    from txmon.embedded import ServiceError, embedded_stack

    settings = Settings()
    timings: dict[str, float] = {}
    with _timed(timings, "data"):
        data = _prepare_data(data, scale, seed)
        ds = load_dataset(data)
    console.print(f"data set {data}: {_one_line(ds)}", highlight=False)

    with _timed(timings, "model"):
        manifest, how = served_model(ds, epochs)
    test_f1 = (manifest.metrics.get("test") or {}).get("f1")
    console.print(f"serving [bold]{manifest.version}[/] ({how}; threshold {manifest.threshold:.3f}"
                  + (f", offline test F1 {test_f1:.3f}" if isinstance(test_f1, float) else "") + ")",
                  highlight=False)

    replay_id = new_replay_id()
    plan = plan_or_fail(ds, None, None, replay_id)
    quiet_kafka_logs()

    run_dir = Path(tempfile.mkdtemp(prefix=f"txmon-demo-{replay_id}-"))
    state = DemoState(replay_id, plan.count, plan.first_step, plan.last_step)
    worker_code: int | None = None
    with ExitStack() as stack:
        # Unwinds in reverse: live view, follower, worker (SIGTERM, wait, SIGKILL), then the embedded services.
        before = set(child_processes())
        t0 = time.perf_counter()
        try:
            bootstrap, redis_url = stack.enter_context(embedded_stack(settings))
        except ServiceError as e:
            fail(str(e), code=1)
        timings["services"] = time.perf_counter() - t0
        started = {p: c for p, c in child_processes().items() if p not in before}
        console.print(_services_line(settings, bootstrap, redis_url, started), highlight=False)
        try:
            setup = prepare_topics(bootstrap, settings)
        except ProducerError as e:
            fail(str(e), code=1)
        for note in setup.notes:
            err_console.print(f"[yellow]warning:[/] {note}", highlight=False)

        env = worker_env(settings, bootstrap, redis_url, settings.model_dir, manifest.version,
                         app_id=f"txmon-demo-{replay_id}")
        worker = stack.enter_context(WorkerProcess(env, run_dir))
        console.print(f"worker pid {worker.pid} (consumer group txmon-demo-{replay_id}); its log: {worker.log_path}",
                      highlight=False)
        follower = stack.enter_context(Follower(bootstrap, settings, state))

        def check() -> None:
            worker.check_alive()
            follower.check()

        live = None
        try:
            follower.wait_assigned()
            with err_console.status("waiting for the worker to join its consumer group ..."):
                ready = worker.wait_ready(60, check)
            check()
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
            next_check = 0.0

            def progress(sent: int, total: int) -> None:
                nonlocal next_check
                with state.lock:
                    state.sent = sent
                if (now := time.monotonic()) >= next_check:
                    check()  # a dead worker stops the replay at once
                    next_check = now + 0.5

            state.replay_started = time.monotonic()
            summary = send_replay(plan, bootstrap, settings, rate=rate, progress=progress, setup=setup)
            with state.lock:
                state.sent = summary.events
            deadline = time.monotonic() + timeout
            while not state.done.wait(0.1):
                check()
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"the statistics of step {plan.last_step} did not arrive within {timeout:g} s after the "
                        f"replay was sent ({len(state.stats)} of {plan.last_step - plan.first_step + 1} steps "
                        f"closed); the worker's log: {worker.log_path}\n{worker.log_tail()}")
            follower.drain()
            live.stop()
            console.line()
        except (WorkerDied, FollowerError, TimeoutError, ProducerError) as e:
            if live is not None:
                live.stop()
            fail(str(e), code=1)  # the stack unwinds: follower, worker, services
        timings["pipeline"] = (state.done_at or time.monotonic()) - state.replay_started
        follower.stop()
        t0 = time.perf_counter()
        worker_code = worker.stop()
        timings["worker stop"] = time.perf_counter() - t0
        stack.close()
        timings["shutdown"] = time.perf_counter() - t0

    test_mask = None
    if manifest.training.get("split") in ("temporal", "random"):
        test_mask = make_split(ds, manifest.training["split"], seed=manifest.training.get("seed", 0)).test
    _print_summary(state, summary, timings, manifest, ds, test_mask, worker_code, worker.log_path, run_dir)


def _print_summary(state, summary, timings, manifest, ds, test_mask, worker_code, log_path, run_dir):  # noqa: ANN001, ANN202
    from rich.table import Table

    from replay.report.evaluate import alerted_sets, evaluate_alerts, latency_percentiles
    from txmon.cli.live import dump_json
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
    rows.append(("model", f"{manifest.version}, threshold {manifest.threshold:.3f}"))
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

    dump_json(run_dir / "summary.json", {
        "replay_id": state.replay_id, "events": summary.events, "elapsed_s": elapsed, "throughput_tx_s": throughput,
        "send_s": summary.seconds, "alerts": {k: kinds[k] for k in ALERT_KINDS}, "alerted": n_flagged,
        "model": manifest.version, "timings": timings, "worker_exit_code": worker_code,
        "metrics": {name: {k: v.model_dump() for k, v in row.items()} for name, row in scores.items()},
    })
    console.print(f"summary.json and the worker log are in {run_dir}", highlight=False)
