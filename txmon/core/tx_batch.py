"""The binary ``tx_batch`` record: many transactions of one step in one Kafka record, as columns.

A JSON ``tx`` record costs the worker a parse and a pydantic model per transaction and the producer a send per
transaction; per-record Python objects were most of both. A batch frame is decoded with a few ``np.frombuffer``
calls and checked with array comparisons, whatever its length.

Layout (all numbers little-endian)::

    b"TXMB"                     4 bytes, magic (a JSON record starts with "{")
    header length H             uint32
    header                      H bytes of JSON: ``TxBatchHeader`` (schema_version, kind, replay_id, step, count n,
                                edges e), padded with spaces so the columns start 8-byte aligned
    tx_id      int64[n]         the transactions, in any seq order
    seq        int64[n]
    event_time float64[n]
    edge_tx    int64[e]         the edges' other ends (tx id, seq): inputs_from and outputs_to of the rows
    edge_seq   int64[e]
    features   float32[n·165]   row-major
    edge_row   uint32[e]        the row (0..n-1) carrying each edge, non-decreasing
    edge_out   uint8[e]         0: the row's inputs_from, 1: its outputs_to (each row's inputs come first)

Row ``i`` is exactly the JSON record ``TxEvent(replay_id, tx_id[i], step, seq[i], features[i], inputs_from,
outputs_to, event_time[i])``: ``TxColumns.from_events`` and ``events`` convert both ways, field for field.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import Field, ValidationError

from txmon.core.contracts import (
    SCHEMA_VERSION,
    TOPIC_EVENT,
    ReplayId,
    Step,
    TopicRecord,
    TxEvent,
    _Record,
    encode_features,
    validation_reason,
)
from txmon.core.elliptic_format import N_FEATURES

MAGIC = b"TXMB"
_PREFIX = struct.Struct("<4sI")
_ALIGN = 8


class TxBatchHeader(_Record):
    """The JSON header of a binary ``tx_batch`` record (layout: txmon.core.tx_batch): what follows it."""

    kind: Literal["tx_batch"] = Field("tx_batch", description="record kind on the transactions topic")
    replay_id: ReplayId
    step: Step = Field(description="the step of every transaction in the batch")
    count: int = Field(ge=1, description="transactions in the batch (n)")
    edges: int = Field(ge=0, description="edges the batch's transactions carry (e)")


class BatchFormatError(ValueError):
    """A ``tx_batch`` record that cannot be decoded: its header or its columns' lengths are wrong."""


def is_batch(value: bytes) -> bool:
    return value[:4] == MAGIC


