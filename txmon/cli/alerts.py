"""``txmon alerts tail``: follow the alert topic, filtered, as readable lines or JSON lines.

The filter, parse and format functions are plain code (unit-tested without Kafka); ``Tail`` holds
the kafka-python consumer. Records go to stdout, everything else to stderr, so ``--json`` output
can be piped into ``jq`` or a script.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.text import Text

from txmon.cli.common import err_console, fail, quiet_kafka_logs, read_settings
from txmon.core.contracts import ALERT_KINDS, Alert, validation_reason
from txmon.core.errors import TxmonError

if TYPE_CHECKING:  # kafka is imported when a tail starts: `txmon --help` stays fast
    from kafka import KafkaConsumer, TopicPartition
    from kafka.consumer.fetcher import ConsumerRecord

NO_BROKER = "no Kafka broker configured: set TXMON_KAFKA_BOOTSTRAP=host:port"
COMMIT_EVERY_S = 5.0  # a named group's progress is committed this often (and on exit)

alerts_app = typer.Typer(help="Read the alerts the worker publishes.", no_args_is_help=True)


# typer offers an Enum's values as the choices of --kind
AlertKind = StrEnum("AlertKind", {k: k for k in ALERT_KINDS})  # type: ignore[misc]


# -- filter, parse, format: plain functions --------------------------------------------------------------------------


def alert_score(alert: Alert) -> float:
    """The score that decided the alert: the final score once the step is closed, else the arrival score."""
    return alert.final_score if alert.final_score is not None else alert.arrival_score


@dataclass(frozen=True)
class AlertFilter:
    kinds: frozenset[str] = frozenset()  # empty: every kind
    min_score: float | None = None
    replay_id: str | None = None

    def __call__(self, alert: Alert) -> bool:
        return ((not self.kinds or alert.kind in self.kinds)
                and (self.min_score is None or alert_score(alert) >= self.min_score)
                and (self.replay_id is None or alert.replay_id == self.replay_id))


def parse_alert(value: bytes | None) -> Alert:
    """An alert record's value → Alert; ValueError with a one-line reason if it is not one."""
    if not value:
        raise ValueError("empty record")
    try:
        return Alert.model_validate_json(value)
    except ValidationError as e:
        raise ValueError(validation_reason(e)) from None


KIND_STYLE = {"arrival": "yellow", "confirmed": "red", "retracted": "green", "final": "bold red"}


def _score(x: float | None) -> str:
    return "  –  " if x is None else f"{x:.3f}"


def format_alert(alert: Alert) -> Text:
    """One line: emission time, kind, tx, step, scores, threshold, the neighbour that weighed most, replay."""
    when = datetime.fromtimestamp(alert.processing_time).strftime("%H:%M:%S")
    top = alert.neighbours[0] if alert.neighbours else None
    neighbour = f"top {top.tx_id} ({top.weight:+.2f})" if top else "top –"
    return Text.assemble(
        (when, "dim"), " ", (f"{alert.kind:<9}", KIND_STYLE.get(alert.kind, "")),
        f" tx {alert.tx_id:>10} step {alert.step:>2}",
        f"  arrival {_score(alert.arrival_score)} final {_score(alert.final_score)}",
        f" threshold {alert.threshold:.3f}  {neighbour}  ", (f"replay {alert.replay_id}", "dim"),
    )


# -- output ----------------------------------------------------------------------------------------------------------


class _Stdout(Console):
    def on_broken_pipe(self) -> None:
        # rich would raise SystemExit(1) here; tail wants to stop like on --limit (commit, close, exit 0).
        self.quiet = True
        raise BrokenPipeError


def make_writer(json_lines: bool) -> Callable[[Alert], None]:
    """Writes one alert to stdout and flushes, so each line reaches a pipe at once."""
    if json_lines:
        out = sys.stdout.buffer

        def write_json(alert: Alert) -> None:
            out.write(alert.model_dump_json().encode() + b"\n")  # the record as published, on one line
            out.flush()

        return write_json
    console = _Stdout(soft_wrap=True, highlight=False)  # no colours when piped: rich sees no terminal

    def write_text(alert: Alert) -> None:
        console.print(format_alert(alert))

    return write_text


