"""``txmon produce``: replay a data set's transactions onto Kafka, step by step."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from txmon.cli.common import console, err_console, fail, load_dataset, quiet_kafka_logs, read_settings
from txmon.core.contracts import step_range_error
from txmon.core.settings import Settings

if TYPE_CHECKING:  # imported where used: `txmon --help` stays fast
    from producer.plan import ReplayPlan
    from producer.send import ReplaySummary, TopicSetup
    from replay.data.dataset import EllipticDataset


def check_replay_options(from_step: int | None, to_step: int | None, rate: float | None, max_speed: bool,
                         replay_id: str | None) -> None:
    """The checks `txmon produce` and `txmon replay` share, failing with the option's name."""
    if rate is not None and max_speed:
        fail("--rate and --max are mutually exclusive")
    if rate is not None and not rate > 0:
        fail(f"--rate must be positive, got {rate:g}")
    for name, step in (("--from-step", from_step), ("--to-step", to_step)):
        if step is not None and (why := step_range_error(step, name)) is not None:
            fail(why)
    if from_step is not None and to_step is not None and from_step > to_step:
        fail(f"--from-step {from_step} is after --to-step {to_step}")
    if replay_id is not None:
        from txmon.core.contracts import check_replay_id

        try:
            check_replay_id(replay_id)
        except ValueError as e:
            fail(f"--replay-id: {e}")


class SendBar:
    """The sending progress bar on stderr (count, rate, elapsed, remaining); ``update`` is ``send_replay``'s
    progress callback and remembers how much was sent, for the error message."""

    def __init__(self, total: int) -> None:
        self.bar = Progress(TextColumn("sending"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                            console=err_console)
        self.task = self.bar.add_task("send", total=total, rate="")
        self.sent = 0

    def update(self, sent: int, total: int) -> None:
        self.sent = sent
        speed = self.bar.tasks[self.task].speed
        self.bar.update(self.task, completed=sent, total=total, rate=f"{speed:,.0f} tx/s" if speed else "")

    def start(self) -> None:
        self.bar.start()

    def stop(self) -> None:
        self.bar.stop()

    def __enter__(self) -> SendBar:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def fail_sending(error: BaseException, sent: int, plan: ReplayPlan) -> NoReturn:
    """Exit with a clear line on a failed (ProducerError) or interrupted (Ctrl-C: code 130) send."""
    if isinstance(error, KeyboardInterrupt):
        fail(f"interrupted after {sent:,} of {plan.count:,} transactions (replay {plan.replay_id})", code=130)
    fail(str(error) if not sent else f"{error} ({sent:,} of {plan.count:,} transactions were sent)")


def send_with_progress(plan: ReplayPlan, bootstrap: str, settings: Settings, rate: float | None,
                       setup: TopicSetup) -> ReplaySummary:
    """``send_replay`` behind a progress bar; a clear error (with how much was sent) on failure or Ctrl-C."""
    from producer.kafka_io import ProducerError
    from producer.send import send_replay

    with SendBar(plan.count) as bar:
        try:
            return send_replay(plan, bootstrap, settings, rate=rate, progress=bar.update, setup=setup)
        except (ProducerError, KeyboardInterrupt) as e:
            bar.stop()
            fail_sending(e, bar.sent, plan)


def plan_or_fail(ds: EllipticDataset, from_step: int | None, to_step: int | None, replay_id: str) -> ReplayPlan:
    """The replay plan of steps from..to (exit with the planner's message if it cannot be made), its warnings
    printed."""
    from producer.plan import PlanError, plan_replay

    try:
        plan = plan_replay(ds, from_step, to_step, replay_id)
    except PlanError as e:
        fail(str(e))
    for note in plan.warnings():
        err_console.print(f"[yellow]warning:[/] {note}", highlight=False)
    return plan


NO_BROKER = ("no Kafka broker configured: set TXMON_KAFKA_BOOTSTRAP=host:port "
             "(or run `txmon demo`, which starts an embedded broker)")


def produce(
    data: Annotated[Path, typer.Option(help="directory holding the three Elliptic-format CSV files")],
    from_step: Annotated[int | None, typer.Option("--from-step", help="first time step to send (default: the "
                                                  "data set's first)")] = None,
    to_step: Annotated[int | None, typer.Option("--to-step", help="last time step to send (default: the data "
                                                "set's last)")] = None,
    rate: Annotated[float | None, typer.Option(help="send at this many transactions per second")] = None,
    max_speed: Annotated[bool, typer.Option("--max", help="send as fast as the broker takes them (the default)")]
    = False,
    replay_id: Annotated[str | None, typer.Option("--replay-id", help="name of this replay (default: UTC time "
                                                  "plus a random suffix)")] = None,
    partitions: Annotated[int | None, typer.Option(min=1, help="partitions of topics created now (default: "
                                                   "TXMON_TOPIC_PARTITIONS)")] = None,
) -> None:
    """Replay a data set's transactions onto Kafka, step by step, with step_end markers.

    Transactions go out as binary tx_batch records, up to 64 of a step each (TXMON_RECORD_FORMAT=json: one each).

    Each carries its features and its edges to earlier ones; labels never travel.

    After each step a step_end goes to every partition, after the last a replay_end.

    Missing topics are created. The broker is TXMON_KAFKA_BOOTSTRAP.
    """
    from producer.kafka_io import ProducerError
    from producer.send import new_replay_id, prepare_topics

    check_replay_options(from_step, to_step, rate, max_speed, replay_id)
    settings = read_settings()
    bootstrap = settings.kafka_bootstrap
    if not bootstrap:
        fail(NO_BROKER)

    plan = plan_or_fail(load_dataset(data, settings), from_step, to_step, replay_id or new_replay_id())

    try:
        setup = prepare_topics(bootstrap, settings, partitions)
    except ProducerError as e:
        fail(str(e))
    for note in setup.notes:
        err_console.print(f"[yellow]warning:[/] {note}", highlight=False)
    quiet_kafka_logs()
    pace = f"at {rate:,.0f} tx/s" if rate else "as fast as possible"
    err_console.print(f"replay [bold]{plan.replay_id}[/]: steps {plan.first_step}..{plan.last_step}, "
                      f"{plan.count:,} transactions to {settings.topic_transactions} at {bootstrap}, {pace}",
                      highlight=False)
    summary = send_with_progress(plan, bootstrap, settings, rate, setup)

    table = Table(title=f"replay {summary.replay_id}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    counts = list(summary.step_counts.values()) or [0]
    target = f" (target {summary.target_rate:,.0f})" if summary.target_rate else " (--max)"
    rows = [
        ("replay id", summary.replay_id),
        ("topic", f"{summary.topic} ({summary.partitions} partitions) at {bootstrap}"),
        ("steps", f"{summary.first_step}..{summary.last_step} ({summary.steps} sent)"),
        ("events", f"{summary.events:,} transactions + {summary.markers:,} markers"),
        ("edges", f"{summary.edges:,} carried; skipped: {summary.skipped.describe()}"),
        ("bytes", f"{summary.bytes / 1e6:,.1f} MB ({summary.bytes / max(summary.events, 1):,.0f} B per transaction)"),
        ("time", f"{summary.seconds:,.2f} s"),
        ("rate", f"{summary.rate:,.0f} tx/s{target}, {summary.mb_per_s:,.1f} MB/s"),
        ("per step", f"min {min(counts):,} / mean {sum(counts) / len(counts):,.0f} / max {max(counts):,} transactions"),
    ]
    if summary.empty_steps:
        rows.append(("empty steps", ", ".join(map(str, summary.empty_steps))))
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
