"""One partition's share of a consumed micro-batch → Processor calls → the records to publish. No Kafka here.

Order matters within a partition: a step's transactions precede its ``step_end`` there, so the
transactions gathered so far are processed before each marker is handled. One partition a call: its
outputs are committed with that partition's offsets (stream_app.delivery), and what its records claimed
in Redis is theirs on a retry (stream_app.claims). Given a ``Placement``, the work of steps owned by other
partitions is handed over to them as records for the transactions topic (stream_app.placement).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import redis
from numpy.typing import NDArray
from pydantic import ValidationError

from stream_app.claims import Origin
from stream_app.keys import LATEST_ALERTS, LATEST_N, ReplayKeys
from stream_app.placement import Handover, Placement
from stream_app.processor import MarkerRefused, Processor, step_problem
from stream_app.retention import mark_ended
from stream_app.step_close import StepResult
from txmon.core.contracts import (
    DEAD_LETTER_EXCERPT,
    DEAD_LETTER_KEY_BYTES,
    Alert,
    DeadLetter,
    Marker,
    ReplayEnd,
    StepEnd,
    StepReady,
    StepStats,
    TxEvent,
    WindowsReady,
    parse_records,
    validation_reason,
)
from txmon.core.tx_batch import BatchFormatError, TxColumns, is_batch


class Record(Protocol):
    """A consumed record as route reads it: aiokafka's ``ConsumerRecord`` as fetched (no copy per record), or
    ``Consumed``."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


@dataclass(frozen=True)
class Consumed:
    """A ``Record`` made by hand (tests, tools)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass
class Outputs:
    alerts: list[tuple[bytes, bytes]] = field(default_factory=list)  # (key, value) for the alert topic
    stats: list[tuple[bytes, bytes]] = field(default_factory=list)
    dead_letters: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    replay_ends: list[tuple[ReplayEnd, int]] = field(default_factory=list)  # (marker, partition): see record_published
    # (partition, key, value) for the transactions topic: work handed over to the partition owning its step
    handovers: list[tuple[int, bytes, bytes]] = field(default_factory=list)
    processed: int = 0
    close_seconds: list[float] = field(default_factory=list)  # one per step this batch finalised
    alert_records: list[Alert] = field(default_factory=list)  # what ``alerts`` carries, as records
    stats_records: list[StepStats] = field(default_factory=list)
    last_step: int | None = None  # of the batch's last transaction
    _alert_ids: set[str] = field(default_factory=set)

    def add_alert(self, alert: Alert) -> None:
        """Add an alert, once: a retried step close may score a window its batch's events scored already."""
        if alert.alert_id in self._alert_ids:
            return
        self._alert_ids.add(alert.alert_id)
        self.alerts.append((str(alert.tx_id).encode(), alert.model_dump_json().encode()))
        self.alert_records.append(alert)

    @property
    def empty(self) -> bool:
        """Nothing to publish and no marker handled."""
        return not (self.alerts or self.stats or self.dead_letters or self.replay_ends or self.handovers)

    @property
    def steps_closed(self) -> list[tuple[str, int]]:
        return [(s.replay_id, s.step) for s in self.stats_records]

    def add_close(self, result: StepResult, seconds: float) -> None:
        for alert in result.alerts:
            self.add_alert(alert)
        key = f"{result.stats.replay_id}:{result.stats.step}".encode()
        self.stats.append((key, result.stats.model_dump_json().encode()))
        self.stats_records.append(result.stats)
        self.close_seconds.append(seconds)

    def add_handovers(self, handover: Handover) -> None:
        for r in handover.records:
            partition = handover.placement.owner(r.replay_id, r.step)
            self.handovers.append((partition, f"{r.replay_id}:{r.step}".encode(), r.model_dump_json().encode()))
        handover.records.clear()


def _dead_letter(msg: Record, reason: str, value: bytes | None = None) -> tuple[bytes | None, bytes]:
    """``msg`` refused for ``reason``, with ``value`` (default: the record's) as its excerpt."""
    text = ((msg.value if value is None else value) or b"").decode("utf-8", errors="replace")
    key = msg.key[:DEAD_LETTER_KEY_BYTES] if msg.key else msg.key  # a dead letter must always be sendable
    record = DeadLetter(reason=reason, topic=msg.topic, partition=msg.partition, offset=msg.offset,
                        key=key.decode("utf-8", errors="replace") if key else None,
                        value=text[:DEAD_LETTER_EXCERPT], received_at=time.time())
    return key, record.model_dump_json().encode()


def _marker_problem(record: Marker) -> str | None:
    """Why the worker cannot take this marker, or None: a bad one must be dead-lettered, not crash the agent."""
    return step_problem(record.replay_id, record.last_step if isinstance(record, ReplayEnd) else record.step)