_AGO = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d)$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, now: float | None = None) -> int:
    """``--since``: an ISO 8601 time (UTC unless it names a zone) or a span before now ("90s", "15m", "2h", "1d"),
    as Unix milliseconds. ValueError says what is accepted."""
    now = time.time() if now is None else now
    value = text.strip()
    if m := _AGO.match(value):
        return int((now - float(m.group(1)) * _UNIT_S[m.group(2)]) * 1000)
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is neither an ISO 8601 time (2026-11-30T08:00:00Z) nor a span before now "
                         "(90s, 15m, 2h, 1d)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def _note(message: str) -> None:
    err_console.print(message, highlight=False, markup=False, soft_wrap=True)


# -- the consumer ----------------------------------------------------------------------------------------------------


class TailError(TxmonError, RuntimeError):
    """Kafka could not be used."""


class Tail:
    """A kafka-python consumer of every partition of the alert topic, reading committed records only.

    The partitions are assigned, not taken in a consumer group: a tail reads them all itself, so it
    never waits for a group to form, and ``--group`` names only where its position is committed so
    that a restart resumes. It reads ``read_committed``: on Apache Kafka a worker's aborted
    transactions (a worker that died before its commit) are never shown. New partitions of the topic
    are picked up within ``RESCAN_S``.

    Tansu (docs/tansu.md) reports a partition's end offset as the start of its last batch, so a
    consumer placed "at the latest offset" is handed the rest of that batch. A partition that
    starts there (no committed offset, no --from-beginning) therefore skips records stamped before
    the tail started, until the first one that is not; on real Kafka this skips nothing.
    """

    RESCAN_S = 5.0  # how often the topic's partitions are looked up again

    def __init__(self, bootstrap: str, topic: str, group: str | None, from_beginning: bool,
                 since_ms: int | None = None) -> None:
        self.bootstrap, self.topic, self.group = bootstrap, topic, group
        self.from_beginning = from_beginning
        self.commit_offsets = group is not None
        self.since_ms = since_ms  # start each partition at its first record stamped at or after this
        self.started_ms = int(time.time() * 1000)
        self.consumer: KafkaConsumer | None = None
        self.known: set[TopicPartition] = set()  # assigned partitions already announced
        self.stale_until_new: set[TopicPartition] = set()  # partitions placed at the (Tansu-wrong) end offset
        self.done: dict[TopicPartition, int] = {}  # partition → offset after the last record handled
        self.committed: dict[TopicPartition, int] = {}
        self.last_commit = time.monotonic()
        self.last_scan = 0.0
        self.waiting_noted = False

    def open(self) -> None:
        from kafka import KafkaConsumer
        from kafka.errors import KafkaError

        from producer.kafka_io import BOOTSTRAP_TIMEOUT_MS, ProducerError, check_reachable

        try:
            check_reachable(self.bootstrap)  # says why at once; kafka-python only times out
        except ProducerError as e:
            raise TailError(str(e)) from None
        try:
            self.consumer = KafkaConsumer(
                bootstrap_servers=self.bootstrap, group_id=self.group, client_id="txmon-alerts-tail",
                enable_auto_commit=False,  # we commit what we handled, see commit()
                isolation_level="read_committed",  # a worker's aborted transactions are never shown
                auto_offset_reset="earliest" if self.from_beginning else "latest",
                fetch_max_wait_ms=200,  # Tansu sometimes holds a fetch for the whole wait
                bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS, allow_auto_create_topics=False,
                metadata_max_age_ms=int(self.RESCAN_S * 1000),  # notice a topic or partitions created later
            )
            self.scan()
        except KafkaError as e:
            raise TailError(f"cannot reach Kafka at {self.bootstrap}: {e} (is a broker running there?)") from None

    def scan(self) -> None:
        """Assign every partition the topic has now and place the new ones (see ``place``)."""
        assert self.consumer is not None, "scan() before open()"
        from kafka import TopicPartition

        self.last_scan = time.monotonic()
        found = self.consumer.partitions_for_topic(self.topic) or set()
        if not found:
            if not self.waiting_noted:
                _note(f"topic {self.topic} does not exist yet at {self.bootstrap} (TXMON_TOPIC_ALERTS names it); "
                      f"waiting for it")
                self.waiting_noted = True
            return
        now = [TopicPartition(self.topic, p) for p in sorted(found)]
        new = set(now) - self.known
        if not new:
            return
        self.consumer.assign(now)
        start = self.place(new)
        self.known = set(now)
        parts = ",".join(str(tp.partition) for tp in now)
        who = f"group {self.group}" if self.group else "no group"
        _note(f"following {self.topic} at {self.bootstrap}: partitions {parts}, {who}, {start}")

    def place(self, partitions: set[TopicPartition]) -> str:
        """Position new partitions: --since by time (``offsets_for_times``, Apache Kafka's time index), else a
        named group's committed offset, else the beginning or the end. Returns where the tail starts, in words."""
        assert self.consumer is not None
        if self.since_ms is not None:
            found = self.consumer.offsets_for_times({tp: self.since_ms for tp in partitions})
            for tp in partitions:
                hit = found.get(tp)
                if hit is None:
                    self.consumer.seek_to_end(tp)
                else:
                    self.consumer.seek(tp, hit.offset)
            return f"from records stamped {datetime.fromtimestamp(self.since_ms / 1000, UTC):%Y-%m-%dT%H:%M:%SZ} on"
        resumed = False
        for tp in partitions:
            committed = self.consumer.committed(tp) if self.commit_offsets else None
            if committed is not None:
                self.consumer.seek(tp, committed)
                self.committed[tp] = committed
                resumed = True
            elif self.from_beginning:
                self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek_to_end(tp)
                self.stale_until_new.add(tp)
        if resumed:
            return "from the group's committed offsets"
        return "from the beginning" if self.from_beginning else "from the latest offsets"

    def poll(self, timeout_ms: int = 500) -> list[ConsumerRecord]:
        """The next records, oldest first per partition, after taking in any new partition of the topic."""
        assert self.consumer is not None, "poll() before open()"
        if time.monotonic() - self.last_scan > self.RESCAN_S or not self.known:
            self.scan()
        if not self.known:
            time.sleep(timeout_ms / 1000)
            return []
        batches = self.consumer.poll(timeout_ms=timeout_ms)
        if self.commit_offsets and time.monotonic() - self.last_commit > COMMIT_EVERY_S:
            self.commit()
        return [r for records in batches.values() for r in records]

    def stale(self, record: ConsumerRecord) -> bool:
        """True for a record Tansu handed over from before the tail started (see the class docstring)."""
        tp = self._tp(record)
        if tp not in self.stale_until_new:
            return False
        if record.timestamp is not None and 0 <= record.timestamp < self.started_ms:
            return True
        self.stale_until_new.discard(tp)
        return False

    def handled(self, record: ConsumerRecord) -> None:
        self.done[self._tp(record)] = record.offset + 1

    def commit(self) -> None:
        """Commit (named groups only) the offsets after the records handled so far."""
        self.last_commit = time.monotonic()
        if not self.commit_offsets or self.consumer is None:
            return
        from kafka.errors import KafkaError
        from kafka.structs import OffsetAndMetadata

        todo = {tp: OffsetAndMetadata(off, "", -1) for tp, off in self.done.items() if self.committed.get(tp) != off}
        if not todo:
            return
        try:
            self.consumer.commit(todo)
            self.committed.update((tp, om.offset) for tp, om in todo.items())
        except KafkaError as e:
            _note(f"warning: could not commit the group's offsets: {e}")

    def close(self) -> None:
        if self.consumer is None:
            return
        try:
            self.commit()
        finally:
            self.consumer.close(autocommit=False)
            self.consumer = None

    @staticmethod
    def _tp(record: ConsumerRecord) -> TopicPartition:
        from kafka import TopicPartition

        return TopicPartition(record.topic, record.partition)


