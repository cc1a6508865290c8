"""``route`` with binary ``tx_batch`` records, against a real redis-server: the same outputs and the same
graph in Redis as one JSON record per transaction; a bad record, or a bad transaction in a good one, is
dead-lettered with its reason and the rest is processed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import redis

from stream_app.keys import StepKeys
from stream_app.processor import MAX_SEQ, Processor
from stream_app.routing import Outputs, route
from txmon.core.contracts import DeadLetter, TxEvent
from txmon.core.tx_batch import TxColumns, encode_events
from txmon.testing.records import MAX_BYTES, TOPIC, msg, step_end, tx

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore:Sparse:UserWarning")]


def _events(step: int = 1, n: int = 12) -> list[TxEvent]:
    """A step whose transactions pay into earlier ones (a chain with branches)."""
    return [_event(step=step, seq=i, inputs_from=[(1000 * step + j + 1, j) for j in sorted({i - 1, i // 2})
                                                 if 0 <= j < i]) for i in range(n)]


def _event(**fields: object) -> TxEvent:
    return TxEvent.model_validate_json(json.dumps(tx(**fields)))  # type: ignore[arg-type]


def _clean(out: Outputs) -> tuple[list[dict], list[dict]]:
    """Alerts and statistics without the clock fields."""
    alerts = [{k: v for k, v in json.loads(a).items() if k != "processing_time"} for _, a in out.alerts]
    stats = [{k: v for k, v in json.loads(s).items() if k != "computed_at"} for _, s in out.stats]
    return alerts, stats


def _state(r: redis.Redis, step: int = 1) -> dict[bytes, bytes | None]:
    keys = StepKeys("r", step)
    return {k: r.get(k) for k in (keys.seen, keys.edges, keys.ids, keys.node(0), keys.arr, keys.fin)}


def test_batches_give_the_same_outputs_and_graph_as_one_json_record_a_transaction(
        proc: Processor, redis_client: redis.Redis) -> None:
    events = _events(n=23)
    end = step_end(count=len(events))
    as_json = [msg(json.loads(e.model_dump_json()), offset=i) for i, e in enumerate(events)]
    json_out = route(Processor(redis_client, proc.model, window_size=4), [*as_json, msg(end, offset=23)], MAX_BYTES)
    json_state = _state(redis_client)
    redis_client.flushdb()
    chunks = [events[i:i + 5] for i in range(0, len(events), 5)]
    as_batches = [msg(encode_events(c), offset=i) for i, c in enumerate(chunks)]
    batch_out = route(Processor(redis_client, proc.model, window_size=4),
                      [*as_batches, msg(end, offset=len(chunks))], MAX_BYTES)
    assert not json_out.dead_letters and not batch_out.dead_letters
    assert json_out.processed == batch_out.processed == len(events)
    assert _clean(json_out) == _clean(batch_out) and json_out.stats_records[0].edges_step > 20
    assert _state(redis_client) == json_state
    redis_client.flushdb()  # both kinds in one micro-batch, for the same step
    chunks = [events[:1], events[1:5], events[5:6], events[6:12], events[12:13], events[13:]]  # JSON, batch, ...
    mixed = [msg(encode_events(c), offset=i) if i % 2 else msg(json.loads(c[0].model_dump_json()), offset=i)
             for i, c in enumerate(chunks)]
    mixed_out = route(Processor(redis_client, proc.model, window_size=4), [*mixed, msg(end, offset=99)], MAX_BYTES)
    assert _clean(mixed_out) == _clean(json_out) and _state(redis_client) == json_state


def test_rows_out_of_seq_order_and_repeated_across_records_are_taken_once(proc: Processor) -> None:
    events = _events(n=10)
    shuffled = [events[i] for i in (3, 0, 9, 1, 2)]
    out = route(proc, [msg(encode_events(shuffled), offset=0), msg(encode_events(events[4:]), offset=1),
                       msg(encode_events(events[:4]), offset=2)], MAX_BYTES)
    assert not out.dead_letters and out.processed == 15  # a redelivered seq counts, written once
    assert sorted(a.tx_id for a in out.alert_records) == [e.tx_id for e in events]


def _bad_row(**field: tuple[int, object]) -> bytes:
    cols = TxColumns.from_events(_events(n=6))
    for name, (row, value) in field.items():
        getattr(cols, name)[row] = value
    return cols.encode()


def _nan_feature() -> bytes:
    cols = TxColumns.from_events(_events(n=6))
    cols.features[4, 9] = np.inf
    return cols.encode()


def _edge(seq: int) -> bytes:
    cols = TxColumns.from_events(_events(n=6))
    cols.edge_seq[int(np.flatnonzero(cols.edge_row == 4)[0])] = seq
    return cols.encode()


BAD_ROWS = {  # name: (record, its bad row, fragments of the reason)
    "tx id 0": (_bad_row(tx_id=(2, 0)), 2, ["tx_id", "greater than 0"]),
    "negative seq": (_bad_row(seq=(5, -3)), 5, ["seq", "greater than or equal to 0"]),
    "seq too large": (_bad_row(seq=(5, MAX_SEQ)), 5, [f"seq {MAX_SEQ} is beyond"]),
    "infinite feature": (_nan_feature(), 4, ["feature 9 is inf"]),
    "event time not finite": (_bad_row(event_time=(1, np.nan)), 1, ["event_time nan is not finite"]),
    "edge to a later seq": (_edge(5), 4, ["neighbour seq 5 is not an earlier seq", "seq is 4"]),
    "edge to itself": (_edge(4), 4, ["neighbour seq 4 is not an earlier seq"]),
    "negative neighbour seq": (_edge(-1), 4, ["inputs_from", "seq >= 0"]),
}


@pytest.mark.parametrize("name", list(BAD_ROWS))
def test_a_bad_transaction_in_a_batch_is_dead_lettered_alone(proc: Processor, name: str) -> None:
    value, row, fragments = BAD_ROWS[name]
    out = route(proc, [msg(value, partition=1, offset=17, key=b"r:1:0")], MAX_BYTES)
    (key, dl), = out.dead_letters
    d = DeadLetter.model_validate_json(dl)
    assert key == b"r:1:0" and (d.topic, d.partition, d.offset, d.key) == (TOPIC, 1, 17, "r:1:0")
    assert d.reason.startswith(f"transaction {row} of the batch (tx ")
    for fragment in fragments:
        assert fragment in d.reason, f"{name}: reason {d.reason!r} lacks {fragment!r}"
    refused = json.loads(d.value)  # the transaction, as its JSON tx record
    assert refused["kind"] == "tx" and refused["replay_id"] == "r"
    # The other rows are written; those before the refused seq (window size 1, threshold 0) are scored and alert.
    assert out.processed == 5 and sorted(a.tx_id - 1001 for a in out.alert_records) == list(range(row))


def _header(**changes: object) -> bytes:
    value = encode_events(_events(n=3))
    h = int.from_bytes(value[4:8], "little")
    text = json.dumps({**json.loads(value[8:8 + h]), **changes}).encode()
    return value[:4] + len(text).to_bytes(4, "little") + text + value[8 + h:]


BAD_RECORDS = {
    "truncated": (encode_events(_events(n=3))[:-7], ["invalid record", "the record has"]),
    "header not JSON": (b"TXMB" + (2).to_bytes(4, "little") + b"{{", ["invalid record", "header"]),
    "unknown header field": (_header(label=1), ["invalid record", "label"]),
    "bad replay id": (_header(replay_id="a{b}"), ["replay id 'a{b}'"]),
    "step beyond the data": (_header(step=50), ["step 50 is beyond 49"]),
}


@pytest.mark.parametrize("name", list(BAD_RECORDS))
def test_a_batch_record_that_cannot_be_taken_is_one_dead_letter(proc: Processor, redis_client: redis.Redis,
                                                                 name: str) -> None:
    value, fragments = BAD_RECORDS[name]
    good = msg(encode_events(_events(step=2, n=3)), offset=1)
    out = route(proc, [msg(value, offset=0), good], MAX_BYTES)
    (_, dl), = out.dead_letters
    d = DeadLetter.model_validate_json(dl)
    for fragment in fragments:
        assert fragment in d.reason, f"{name}: reason {d.reason!r} lacks {fragment!r}"
    assert d.offset == 0 and out.processed == 3  # the next record is taken
    assert not redis_client.exists(StepKeys("r", 1).seen)


def test_a_batch_larger_than_the_limit_is_refused(proc: Processor) -> None:
    value = encode_events(_events(n=120))
    assert len(value) > MAX_BYTES
    (_, dl), = route(proc, [msg(value)], MAX_BYTES).dead_letters
    assert f"record of {len(value):,} bytes exceeds" in DeadLetter.model_validate_json(dl).reason


def test_a_seq_repeated_with_other_content_in_a_batch_is_dead_lettered(proc: Processor) -> None:
    events = _events(n=4)
    other = _event(seq=2, tx_id=99)
    out = route(proc, [msg(encode_events([*events, other]), offset=3)], MAX_BYTES)
    (_, dl), = out.dead_letters
    d = DeadLetter.model_validate_json(dl)
    assert d.reason.startswith("transaction 4 of the batch (tx 99, seq 2)") and "contradicts" in d.reason
    assert json.loads(d.value)["tx_id"] == 99 and out.processed == 4
