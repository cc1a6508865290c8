"""The binary ``tx_batch`` record: every field of every transaction round-trips exactly; a bad frame is refused
with a reason; the contract's per-row checks name the row and the field."""

from __future__ import annotations

import json

import numpy as np
import pytest

from txmon.core.contracts import SCHEMA_VERSION, TxEvent
from txmon.core.elliptic_format import N_FEATURES
from txmon.core.tx_batch import MAGIC, BatchFormatError, TxColumns, encode_events, is_batch, read_records


def _events(n: int = 6, replay_id: str = "r-1.x", step: int = 7, seed: int = 0) -> list[TxEvent]:
    rng = np.random.default_rng(seed)
    out = []
    for i, seq in enumerate(rng.permutation(np.arange(3, 3 + n))):  # any seq order
        seq = int(seq)
        earlier = [(int(rng.integers(1, 2**63 - 1)), int(s)) for s in rng.choice(seq, size=min(seq, i % 4),
                                                                                  replace=False)]
        feats = rng.normal(size=N_FEATURES).astype(np.float32)
        feats[0] = np.float32(1e-42)  # subnormal, exact bits matter
        out.append(TxEvent(replay_id=replay_id, tx_id=2**63 - 1 - i if i % 2 else i + 1, step=step, seq=seq,
                           features=feats, inputs_from=earlier[: len(earlier) // 2],
                           outputs_to=earlier[len(earlier) // 2:],
                           event_time=1_733_000_000.123456789 + i * 1e-7))
    return out


def _json(events: list) -> list[str]:
    """Events as their JSON records (a TxEvent holds an array: == cannot compare them)."""
    return [e.model_dump_json() for e in events]


def test_every_field_round_trips_exactly() -> None:
    events = _events(40)
    value = encode_events(events)
    assert is_batch(value) and value.startswith(MAGIC)
    back = read_records(value)
    assert len(back) == len(events)
    for a, b in zip(events, back, strict=True):
        assert isinstance(b, TxEvent)
        assert a.model_dump(exclude={"features"}) == b.model_dump(exclude={"features"})  # ints, floats, edge order
        assert a.features.tobytes() == b.features.tobytes()  # bit for bit
        assert a.model_dump_json() == b.model_dump_json()


def test_events_without_edges_and_a_single_row_round_trip() -> None:
    one = TxEvent(replay_id="r", tx_id=1, step=1, seq=0, features=np.zeros(N_FEATURES, np.float32), event_time=0.5)
    assert _json(read_records(encode_events([one]))) == _json([one])


def test_columns_start_aligned_and_the_header_is_readable_json() -> None:
    value = encode_events(_events(3, replay_id="a" * 37))
    h = int.from_bytes(value[4:8], "little")
    assert (8 + h) % 8 == 0
    header = json.loads(value[8:8 + h])
    assert header == {"schema_version": SCHEMA_VERSION, "kind": "tx_batch", "replay_id": "a" * 37, "step": 7,
                      "count": 3, "edges": header["edges"]}


def test_take_and_concat_keep_each_rows_edges() -> None:
    events = _events(12)
    cols = TxColumns.from_events(events)
    picked = cols.take(np.array([5, 0, 11, 3]))
    assert _json(picked.events()) == _json([events[i] for i in (5, 0, 11, 3)])
    joined = TxColumns.concat([cols.take(np.arange(4)), cols.take(np.arange(4, 12))])
    assert _json(joined.events()) == _json(events)
    assert cols.take(np.array([], dtype=np.int64)).events() == []


def test_a_rows_json_is_the_tx_record_it_stands_for() -> None:
    events = _events(5)
    cols = TxColumns.from_events(events)
    for i, e in enumerate(events):
        assert json.loads(cols.row_json(i)) == json.loads(e.model_dump_json())


def _frame(**header_changes: object) -> bytes:
    value = encode_events(_events(3))
    h = int.from_bytes(value[4:8], "little")
    header = {**json.loads(value[8:8 + h]), **header_changes}
    text = json.dumps(header).encode()
    return MAGIC + len(text).to_bytes(4, "little") + text + value[8 + h:]


GOOD = encode_events(_events(3))
H = int.from_bytes(GOOD[4:8], "little")
BAD_FRAMES = {
    "no magic": (b"TXMA" + GOOD[4:], "does not start with b'TXMB'"),
    "too short": (MAGIC + b"\x01", "does not start"),
    "header past the end": (MAGIC + (10**6).to_bytes(4, "little") + b"{}", "runs past the record"),
    "header not JSON": (MAGIC + (3).to_bytes(4, "little") + b"abc", "header: Invalid JSON"),
    "unknown header field": (_frame(label=1), "header: label: Extra inputs"),
    "step 0": (_frame(step=0), "header: step: Input should be greater than or equal to 1"),
    "count 0": (_frame(count=0), "header: count"),
    "an old schema version": (_frame(schema_version=4), "schema_version 4 is not"),
    "count larger than the columns": (_frame(count=4), "4 transactions and"),
    "a byte missing": (GOOD[:-1], "the record has"),
    "a byte too many": (GOOD + b"\x00", "the record has"),
}


@pytest.mark.parametrize("name", list(BAD_FRAMES))
def test_a_bad_frame_is_refused_with_what_is_wrong(name: str) -> None:
    value, fragment = BAD_FRAMES[name]
    with pytest.raises(BatchFormatError) as e:
        TxColumns.decode(value)
    assert fragment in str(e.value), str(e.value)


def _cols(**changes: np.ndarray) -> TxColumns:
    cols = TxColumns.from_events(_events(4))
    fields = {k: getattr(cols, k).copy() for k in ("tx_id", "seq", "event_time", "features", "edge_row", "edge_out",
                                                   "edge_tx", "edge_seq")}
    for k, v in changes.items():
        fields[k][v[0]] = v[1]
    return TxColumns(cols.replay_id, cols.step, **fields)  # type: ignore[arg-type]


def test_edge_rows_out_of_order_or_range_are_a_format_error() -> None:
    cols = TxColumns.from_events(_events(8))
    assert cols.n_edges > 2
    beyond = cols.take(np.arange(len(cols)))
    beyond.edge_row[-1] = len(cols)
    with pytest.raises(BatchFormatError, match="edge_row"):
        TxColumns.decode(beyond.encode())
    value = bytearray(cols.encode())
    value[-1] = 2  # the last edge's edge_out, the record's last byte
    with pytest.raises(BatchFormatError, match="edge_out must be 0 or 1"):
        TxColumns.decode(bytes(value))
    rev = cols.take(np.arange(len(cols)))
    rev.edge_row[:] = rev.edge_row[::-1].copy()
    with pytest.raises(BatchFormatError, match="non-decreasing"):
        TxColumns.decode(rev.encode())


def test_the_contracts_row_checks_name_the_row_and_the_field() -> None:
    cols = _cols(tx_id=(1, 0), seq=(2, -1))
    cols.features[3, 17] = np.nan
    assert cols.problems() == [(1, "tx_id: Input should be greater than 0, got 0"),
                               (2, "seq: Input should be greater than or equal to 0, got -1"),
                               (3, "features: feature 17 is nan")]
    edged = TxColumns.from_events(_events(8))
    k = int(np.flatnonzero(~edged.edge_out)[0])
    edged.edge_tx[k] = 0
    (row, why), = edged.problems()
    assert row == int(edged.edge_row[k]) and why.startswith("inputs_from: neighbour (0,")
    assert TxColumns.from_events(_events(8)).problems() == []