def follow(tail: Tail, keep: AlertFilter, write: Callable[[Alert], None], limit: int | None) -> int:
    """Print matching alerts until ``limit`` of them (forever without); returns how many were printed."""
    printed = 0
    while limit is None or printed < limit:
        for record in tail.poll():
            if tail.stale(record):
                tail.handled(record)
                continue
            try:
                alert = parse_alert(record.value)
            except ValueError as e:
                _note(f"warning: skipping malformed record at {record.topic} partition {record.partition} "
                      f"offset {record.offset}: {e}")
            else:
                if keep(alert):
                    write(alert)
                    printed += 1
            tail.handled(record)
            if limit is not None and printed >= limit:
                break
    return printed


# -- the command -----------------------------------------------------------------------------------------------------


@alerts_app.command("tail")
def tail_command(
    kind: Annotated[list[AlertKind] | None, typer.Option("--kind", help="only alerts of this kind (repeatable)")]
    = None,
    min_score: Annotated[float | None, typer.Option("--min-score", min=0.0, max=1.0, help="only alerts whose score "
                                                    "(the final one if set, else the arrival one) is at least this")]
    = None,
    replay: Annotated[str | None, typer.Option("--replay", help="only alerts of this replay id")] = None,
    from_beginning: Annotated[bool, typer.Option("--from-beginning", help="start at the topic's first record "
                                                 "instead of its end (when the group has no committed offsets)")]
    = False,
    json_lines: Annotated[bool, typer.Option("--json", help="one JSON object per line on stdout: the alert as "
                                             "published")] = False,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="stop after printing this many alerts")]
    = None,
    group: Annotated[str | None, typer.Option("--group", help="consumer group whose committed offsets keep "
                                              "the tail's position, so a restart resumes after what it printed "
                                              "(default: none, nothing committed). The tail reads every "
                                              "partition itself: two tails of one group both print everything")]
    = None,
    since: Annotated[str | None, typer.Option("--since", help="start at the alerts published at or after this "
                                              "time: ISO 8601 (UTC unless zoned, e.g. 2026-11-30T08:00:00Z) or a "
                                              "span before now (90s, 15m, 2h, 1d); overrides --group's offsets")]
    = None,
) -> None:
    """Follow the alert topic and print each alert as it arrives.

    The topic is TXMON_TOPIC_ALERTS on the broker TXMON_KAFKA_BOOTSTRAP. Status and warnings go to stderr.

    Stops on Ctrl-C (exit code 130), at --limit, or when the reader of a pipe goes away (exit code 0).
    """
    settings = read_settings()
    if not settings.kafka_bootstrap:
        fail(NO_BROKER)
    if group is not None and not group.strip():
        fail("--group must not be empty")
    since_ms = None
    if since is not None:
        if from_beginning:
            fail("--since and --from-beginning are mutually exclusive")
        try:
            since_ms = parse_since(since)
        except ValueError as e:
            fail(f"--since: {e}")
    quiet_kafka_logs()
    keep = AlertFilter(frozenset(k.value for k in kind or ()), min_score, replay)
    tail = Tail(settings.kafka_bootstrap, settings.topic_alerts, group, from_beginning, since_ms=since_ms)
    from kafka.errors import KafkaError

    code = 0
    try:
        tail.open()
        follow(tail, keep, make_writer(json_lines), limit)
    except TailError as e:
        fail(str(e), code=1)
    except KafkaError as e:
        fail(f"reading {settings.topic_alerts} at {settings.kafka_bootstrap} failed: {e}", code=1)
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        # The reader is gone (`| head`): stdout goes nowhere from now on, so the interpreter's final
        # flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        try:
            tail.close()
        except KeyboardInterrupt:  # a second Ctrl-C while leaving the group: just go
            code = 130
    raise typer.Exit(code)