@dataclass
class _Rows:
    """Checked transactions of one replay and step waiting in ``route`` for their batch to be processed: decoded
    from one ``tx_batch`` record (``rows``: their row numbers in it), or from ``tx`` records (one each)."""

    cols: TxColumns
    offsets: NDArray[np.int64]
    msgs: list[Record]  # the one batch record, or each row's record
    rows: NDArray[np.int64] | None = None

    def dead_letter(self, i: int, reason: str) -> tuple[bytes | None, bytes]:
        if self.rows is None:
            return _dead_letter(self.msgs[i], reason)
        return _row_dead_letter(self.msgs[0], self.cols, i, int(self.rows[i]), reason)


def _row_dead_letter(msg: Record, cols: TxColumns, i: int, row: int, reason: str) -> tuple[bytes | None, bytes]:
    """Row ``i`` of ``cols``, row ``row`` of batch record ``msg``: its dead letter holds the JSON ``tx`` record the
    row stands for (readable, and sendable again once mended)."""
    where = f"transaction {row} of the batch (tx {int(cols.tx_id[i])}, seq {int(cols.seq[i])}): "
    return _dead_letter(msg, where + reason, cols.row_json(i).encode())


def route(processor: Processor, batch: Sequence[Record], max_record_bytes: int, group: str = "",
          placement: Placement | None = None) -> Outputs:
    """Process ``batch``, records of one partition in offset order, read by consumer group ``group``; return
    what to publish. ``placement``: hand over the work of steps owned by partitions this worker does not hold
    (and every step close); None: do all the work here."""
    out = Outputs()
    if not batch:
        return out
    partitions = {msg.partition for msg in batch}
    if len(partitions) > 1:
        raise ValueError(f"route takes one partition's records, got partitions {sorted(partitions)}")
    partition = batch[0].partition
    origin = Origin.of(partition, [msg.offset for msg in batch], batch[0].topic, group)
    handover = Handover(placement) if placement is not None else None
    pending: dict[tuple[str, int], list[_Rows]] = {}  # checked rows by step, in arrival order
    events: list[tuple[TxEvent, Record]] = []  # checked tx records, not yet columns
    last: list[int] = []  # the step of the last transaction taken
    # (replay id, step) -> handed-over windows, their records: scored once per step, after the events
    handed: dict[tuple[str, int], tuple[set[int], list[Record]]] = {}
    reason: str | None

    def events_to_rows() -> None:
        by_step: dict[tuple[str, int], list[tuple[TxEvent, Record]]] = {}
        for e, m in events:
            by_step.setdefault((e.replay_id, e.step), []).append((e, m))
        for key, evs in by_step.items():
            pending.setdefault(key, []).append(_Rows(TxColumns.from_events([e for e, _ in evs]),
                                                     np.array([m.offset for _, m in evs], dtype=np.int64),
                                                     [m for _, m in evs]))
        events.clear()

    def flush() -> None:
        events_to_rows()
        marker = processor.step_end_offsets(sorted(pending), partition)
        for key in sorted(pending):
            parts = pending[key]
            cols = TxColumns.concat([p.cols for p in parts])
            offsets = np.concatenate([p.offsets for p in parts])
            late = offsets > marker[key] if key in marker else None
            alerts, rejects = processor.process_columns(cols, offsets, origin=origin, late=late, handover=handover)
            for alert in alerts:
                out.add_alert(alert)
            ends = np.cumsum([len(p.cols) for p in parts])
            for i, why in rejects:
                k = int(np.searchsorted(ends, i, side="right"))
                out.dead_letters.append(parts[k].dead_letter(i - int(ends[k] - len(parts[k].cols)), why))
            out.processed += len(cols) - len(rejects)
        if last:
            out.last_step = last[-1]
        pending.clear()
        last.clear()
        for (replay_id, step), (windows, records) in handed.items():
            try:
                alerts = processor.on_windows_ready(replay_id, step, sorted(windows), origin, records[-1].offset)
            except MarkerRefused as e:
                out.dead_letters += [_dead_letter(m, str(e)) for m in records]
                continue
            for alert in alerts:
                out.add_alert(alert)
        handed.clear()

    def take_batch(msg: Record, value: bytes) -> None:
        try:
            cols = TxColumns.decode(value)
        except BatchFormatError as e:
            out.dead_letters.append(_dead_letter(msg, f"invalid record: {e}"))
            return
        if reason := step_problem(cols.replay_id, cols.step):
            out.dead_letters.append(_dead_letter(msg, reason))
            return
        refused = dict(cols.problems())
        refused.update((i, why) for i, why in processor.check_columns(cols) if i not in refused)
        for i, why in sorted(refused.items()):
            out.dead_letters.append(_row_dead_letter(msg, cols, i, i, why))
        rows = np.arange(len(cols), dtype=np.int64)
        if refused:
            rows = rows[~np.isin(rows, list(refused))]
            if not rows.size:
                return
            cols = cols.take(rows)
        pending.setdefault((cols.replay_id, cols.step), []).append(
            _Rows(cols, np.full(len(cols), msg.offset, dtype=np.int64), [msg], rows))
        last.append(cols.step)

    def end_step(record: StepReady | StepEnd, msg: Record) -> None:
        t0 = time.perf_counter()
        try:
            if isinstance(record, StepEnd):
                result = processor.on_step_end(record.replay_id, record.step, msg.partition, record.partitions,
                                               origin, msg.offset, record.count, handover)
            else:
                result = processor.close_step(record.replay_id, record.step, origin, msg.offset, record.count)
        except MarkerRefused as e:
            out.dead_letters.append(_dead_letter(msg, str(e)))
            return
        if result is not None:
            out.add_close(result, time.perf_counter() - t0)

    def fits(msg: Record) -> bool:
        return msg.value is not None and len(msg.value) <= max_record_bytes and not is_batch(msg.value)

    parsed = iter(parse_records([m.value for m in batch if fits(m)]))  # type: ignore[misc]
    for msg in batch:
        if msg.value is None:
            out.dead_letters.append(_dead_letter(msg, "empty record"))
            continue
        if len(msg.value) > max_record_bytes:
            reason = f"record of {len(msg.value):,} bytes exceeds {max_record_bytes:,}"
            out.dead_letters.append(_dead_letter(msg, reason))
            continue
        if is_batch(msg.value):
            take_batch(msg, msg.value)
            continue
        record = next(parsed)
        if isinstance(record, ValidationError):
            out.dead_letters.append(_dead_letter(msg, f"invalid record: {validation_reason(record)}"))
            continue
        if isinstance(record, TxEvent):
            reason = processor.check(record)
            if reason:
                out.dead_letters.append(_dead_letter(msg, reason))
            else:
                events.append((record, msg))
                last.append(record.step)
        elif reason := _marker_problem(record):
            out.dead_letters.append(_dead_letter(msg, reason))
        elif isinstance(record, WindowsReady):  # complete windows: no order to keep with the events around it
            windows, records = handed.setdefault((record.replay_id, record.step), (set(), []))
            windows.update(record.windows)
            records.append(msg)
        elif isinstance(record, StepEnd | StepReady):
            flush()
            end_step(record, msg)
        else:
            flush()
            try:
                processor.declare(record.replay_id, record.partitions)
            except MarkerRefused as e:
                out.dead_letters.append(_dead_letter(msg, str(e)))
                continue
            out.replay_ends.append((record, msg.partition))
    flush()
    if handover is not None:
        out.add_handovers(handover)
    return out


