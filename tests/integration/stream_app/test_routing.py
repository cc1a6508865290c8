"""``route``: one consumed micro-batch → Processor calls → what the worker publishes, against a real redis-server.

Bad input of every kind is dead-lettered with a reason that says what was wrong and never raises (a raise
would crash the Faust agent and stop the worker); order inside a batch is kept (a step's transactions are
processed before its ``step_end``); a replay is reported done only once every partition has passed its end.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import redis

from stream_app.keys import StepKeys
from stream_app.placement import Placement
from stream_app.processor import MAX_SEQ, Processor
from stream_app.routing import Consumed, Outputs, record_published, route
from txmon.core.contracts import DEAD_LETTER_EXCERPT, Alert, DeadLetter, StepStats, encode_features
from txmon.core.elliptic_format import N_FEATURES
from txmon.pipeline.completion import published_alerts
from txmon.testing.records import MAX_BYTES, TOPIC, b64, features, msg, replay_end, step_end, tx

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore:Sparse:UserWarning")]

def _with_nan(i: int, value: float) -> str:
    f = features(0)
    f[i] = value
    return encode_features(f)


# -- bad input ---------------------------------------------------------------------------------------------------

NAN_TIME = json.dumps(tx(), separators=(",", ":")).replace('"event_time":1700000000.0', '"event_time":NaN').encode()
OVERSIZED = json.dumps(tx()).encode()
OVERSIZED = OVERSIZED[:-1] + b" " * (MAX_BYTES + 1 - len(OVERSIZED)) + b"}"  # valid JSON, one byte too many

BAD = {  # name: (value, fragments the reason must contain)
    "no value (tombstone)": (None, ["empty record"]),
    "empty bytes": (b"", ["invalid record", "EOF"]),
    "garbage bytes": (b"\x00\xff\xfe\x81garbage", ["invalid record", "JSON"]),
    "truncated JSON": (json.dumps(tx()).encode()[:200], ["invalid record", "EOF"]),
    "a JSON array": (b"[1, 2, 3]", ["invalid record", "object"]),
    "no kind": ({k: v for k, v in tx().items() if k != "kind"}, ["invalid record", "kind"]),
    "unknown kind": ({**tx(), "kind": "refund"}, ["invalid record", "refund"]),
    "missing fields": ({"kind": "tx", "replay_id": "r", "tx_id": 5}, ["invalid record", "Field required"]),
    "unknown field": (tx(label=1), ["invalid record", "label", "Extra inputs"]),
    "164 features": (tx(features=b64(np.ones(N_FEATURES - 1))), ["features", "165 float32", "656"]),
    "166 features": (tx(features=b64(np.ones(N_FEATURES + 1))), ["features", "165 float32", "664"]),
    "features as a number list": (tx(features=[1.0] * 3), ["features", "165"]),
    "features not base64": (tx(features="not base64!"), ["features", "base64"]),
    "NaN feature": (tx(features=_with_nan(7, np.nan)), ["feature 7 is nan"]),
    "infinite feature": (tx(features=_with_nan(164, -np.inf)), ["feature 164 is -inf"]),
    "tx id 0": (tx(tx_id=0), ["tx_id", "greater than 0"]),
    "tx id beyond int64": (tx(tx_id=2**64), ["tx id", "64 bits"]),
    "step 0": (dict(tx(), step=0), ["step", "greater than or equal to 1"]),
    "step beyond the data": (dict(tx(), step=50), ["step 50 is beyond 49"]),
    "negative seq": (dict(tx(), seq=-1), ["seq", "greater than or equal to 0"]),
    "seq too large": (tx(seq=MAX_SEQ), [f"seq {MAX_SEQ} is beyond"]),
    "neighbour seq out of range": (tx(seq=3, inputs_from=[(7, MAX_SEQ)]), [f"neighbour seq {MAX_SEQ} is not an "
                                                                           "earlier seq"]),
    "negative neighbour seq": (tx(seq=3, inputs_from=[(7, -2)]), ["neighbour seq -2 is not an earlier seq"]),
    "edge to itself": (tx(seq=3, outputs_to=[[7, 3]]), ["neighbour seq 3 is not an earlier seq", "seq is 3"]),
    "edge to a later seq": (tx(seq=3, inputs_from=[(7, 4)]), ["neighbour seq 4 is not an earlier seq"]),
    "bad replay id": (tx(replay_id="a{b}"), ["replay id 'a{b}'"]),
    "empty replay id": (tx(replay_id=""), ["replay id ''"]),
    "event time not a number": (NAN_TIME, ["event_time nan is not finite"]),
    "oversized": (OVERSIZED, [f"record of {MAX_BYTES + 1:,} bytes exceeds {MAX_BYTES:,}"]),
    "step_end with a bad replay id": (step_end(replay_id="x}{y"), ["replay id 'x}{y'"]),
    "step_end without partitions": ({k: v for k, v in step_end().items() if k != "partitions"},
                                    ["invalid record", "partitions", "Field required"]),
    "step_end beyond the data": (dict(step_end(), step=2**70), [f"step {2**70} is beyond 49"]),
    "replay_end with a bad replay id": (replay_end(replay_id="a b"), ["replay id 'a b'"]),
    "replay_end with 0 partitions": (dict(replay_end(), partitions=0), ["invalid record", "partitions"]),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_input_is_dead_lettered_with_a_clear_reason(proc: Processor, redis_client: redis.Redis,
                                                        name: str) -> None:
    value, fragments = BAD[name]
    raw = json.dumps(value).encode() if isinstance(value, dict) else value
    out = route(proc, [msg(value, partition=2, offset=41, key=b"\xffkey")], MAX_BYTES)
    assert len(out.dead_letters) == 1 and not (out.alerts or out.stats or out.replay_ends or out.processed)
    key, dl = out.dead_letters[0]
    assert key == b"\xffkey"  # the record's own key: a dead letter lands next to its kin
    d = DeadLetter.model_validate_json(dl)
    for fragment in fragments:
        assert fragment in d.reason, f"{name}: reason {d.reason!r} lacks {fragment!r}"
    assert (d.topic, d.partition, d.offset, d.key) == (TOPIC, 2, 41, "\ufffdkey")
    text = (raw or b"").decode("utf-8", errors="replace")
    assert d.value == text[:DEAD_LETTER_EXCERPT]
    # Nothing of a dead-lettered record reaches Redis (a bad record must not half-write a step).
    assert not [k for k in redis_client.keys("txm:*") if b"alert" in k or b":seen" in k or b"stepend" in k]


def test_a_batch_of_bad_records_among_good_ones_keeps_the_good_ones(proc: Processor) -> None:
    """Every bad case in one batch with valid events around them: each bad one is dead-lettered once, in order,
    and the valid ones are processed (nothing raises, nothing is lost)."""
    batch, good = [], 0
    for i, (value, _) in enumerate(BAD.values()):
        batch.append(msg(tx(seq=i), offset=2 * i))  # consecutive seqs: each arrival window is complete
        good += 1
        batch.append(msg(value, offset=2 * i + 1))
    out = route(proc, batch, MAX_BYTES)
    assert out.processed == good
    assert [DeadLetter.model_validate_json(v).offset for _, v in out.dead_letters] == [
        2 * i + 1 for i in range(len(BAD))]
    assert len(out.alerts) == good  # threshold 0: every valid transaction alerts on arrival


def test_a_long_record_is_truncated_in_its_dead_letter(proc: Processor) -> None:
    value = json.dumps({**tx(), "features": "x" * 10_000}).encode()
    (_, dl), = route(proc, [msg(value)], MAX_BYTES).dead_letters
    d = DeadLetter.model_validate_json(dl)
    assert len(d.value) == DEAD_LETTER_EXCERPT and value.decode().startswith(d.value)


# -- order within a batch ----------------------------------------------------------------------------------------


def test_transactions_before_a_step_end_are_processed_before_it(proc: Processor, redis_client: redis.Redis) -> None:
    """Steps 1 and 2 interleaved, step 1's marker in the middle (one partition): step 1 closes with all of its
    transactions — including those after step 2's events in the batch — and step 2's go on afterwards."""
    s1 = [tx(step=1, seq=i, inputs_from=[(1001, 0)] if i else None) for i in range(5)]
    s2 = [tx(step=2, seq=i, inputs_from=[(2001, i - 1)] if i else None) for i in range(6)]
    batch = [msg(e, offset=i) for i, e in enumerate([s2[0], s1[0], s1[1], s2[1], s1[2], s2[2], s1[3], s1[4]])]
    batch.append(msg(step_end(step=1), offset=len(batch)))
    batch += [msg(e, offset=len(batch) + i) for i, e in enumerate(s2[3:])]
    out = route(proc, batch, MAX_BYTES)
    assert not out.dead_letters and out.processed == 11
    assert out.steps_closed == [("r", 1)]
    (key, value), = out.stats
    stats = StepStats.model_validate_json(value)
    assert key == b"r:1" and (stats.step, stats.nodes_step, stats.edges_step) == (1, 5, 4)
    # Step 1 is final for all five; step 2's six have arrival scores and no final ones (not closed).
    assert redis_client.strlen(StepKeys("r", 1).fin) >= 5 * 4
    assert not redis_client.exists(StepKeys("r", 2).fin)
    scored = np.unpackbits(np.frombuffer(redis_client.get(StepKeys("r", 2).scored), np.uint8))
    assert scored[:6].all()
    kinds = [Alert.model_validate_json(v).kind for _, v in out.alerts]
    assert kinds.count("arrival") == 11  # threshold 0: all alert on arrival, none is retracted


def test_a_step_end_in_a_later_batch_sees_the_earlier_batches(proc: Processor) -> None:
    route(proc, [msg(tx(step=1, seq=i), offset=i) for i in range(3)], MAX_BYTES)
    out = route(proc, [msg(tx(step=1, seq=3), offset=3), msg(step_end(step=1), offset=4)], MAX_BYTES)
    assert StepStats.model_validate_json(out.stats[0][1]).nodes_step == 4


def test_a_step_closes_only_when_every_partition_passed_its_marker(proc: Processor) -> None:
    for p in range(3):
        route(proc, [msg(tx(step=1, seq=i), partition=p, offset=i) for i in range(6) if i % 3 == p], MAX_BYTES)
    marker = step_end(step=1, partitions=3)
    repeated = [msg(marker, partition=0, offset=10), msg(marker, partition=0, offset=11)]
    assert not route(proc, repeated, MAX_BYTES).stats  # one partition twice is still one
    assert not route(proc, [msg(marker, partition=2, offset=10)], MAX_BYTES).stats
    out = route(proc, [msg(marker, partition=1, offset=10)], MAX_BYTES)
    assert [StepStats.model_validate_json(v).nodes_step for _, v in out.stats] == [6]
    other = route(proc, [msg(marker, partition=2, offset=10)], MAX_BYTES)  # another partition's, after the close
    assert not other.stats and not other.alerts and not other.dead_letters
    # The completing record processed again (its batch's transaction never committed): the same close again.
    again = route(proc, [msg(marker, partition=1, offset=10)], MAX_BYTES)
    assert [s.model_dump(exclude={"computed_at"}) for s in again.stats_records] == \
        [s.model_dump(exclude={"computed_at"}) for s in out.stats_records]
    assert [a.alert_id for a in again.alert_records] == [a.alert_id for a in out.alert_records]


def test_route_takes_one_partition_a_call(proc: Processor) -> None:
    with pytest.raises(ValueError, match="one partition"):
        route(proc, [msg(tx(step=1, seq=0), partition=0), msg(tx(step=1, seq=1), partition=1)], MAX_BYTES)


# -- replay_end ----------------------------------------------------------------------------------------------------


def _route_and_publish(proc: Processor, batch: list[Consumed]) -> tuple[Outputs, list[str]]:
    out = route(proc, batch, MAX_BYTES)
    return out, record_published(proc, out)


def test_replay_end_is_reported_only_once_every_partition_passed_it(proc: Processor) -> None:
    end = replay_end(replay_id="r", partitions=3)
    _, first = _route_and_publish(proc, [msg(end, partition=0), msg(end, partition=0, offset=1)])
    _, first2 = _route_and_publish(proc, [msg(end, partition=2)])
    first += first2
    assert first == []  # partition 0 twice is still one partition
    _, other = _route_and_publish(proc, [msg(replay_end(replay_id="other", partitions=3), partition=1)])
    assert other == []  # another replay's end does not count
    _, last = _route_and_publish(proc, [msg(end, partition=1)])
    assert last == ["r"]


def test_replay_end_is_recorded_only_once_the_outputs_are_recorded(proc: Processor, redis_client: redis.Redis) -> None:
    batch = [msg(tx(step=1, seq=i), offset=i) for i in range(4)]
    batch += [msg(step_end(step=1), offset=4), msg(replay_end(), offset=5)]
    out = route(proc, batch, MAX_BYTES)
    assert out.processed == 4 and out.steps_closed == [("r", 1)] and len(out.replay_ends) == 1
    assert redis_client.scard("txm:{r}:replay_end") == 0  # not before the outputs are on Kafka
    assert len(record_published(proc, out)) == 1
    assert redis_client.scard("txm:{r}:replay_end") == 1
    stored = StepStats.model_validate_json(redis_client.hget("txm:{r}:stats", "1"))
    assert stored == out.stats_records[0] and stored.nodes_step == 4


def test_published_alerts_are_counted_per_kind_and_listed_newest_first(proc: Processor,
                                                                       redis_client: redis.Redis) -> None:
    out = Outputs()
    first = Alert(alert_id="r:5:arrival", kind="arrival", replay_id="r", tx_id=5, step=1, arrival_score=0.9,
                  threshold=0.5, model_version="gcn-v1", event_time=1.0, processing_time=2.0)
    out.add_alert(first)
    out.add_alert(first.model_copy(update={"alert_id": "r:5:retracted", "kind": "retracted", "final_score": 0.1}))
    out.add_alert(first.model_copy(update={"alert_id": "r:6:arrival", "tx_id": 6}))
    record_published(proc, out)
    assert published_alerts(redis_client, "r") == {"arrival": 2, "retracted": 1}
    newest = [Alert.model_validate_json(v).alert_id for v in redis_client.lrange("txm:latest:alerts", 0, -1)]
    assert newest == ["r:6:arrival", "r:5:retracted", "r:5:arrival"]
    record_published(proc, out)  # a retried batch records the same ids
    assert published_alerts(redis_client, "r") == {"arrival": 2, "retracted": 1}


def test_an_empty_batch_does_nothing(proc: Processor) -> None:
    out, done = _route_and_publish(proc, [])
    assert (out.alerts, out.stats, out.dead_letters, done, out.processed) == ([], [], [], [], 0)


# -- a strict boundary: records that contradict their replay ---------------------------------------------------------


def _reasons(out: Outputs) -> list[str]:
    return [DeadLetter.model_validate_json(v).reason for _, v in out.dead_letters]


def test_a_seq_resent_with_other_content_is_dead_lettered_and_changes_nothing(proc: Processor,
                                                                              redis_client: redis.Redis) -> None:
    route(proc, [msg(tx(seq=0), offset=0), msg(tx(seq=1, inputs_from=[(1001, 0)]), offset=1)], MAX_BYTES)
    keys = StepKeys("r", 1)
    before = {k: redis_client.get(k) for k in (keys.node(0), keys.edges, keys.seen, keys.ids)}
    other = tx(seq=1, inputs_from=[(1001, 0)], features=b64(features(99)))  # seq 1 again, other features
    swapped = tx(seq=0, tx_id=77)  # seq 0 again, another transaction
    again = tx(seq=1, inputs_from=[(1001, 0)], event_time=1_800_000_000.0)  # the same record, re-sent later
    assert not route(proc, [msg(again, offset=2)], MAX_BYTES).dead_letters
    out = route(proc, [msg(other, offset=3), msg(swapped, offset=4)], MAX_BYTES)
    reasons = _reasons(out)
    assert len(reasons) == 2 and all("contradicts it and was not written" in r for r in reasons)
    assert "seq 1 of step 1 of replay r" in reasons[0] or "seq 1 of step 1 of replay r" in reasons[1]
    assert {k: redis_client.get(k) for k in before} == before  # nothing written
    # The same seq twice in one batch: the later copy is compared with the first.
    within = route(proc, [msg(tx(seq=2), offset=5), msg(tx(seq=2, tx_id=5), offset=6)], MAX_BYTES)
    assert len(_reasons(within)) == 1 and "seq 2" in _reasons(within)[0]


def test_markers_that_contradict_their_replay_are_dead_lettered(proc: Processor, redis_client: redis.Redis) -> None:
    route(proc, [msg(tx(seq=i), offset=i) for i in range(3)], MAX_BYTES)
    first = route(proc, [msg(step_end(partitions=2, count=3), offset=3)], MAX_BYTES)
    assert not first.dead_letters and not first.stats
    wrong_parts = route(proc, [msg(step_end(partitions=1, count=3), offset=4)], MAX_BYTES)  # would complete it
    assert not wrong_parts.stats and "says 1 partitions, but replay r declared 2" in _reasons(wrong_parts)[0]
    wrong_count = route(proc, [msg(step_end(partitions=2, count=9), partition=1, offset=0)], MAX_BYTES)
    assert not wrong_count.stats and "says 9 transactions in step 1" in _reasons(wrong_count)[0]
    end = route(proc, [msg(replay_end(partitions=3), offset=5)], MAX_BYTES)
    assert not end.replay_ends and "declared 2" in _reasons(end)[0]
    ok = route(proc, [msg(step_end(partitions=2, count=3), partition=1, offset=1)], MAX_BYTES)
    assert [s.nodes_step for s in ok.stats_records] == [3] and not ok.dead_letters


def test_a_step_end_for_a_step_without_transactions_yields_no_statistics(proc: Processor) -> None:
    """A premature marker, or one of a replay that never started, must not close a step with 0 nodes."""
    out = route(proc, [msg(step_end(replay_id="never", step=4, count=120), offset=0)], MAX_BYTES)
    assert not out.stats and "none of its 120 transactions has arrived" in _reasons(out)[0]


def test_a_complete_step_says_nothing_is_missing(proc: Processor) -> None:
    route(proc, [msg(tx(seq=0), offset=0), msg(tx(seq=1, inputs_from=[(1001, 0)]), offset=1)], MAX_BYTES)
    (stats,) = route(proc, [msg(step_end(count=2), offset=2)], MAX_BYTES).stats_records
    assert (stats.nodes_step, stats.edges_step, stats.missing_transactions, stats.dangling_edges) == (2, 1, 0, 0)


def test_edges_to_seqs_that_never_arrive_are_left_out_and_counted(proc: Processor) -> None:
    """seq 1 never comes (dead-lettered upstream, say): the edges to it are left out of the graph, and the step's
    statistics record says how many there were and that a declared transaction is missing."""
    route(proc, [msg(tx(seq=0), offset=0), msg(tx(seq=2, inputs_from=[(1001, 0), (1002, 1)]), offset=1),
                 msg(tx(seq=3, outputs_to=[(1002, 1)]), offset=2)], MAX_BYTES)
    (stats,) = route(proc, [msg(step_end(count=4), offset=3)], MAX_BYTES).stats_records
    assert (stats.nodes_step, stats.edges_step) == (3, 1)
    assert (stats.missing_transactions, stats.dangling_edges) == (1, 2)


def test_a_dead_letter_of_a_record_with_a_huge_key_still_fits(proc: Processor) -> None:
    out = route(proc, [msg(b"not json", key=b"k" * 200_000)], MAX_BYTES)
    ((key, value),) = out.dead_letters
    assert key is not None and len(key) == 256 and len(value) < 4096
    assert DeadLetter.model_validate_json(value).key == "k" * 256


def test_an_event_after_its_partitions_step_end_is_refused_unless_it_arrived_before(
        proc: Processor, redis_client: redis.Redis) -> None:
    """A premature step_end closed step 1 on its one partition; a seq of the step that comes after it there is
    dead-lettered and not written; the same records again (a retry, a re-sent replay) change nothing."""
    route(proc, [msg(tx(seq=i), offset=i) for i in range(3)], MAX_BYTES)
    closed = route(proc, [msg(step_end(count=4), offset=3)], MAX_BYTES)  # says 4, only 3 arrived: premature
    assert [(s.nodes_step, s.missing_transactions) for s in closed.stats_records] == [(3, 1)]  # says it is partial
    keys = StepKeys("r", 1)
    seen = redis_client.get(keys.seen)
    late = route(proc, [msg(tx(seq=3), offset=4)], MAX_BYTES)
    assert "came after its partition's step_end" in _reasons(late)[0] and late.processed == 0
    assert redis_client.get(keys.seen) == seen  # not marked as arrived
    again = route(proc, [msg(tx(seq=1), offset=1), msg(tx(seq=2, event_time=1_800_000_000.0), offset=5)], MAX_BYTES)
    assert not again.dead_letters  # before the marker, or already there: nothing to refuse


# -- hand-overs (stream_app.placement) -----------------------------------------------------------------------------


def _step_one(replay_id: str = "r") -> list[Consumed]:
    batch = [msg(tx(step=1, seq=i, replay_id=replay_id), offset=i) for i in range(4)]
    return batch + [msg(step_end(replay_id=replay_id, step=1, count=4), offset=4),
                    msg(replay_end(replay_id=replay_id), offset=5)]


def test_the_holder_of_a_steps_partition_closes_it_where_its_step_end_completes(proc: Processor) -> None:
    out = route(proc, _step_one(), MAX_BYTES, placement=Placement(1, frozenset({0})))
    assert out.steps_closed == [("r", 1)] and not out.handovers  # no round trip through Kafka
    assert record_published(proc, out) == ["r"]


def test_a_handed_over_close_runs_once_and_the_replay_is_done_only_after_it(proc: Processor) -> None:
    owner = Placement(2, frozenset({Placement(2, frozenset()).owner("r", 1)}))
    elsewhere = Placement(2, frozenset({0, 1}) - owner.held)
    out = route(proc, _step_one(), MAX_BYTES, placement=elsewhere)
    assert out.processed == 4 and not out.stats_records and not out.alerts  # nothing of step 1 is done here
    handed = [json.loads(v) for p, k, v in out.handovers if (p, k) == (min(owner.held), b"r:1")]
    assert [h["kind"] for h in handed] == ["windows_ready", "step_ready"] == [
        json.loads(v)["kind"] for _, _, v in out.handovers]
    assert record_published(proc, out) == []  # every partition passed replay_end, but step 1 is not closed
    windows, ready = handed
    assert ready["count"] == 4
    # The owner reads them; a step_ready written twice (its step_end retried) in one batch closes the step once.
    closing = route(proc, [msg(windows, offset=6), msg(ready, offset=7), msg(ready, offset=8)], MAX_BYTES,
                    placement=owner)
    assert closing.steps_closed == [("r", 1)] and not closing.dead_letters
    kinds = [a.kind for a in closing.alert_records]  # threshold 0: every transaction alerts on arrival
    assert kinds.count("arrival") == 4 and kinds.index("arrival") < kinds.index("confirmed")
    assert record_published(proc, closing) == ["r"]
    later = route(proc, [msg(ready, offset=9)], MAX_BYTES, placement=owner)
    assert not later.stats_records and not later.dead_letters  # closed by another record: nothing twice


def test_windows_of_a_step_owned_elsewhere_are_handed_over_once_and_scored_by_the_owner(
        proc: Processor, redis_client: redis.Redis) -> None:
    proc.window_size = 2
    here, owner = Placement(2, frozenset({0})), Placement(2, frozenset({1}))
    step = next(s for s in range(1, 10) if here.owner("r", s) == 1)  # a step owned by the other worker
    out = route(proc, [msg(tx(step=step, seq=i), offset=i) for i in range(5)], MAX_BYTES, placement=here)
    assert out.processed == 5 and not out.alerts  # windows 0 and 1 complete, not scored here
    (to, _, value), = out.handovers
    assert to == 1 and json.loads(value)["windows"] == [0, 1]
    more = route(proc, [msg(tx(step=step, seq=5), offset=5)], MAX_BYTES, placement=here)
    assert [json.loads(v)["windows"] for _, _, v in more.handovers] == [[2]]  # 0 and 1 are handed over already
    scored = route(proc, [msg(json.loads(value), partition=1, offset=0)], MAX_BYTES, placement=owner)
    assert sorted(a.tx_id for a in scored.alert_records) == [1000 * step + i + 1 for i in range(4)]  # threshold 0
    again = route(proc, [msg(json.loads(value), partition=1, offset=1)], MAX_BYTES, placement=owner)
    assert not again.alerts and not again.dead_letters  # scored already: a repeated hand-over changes nothing