@dataclass(frozen=True, eq=False)
class TxColumns:
    """Transactions of one step of one replay as columns (rows in any seq order)."""

    replay_id: str
    step: int
    tx_id: NDArray[np.int64]
    seq: NDArray[np.int64]
    event_time: NDArray[np.float64]
    features: NDArray[np.float32]  # [n, N_FEATURES]
    edge_row: NDArray[np.int64]  # [e], non-decreasing
    edge_out: NDArray[np.bool_]
    edge_tx: NDArray[np.int64]
    edge_seq: NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.tx_id.size)

    @property
    def n_edges(self) -> int:
        return int(self.edge_row.size)

    # -- conversions ----------------------------------------------------------------------------------------------

    @classmethod
    def from_events(cls, events: Sequence[TxEvent]) -> TxColumns:
        """The events, of one replay and step, as columns in their order."""
        if not events:
            raise ValueError("a batch holds at least one transaction")
        first = events[0]
        if any(e.replay_id != first.replay_id or e.step != first.step for e in events):
            raise ValueError("a batch holds the transactions of one replay and step")
        rows, outs, txs, seqs = [], [], [], []
        for i, e in enumerate(events):
            for out, pairs in ((False, e.inputs_from), (True, e.outputs_to)):
                for t, s in pairs:
                    rows.append(i)
                    outs.append(out)
                    txs.append(t)
                    seqs.append(s)
        return cls(first.replay_id, first.step,
                   np.array([e.tx_id for e in events], dtype=np.int64),
                   np.array([e.seq for e in events], dtype=np.int64),
                   np.array([e.event_time for e in events], dtype=np.float64),
                   np.stack([np.asarray(e.features, dtype=np.float32) for e in events]),
                   np.array(rows, dtype=np.int64), np.array(outs, dtype=bool),
                   np.array(txs, dtype=np.int64), np.array(seqs, dtype=np.int64))

    def row_fields(self, i: int) -> dict[str, object]:
        """Row ``i`` as the fields of its ``TxEvent`` (features as the array), unvalidated."""
        lo, hi = np.searchsorted(self.edge_row, [i, i + 1])
        pairs = list(zip(self.edge_tx[lo:hi].tolist(), self.edge_seq[lo:hi].tolist(), strict=True))
        out = self.edge_out[lo:hi].tolist()
        return {"schema_version": SCHEMA_VERSION, "kind": "tx", "replay_id": self.replay_id,
                "tx_id": int(self.tx_id[i]), "step": self.step, "seq": int(self.seq[i]),
                "features": self.features[i],
                "inputs_from": [p for p, o in zip(pairs, out, strict=True) if not o],
                "outputs_to": [p for p, o in zip(pairs, out, strict=True) if o],
                "event_time": float(self.event_time[i])}

    def events(self) -> list[TxEvent]:
        """Every row as its ``TxEvent`` (validated: ValidationError for a row the contract refuses)."""
        return [TxEvent(**self.row_fields(i)) for i in range(len(self))]  # type: ignore[arg-type]

    def row_json(self, i: int) -> str:
        """Row ``i`` as the JSON ``tx`` record it stands for, also when the contract refuses it (a dead letter's
        excerpt)."""
        fields = self.row_fields(i)
        fields["features"] = encode_features(self.features[i])
        return json.dumps(fields, separators=(",", ":"), allow_nan=True)

    def take(self, rows: NDArray[np.int64]) -> TxColumns:
        """These rows (indices, in this order), with their edges."""
        rows = np.asarray(rows, dtype=np.int64)
        counts = np.bincount(self.edge_row, minlength=len(self))[rows]
        starts = np.searchsorted(self.edge_row, rows)
        idx = np.repeat(starts - (np.cumsum(counts) - counts), counts) + np.arange(counts.sum())
        return TxColumns(self.replay_id, self.step, self.tx_id[rows], self.seq[rows], self.event_time[rows],
                         self.features[rows], np.repeat(np.arange(rows.size, dtype=np.int64), counts),
                         self.edge_out[idx], self.edge_tx[idx], self.edge_seq[idx])

    @staticmethod
    def concat(parts: Sequence[TxColumns]) -> TxColumns:
        """The rows of ``parts`` (one replay and step) one after the other."""
        first = parts[0]
        if len(parts) == 1:
            return first
        if any(p.replay_id != first.replay_id or p.step != first.step for p in parts):
            raise ValueError("concatenated batches must be of one replay and step")
        shift = np.cumsum([0] + [len(p) for p in parts[:-1]])
        return TxColumns(first.replay_id, first.step,
                         np.concatenate([p.tx_id for p in parts]), np.concatenate([p.seq for p in parts]),
                         np.concatenate([p.event_time for p in parts]), np.concatenate([p.features for p in parts]),
                         np.concatenate([p.edge_row + s for p, s in zip(parts, shift, strict=True)]),
                         np.concatenate([p.edge_out for p in parts]), np.concatenate([p.edge_tx for p in parts]),
                         np.concatenate([p.edge_seq for p in parts]))

    # -- the wire -------------------------------------------------------------------------------------------------

    def encode(self) -> bytes:
        header = TxBatchHeader(replay_id=self.replay_id, step=self.step, count=len(self),
                               edges=self.n_edges).model_dump_json().encode()
        header += b" " * (-(_PREFIX.size + len(header)) % _ALIGN)
        return b"".join([
            _PREFIX.pack(MAGIC, len(header)), header,
            self.tx_id.astype("<i8").tobytes(), self.seq.astype("<i8").tobytes(),
            self.event_time.astype("<f8").tobytes(), self.edge_tx.astype("<i8").tobytes(),
            self.edge_seq.astype("<i8").tobytes(), np.ascontiguousarray(self.features, dtype="<f4").tobytes(),
            self.edge_row.astype("<u4").tobytes(), self.edge_out.astype("u1").tobytes(),
        ])

    @classmethod
    def decode(cls, value: bytes) -> TxColumns:
        """The frame's columns (views into ``value``); BatchFormatError saying what is wrong with it."""
        if len(value) < _PREFIX.size or not is_batch(value):
            raise BatchFormatError("not a tx_batch record (it does not start with b'TXMB')")
        _, h = _PREFIX.unpack_from(value)
        end = _PREFIX.size + h
        if end > len(value):
            raise BatchFormatError(f"header of {h:,} bytes runs past the record's {len(value):,}")
        try:
            head = TxBatchHeader.model_validate_json(value[_PREFIX.size:end])
        except ValidationError as err:
            raise BatchFormatError(f"header: {validation_reason(err)}") from None
        if head.schema_version != SCHEMA_VERSION:
            raise BatchFormatError(f"header: schema_version {head.schema_version} is not {SCHEMA_VERSION}")
        n, e = head.count, head.edges
        layout = [("<i8", n), ("<i8", n), ("<f8", n), ("<i8", e), ("<i8", e), ("<f4", n * N_FEATURES), ("<u4", e),
                  ("u1", e)]
        expected = end + sum(np.dtype(t).itemsize * k for t, k in layout)
        if len(value) != expected:
            raise BatchFormatError(f"{n:,} transactions and {e:,} edges take {expected - end:,} bytes after the "
                                   f"header, the record has {len(value) - end:,}")
        cols = []
        at = end
        for t, k in layout:
            cols.append(np.frombuffer(value, dtype=t, count=k, offset=at))
            at += np.dtype(t).itemsize * k
        tx_id, seq, event_time, edge_tx, edge_seq, features, edge_row, edge_out = cols
        if e and (edge_row[-1] >= n or (e > 1 and bool((np.diff(edge_row.astype(np.int64)) < 0).any()))):
            raise BatchFormatError("edge_row must be non-decreasing row numbers below the count")
        if e and int(edge_out.max()) > 1:
            raise BatchFormatError("edge_out must be 0 or 1")
        # Read-only views into ``value`` where the wire type is the column's (the processor takes copies of the
        # rows it keeps); only edge_row and edge_out are converted.
        return cls(head.replay_id, head.step, tx_id.astype(np.int64, copy=False), seq.astype(np.int64, copy=False),
                   event_time.astype(np.float64, copy=False),
                   features.reshape(n, N_FEATURES).astype(np.float32, copy=False), edge_row.astype(np.int64),
                   edge_out.astype(bool), edge_tx.astype(np.int64, copy=False), edge_seq.astype(np.int64, copy=False))

    # -- the contract's checks, per row ---------------------------------------------------------------------------

    def problems(self) -> list[tuple[int, str]]:
        """(row, why) for each row the ``TxEvent`` contract refuses (the first problem of each), in row order."""
        why: dict[int, str] = {}

        def flag(bad: NDArray[np.bool_], text: str, values: NDArray | None = None) -> None:
            for i in np.flatnonzero(bad).tolist():
                if i not in why:
                    why[i] = text.format(values[i] if values is not None else None)

        flag(self.tx_id <= 0, "tx_id: Input should be greater than 0, got {}", self.tx_id)
        flag(self.seq < 0, "seq: Input should be greater than or equal to 0, got {}", self.seq)
        finite = np.isfinite(self.features)
        bad_rows = ~finite.all(axis=1)
        if bad_rows.any():
            first_bad = np.argmin(finite, axis=1)
            for i in np.flatnonzero(bad_rows).tolist():
                why.setdefault(i, f"features: feature {int(first_bad[i])} is {self.features[i, first_bad[i]]}")
        if self.n_edges:
            bad_edge = (self.edge_tx <= 0) | (self.edge_seq < 0)
            for k in np.flatnonzero(bad_edge).tolist():
                field = "outputs_to" if self.edge_out[k] else "inputs_from"
                why.setdefault(int(self.edge_row[k]), f"{field}: neighbour ({int(self.edge_tx[k])}, "
                                                      f"{int(self.edge_seq[k])}) needs a tx id > 0 and a seq >= 0")
        return sorted(why.items())


def encode_events(events: Sequence[TxEvent]) -> bytes:
    """The events, of one replay and step, as one ``tx_batch`` record."""
    return TxColumns.from_events(events).encode()


def read_records(value: bytes) -> list[TopicRecord]:
    """A value of the transactions topic as the records it holds: a ``tx_batch`` as its transactions' ``TxEvent``s,
    any other record as itself (BatchFormatError or ValidationError when it is bad)."""
    if is_batch(value):
        return list(TxColumns.decode(value).events())
    return [TOPIC_EVENT.validate_json(value)]


def transactions_in(value: bytes | None) -> int:
    """How many transactions a record of the transactions topic holds, from a ``tx_batch``'s header alone (1 for
    any other record, and for a batch whose header cannot be read: it is dead-lettered as one)."""
    if value is None or not is_batch(value) or len(value) < _PREFIX.size:
        return 1
    _, h = _PREFIX.unpack_from(value)
    try:
        count = json.loads(value[_PREFIX.size:_PREFIX.size + h]).get("count")
    except (ValueError, AttributeError):
        return 1
    return count if isinstance(count, int) and count > 0 else 1