def record_published(processor: Processor, out: Outputs) -> list[str]:
    """Record in Redis what the batch publishes — the replay's alert ids, the newest alerts, the step
    statistics — and only then its replay_end markers; returns the replays now done (every partition has
    passed replay_end, every step is closed: by this batch's last replay_end, or its last close). Every write
    is idempotent (a retried batch writes the same ids and sets), so this runs before the batch's Kafka
    transaction commits: a crash in between leaves its records to be processed again, and the retry commits
    them. Whoever sees a replay end in Redis (``txmon replay``) reads the alert topic until it holds as many of
    the replay's alerts as recorded here."""
    _record_published(processor.redis, out)
    ended = {end.replay_id for end, partition in out.replay_ends
             if processor.on_replay_end(end.replay_id, partition, end.partitions, end.last_step)}
    ended |= {r for r in {s.replay_id for s in out.stats_records} - ended if processor.replay_done(r)}
    for replay_id in sorted(ended):
        mark_ended(processor.redis, replay_id, time.time())
    return sorted(ended)


def _record_published(client: redis.Redis, out: Outputs) -> None:
    """One round trip: the alert ids per replay (what ``txmon replay`` waits to read from the alert topic),
    the newest alerts (the worker's web view), the step statistics — as the JSON sent to Kafka."""
    if not out.alert_records and not out.stats_records:
        return
    pipe = client.pipeline(transaction=False)
    for a in out.alert_records:
        pipe.hset(ReplayKeys(a.replay_id).published, a.alert_id, a.kind)
    if out.alerts:
        pipe.lpush(LATEST_ALERTS, *[value for _, value in out.alerts])
        pipe.ltrim(LATEST_ALERTS, 0, LATEST_N - 1)
    for s, (_, value) in zip(out.stats_records, out.stats, strict=True):
        pipe.hset(ReplayKeys(s.replay_id).stats, str(s.step), value)
    pipe.execute()
