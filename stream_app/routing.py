"""One consumed micro-batch → Processor calls → the records to publish. No Kafka here.

Order matters within a partition: a step's transactions precede its ``step_end`` there, so the
transactions gathered so far are processed before each marker is handled.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from pydantic import ValidationError

from replay.elliptic_format import STEP_MAX
from stream_app.keys import check_replay_id
from stream_app.processor import Processor
from txmon.contracts import TOPIC_EVENT, DeadLetter, ReplayEnd, StepEnd, TxEvent

DLQ_VALUE_CHARS = 2048  # a dead letter keeps the start of the record, enough to see what it was


@dataclass(frozen=True)
class Consumed:
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
    replays_done: list[ReplayEnd] = field(default_factory=list)  # replays whose every partition has ended
    processed: int = 0
    steps_closed: list[tuple[str, int]] = field(default_factory=list)


def _dead_letter(msg: Consumed, reason: str) -> tuple[bytes | None, bytes]:
    text = (msg.value or b"").decode("utf-8", errors="replace")
    record = DeadLetter(reason=reason, topic=msg.topic, partition=msg.partition, offset=msg.offset,
                        key=msg.key.decode("utf-8", errors="replace") if msg.key else None,
                        value=text[:DLQ_VALUE_CHARS], received_at=time.time())
    return msg.key, record.model_dump_json().encode()


def _validation_reason(e: ValidationError) -> str:
    first = e.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    more = f" (+{e.error_count() - 1} more)" if e.error_count() > 1 else ""
    return f"invalid record: {where}: {first['msg']}{more}"


def _marker_problem(record: StepEnd | ReplayEnd) -> str | None:
    """Why the worker cannot take this marker, or None: a bad one must be dead-lettered, not crash the agent."""
    try:
        check_replay_id(record.replay_id)
    except ValueError as e:
        return str(e)
    last = record.step if isinstance(record, StepEnd) else record.last_step
    if last > STEP_MAX:  # step close walks the steps before it
        return f"step {last} is beyond {STEP_MAX}"
    return None


def route(processor: Processor, batch: list[Consumed], max_record_bytes: int) -> Outputs:
    out = Outputs()
    pending: list[TxEvent] = []

    def flush() -> None:
        if pending:
            for alert in processor.process_batch(pending, checked=True):  # checked on the way in
                out.alerts.append((str(alert.tx_id).encode(), alert.model_dump_json().encode()))
            out.processed += len(pending)
            pending.clear()

    for msg in batch:
        if msg.value is None:
            out.dead_letters.append(_dead_letter(msg, "empty record"))
            continue
        if len(msg.value) > max_record_bytes:
            reason = f"record of {len(msg.value):,} bytes exceeds {max_record_bytes:,}"
            out.dead_letters.append(_dead_letter(msg, reason))
            continue
        try:
            record = TOPIC_EVENT.validate_json(msg.value)
        except ValidationError as e:
            out.dead_letters.append(_dead_letter(msg, _validation_reason(e)))
            continue
        if isinstance(record, TxEvent):
            reason = processor.check(record)
            if reason:
                out.dead_letters.append(_dead_letter(msg, reason))
            else:
                pending.append(record)
        elif reason := _marker_problem(record):
            out.dead_letters.append(_dead_letter(msg, reason))
        elif isinstance(record, StepEnd):
            flush()
            result = processor.on_step_end(record.replay_id, record.step, msg.partition, record.partitions)
            if result is not None:
                for alert in result.alerts:
                    out.alerts.append((str(alert.tx_id).encode(), alert.model_dump_json().encode()))
                key = f"{record.replay_id}:{record.step}".encode()
                out.stats.append((key, result.stats.model_dump_json().encode()))
                out.steps_closed.append((record.replay_id, record.step))
        else:
            flush()
            if processor.on_replay_end(record.replay_id, msg.partition, record.partitions):
                out.replays_done.append(record)
    flush()
    return out
