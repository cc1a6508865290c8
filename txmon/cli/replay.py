"""``txmon replay``: an analyst's replay of a historical period, with a report that joins the labels back."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from txmon.cli.common import console, err_console, fail, load_dataset, quiet_kafka_logs, read_settings
from txmon.cli.produce import check_replay_options, plan_or_fail
from txmon.core.settings import Settings

if TYPE_CHECKING:  # imported where used: `txmon --help` stays fast
    from rich.status import Status

    from model_store.manifest import ModelManifest
    from producer.plan import ReplayPlan
    from replay.report import Report


def replay(
    data: Annotated[Path, typer.Option(help="directory holding the three Elliptic-format CSV files (with labels)")],
    report: Annotated[Path, typer.Option(help="directory for report.html, report.json and the plots")],
    from_step: Annotated[int | None, typer.Option("--from-step", help="first time step (default: the data set's "
                                                  "first)")] = None,
    to_step: Annotated[int | None, typer.Option("--to-step", help="last time step (default: the data set's last)")]
    = None,
    rate: Annotated[float | None, typer.Option(help="send at this many transactions per second")] = None,
    max_speed: Annotated[bool, typer.Option("--max", help="send as fast as the broker takes them (the default)")]
    = False,
    replay_id: Annotated[str | None, typer.Option("--replay-id", help="the replay's namespace in Redis and on the "
                                                  "topics; must be new (default: UTC time plus a random suffix)")]
    = None,
    epochs: Annotated[int, typer.Option(min=1, help="GCN training epochs, when the embedded run must train one")]
    = 200,
    timeout: Annotated[float, typer.Option(min=1, help="seconds to wait, once the replay is sent, for the workers "
                                                       "to pass its replay_end and close every step")] = 600.0,
) -> None:
    """Replay a period through the stream and write a report with the labels joined back.

    With TXMON_KAFKA_BOOTSTRAP and TXMON_REDIS_URL set, uses the running stack (its workers must be up);
    with neither, starts an embedded Apache Kafka broker (Tansu where Java is missing), redis-server and one
    worker for this replay.

    Waits until the workers have processed the replay_end marker on every partition and closed every step
    (never by consumer lag), then reads the replay's alerts and statistics and writes report.html + report.json.
    """
    check_replay_options(from_step, to_step, rate, max_speed, replay_id)
    settings = read_settings()
    if bool(settings.kafka_bootstrap) != bool(settings.redis_url):
        fail("set both TXMON_KAFKA_BOOTSTRAP and TXMON_REDIS_URL (a running stack) or neither (an embedded one): "
             "the report reads what the workers of that Kafka wrote to that Redis")
    if report.exists() and not report.is_dir():
        fail(f"--report {report} is not a directory")
    report.mkdir(parents=True, exist_ok=True)
    try:
        _run(settings, data, report, from_step, to_step, rate, replay_id, epochs, timeout)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]: everything this replay started has been stopped", highlight=False)
        raise typer.Exit(130) from None


class _RunView:
    """The replay on the terminal: a progress bar while sending, then a status line while the worker finishes."""

    def __init__(self, plan: ReplayPlan, partitions: int) -> None:
        from txmon.cli.produce import SendBar

        self.steps = plan.last_step - plan.first_step + 1
        self.partitions = partitions
        self.bar = SendBar(plan.count)
        self.status: Status | None = None

    @property
    def sending(self) -> bool:
        return self.status is None

    def sent(self, sent: int, total: int) -> None:
        self.bar.update(sent, total)

    def waiting(self, ended: int, steps: int) -> None:
        if self.status is None:
            self.bar.stop()
            self.status = err_console.status("waiting for the worker to pass replay_end and close every step ...")
            self.status.start()
        self.status.update(f"waiting for the worker: {steps} of {self.steps} steps finalised, {ended} of "
                           f"{self.partitions} partitions past replay_end")

    def __enter__(self) -> _RunView:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()
        if self.status is not None:
            self.status.stop()


def _run(settings: Settings, data: Path, out: Path, from_step: int | None, to_step: int | None, rate: float | None,
         replay_id: str | None, epochs: int, timeout: float) -> None:
    import redis

    from producer.kafka_io import ProducerError
    from producer.send import new_replay_id
    from replay.report import build_report, write_report
    from txmon.cli.produce import fail_sending
    from txmon.cli.train import served_model_or_fail
    from txmon.core.errors import TxmonError
    from txmon.pipeline.runner import Pipeline

    embedded = not settings.kafka_bootstrap
    ds = load_dataset(data, settings)
    rid = replay_id or new_replay_id()
    plan = plan_or_fail(ds, from_step, to_step, rid)
    manifest = served_model_or_fail(ds, epochs, settings.model_dir)[0] if embedded else _configured_model(settings)
    quiet_kafka_logs()
    if embedded:
        assert manifest is not None  # served_model_or_fail's
        settings = settings.model_copy(update={"model_version": manifest.version})

    pipeline = Pipeline(settings, app_id=f"txmon-replay-{rid}")
    try:
        pipeline.start()
    except TxmonError as e:
        fail(str(e), code=1)
    with pipeline:
        try:
            if pipeline.replay_exists(rid):
                fail(f"replay id {rid!r} is already in Redis at {pipeline.redis_url} (keys txm:{{{rid}}}:*): "
                     "replays never share a namespace; choose another --replay-id")
        except redis.RedisError as e:
            fail(f"cannot reach Redis at {pipeline.redis_url}: {e}", code=1)
        for note in pipeline.topics.notes:
            err_console.print(f"[yellow]warning:[/] {note}", highlight=False)
        where = pipeline.stack.describe() if pipeline.stack else ""
        console.print(f"replay [bold]{rid}[/]: steps {plan.first_step}..{plan.last_step}, {plan.count:,} "
                      f"transactions on {where}; its Redis namespace is txm:{{{rid}}}:*, its report goes to {out}",
                      highlight=False)

        if embedded:
            worker = pipeline.start_worker()
            with err_console.status("waiting for the embedded worker to join its consumer group ..."):
                try:
                    ready = pipeline.wait_ready(90)
                except TxmonError as e:
                    fail(str(e), code=1)
            if not ready:
                fail(f"the embedded worker was not ready after 90 s; its log: {worker.log_path}", code=1)

        view = _RunView(plan, pipeline.partitions)
        try:
            with view:
                result = pipeline.run(plan, rate=rate, timeout=timeout, progress=view.sent, waiting=view.waiting,
                                      alerts=True)
        except (ProducerError, KeyboardInterrupt) as e:
            if isinstance(e, KeyboardInterrupt) and not view.sending:
                raise
            fail_sending(e, view.bar.sent, plan)
        except TxmonError as e:  # a dead worker, no replay_end in time, the alert topic unreadable
            fail(str(e), code=1)

    alerts, summary = result.alerts or [], result.summary
    version = manifest.version if manifest else (alerts[0].model_version if alerts else "unknown")
    # Without the manifest (configured services), each threshold is read off an alert that carries it.
    closing = [a for a in alerts if a.kind != "arrival"]
    arriving = [a for a in alerts if a.kind == "arrival"]
    threshold = manifest.threshold if manifest else (closing[0].threshold if closing else float("nan"))
    arrival_threshold = ((manifest.arrival.threshold if manifest.arrival else manifest.threshold) if manifest
                         else (arriving[0].threshold if arriving else None))
    meta = {
        "services": "embedded" if embedded else "configured",
        "transactions sent": summary.events,
        "send seconds": round(summary.seconds, 2),
        "seconds to replay_end": round(result.seconds, 2),
        "throughput tx/s": round(summary.events / result.seconds, 1) if result.seconds else None,
        "malformed alert records skipped": result.malformed_alerts,
    }
    rep = build_report(ds, alerts, result.stats, replay_id=rid, first_step=plan.first_step,
                       last_step=plan.last_step, model_version=version, threshold=threshold,
                       arrival_threshold=arrival_threshold, meta=meta)
    paths = write_report(rep, out)
    _print_summary(rid, rep, paths, meta)


def _configured_model(settings: Settings) -> ModelManifest | None:
    """The manifest of the model the running workers serve, if this machine can see their store (else None:
    version and threshold are then read off the alerts)."""
    from model_store.registry import ModelStore, ModelStoreError

    try:
        return ModelStore(settings.model_dir).manifest(settings.model_version, model_type="gcn")
    except ModelStoreError:
        return None


def _print_summary(rid: str, rep: Report, paths: dict[str, Path], meta: Mapping[str, object]) -> None:
    on_arrival = rep.header.arrival_threshold
    table = Table(title=f"replay {rid}: steps {rep.header.first_step}..{rep.header.last_step}, model "
                        f"{rep.header.model_version} (threshold {rep.header.threshold:.3f}"
                        + (f", on arrival {on_arrival:.3f})" if on_arrival is not None else ")"),
                  show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()

    def f(x: float | None) -> str:
        return "–" if x is None else f"{x:.3f}"

    for key, value in meta.items():
        table.add_row(key, f"{value:,}" if isinstance(value, int | float) else str(value))
    h = rep.header
    table.add_row("labels joined", f"{h.labelled:,} of {h.transactions:,} transactions labelled, {h.illicit:,} illicit")
    table.add_row("alerts", " · ".join(f"{k} {n:,}" for k, n in rep.alerts.by_kind.items()))
    for verdict, sc in rep.metrics.overall.items():
        table.add_row(f"{verdict} verdict", f"precision {f(sc.precision)} · recall {f(sc.recall)} · F1 {f(sc.f1)} "
                                            f"(TP {sc.tp:,}, FP {sc.fp:,}, FN {sc.fn:,})")
    for e in rep.metrics.early[:3]:  # the period, then before and after the shutdown
        table.add_row(f"arrival vs final, {e.steps}",
                      f"F1 {f(e.arrival.f1)} vs {f(e.final.f1)} · {e.retracted:,} of {e.arrival_alerts:,} arrival "
                      f"alerts retracted ({'–' if e.retraction_rate is None else f'{e.retraction_rate:.0%}'}) · "
                      f"{'–' if e.ahead_tx is None else f'{e.ahead_tx:,.0f}'} tx / "
                      f"{'–' if e.ahead_s is None else f'{e.ahead_s:.2f}'} s ahead (median)")
    lat = rep.latency.event_to_alert.get("arrival")
    if lat is not None and lat.count:
        table.add_row("event → arrival alert", f"p50 {f(lat.p50)} s · p99 {f(lat.p99)} s")
    d = rep.densification
    table.add_row("densification α", f"cumulative {f(d.alpha_cumulative)}, last {d.window} steps "
                                     f"{f(d.alpha_window)}")
    if rep.warnings:
        table.add_row("warnings", "; ".join(f"{w.code} ({w.count})" for w in rep.warnings))
    table.add_row("report", f"{paths['html']} (+ {paths['json'].name} and {len(paths) - 2} plots)")
    console.print(table)
