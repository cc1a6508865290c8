"""What a replay sends, in which order: pure planning, no Kafka.

Within a step, transactions go out in the data set's row order; ``seq`` is the 0-based position
in that order. Every edge travels exactly once, on the event of whichever endpoint goes out
*later*, pointing back at the earlier one with that transaction's ``seq``:

- edge src → dst with dst later: on dst's event as ``inputs_from`` ``(src_id, src_seq)``;
- edge src → dst with src later: on src's event as ``outputs_to`` ``(dst_id, dst_seq)``.

Edges that cannot be expressed this way are skipped and counted, never silently: edges between
two steps (none in Elliptic), self-loops, repeated edges, and edges naming a transaction the data
set does not hold. Labels are never read.

The whole replay range is planned with a handful of numpy passes (a full-size data set plans in
well under a second); the events themselves are built one at a time, just before they are sent,
so ``event_time`` is the send time.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from numpy.typing import NDArray
from pydantic import TypeAdapter

from replay.data.dataset import EllipticDataset
from txmon.core.contracts import SCHEMA_VERSION, ReplayEnd, StepEnd, TxEvent, step_range_error
from txmon.core.elliptic_format import N_FEATURES
from txmon.core.errors import TxmonError
from txmon.core.tx_batch import TxColumns

Clock = Callable[[], float]
ROW_BYTES = 3 * 8 + 4 * N_FEATURES  # tx_id, seq, event_time, features
EDGE_BYTES = 2 * 8 + 4 + 1  # edge_tx, edge_seq, edge_row, edge_out
_FLOAT = TypeAdapter(float)


class PlanError(TxmonError, ValueError):
    """The requested replay cannot be planned (bad step range); the message says why."""


@dataclass(frozen=True)
class SkippedEdges:
    """Edges touching the replayed steps that cannot travel on a transaction event."""

    cross_step: int = 0  # endpoints in different steps
    self_loops: int = 0
    duplicates: int = 0  # the same (src, dst) again: it travels once
    dangling: int = 0  # an endpoint is not in the data set

    @property
    def total(self) -> int:
        return self.cross_step + self.self_loops + self.duplicates + self.dangling

    def describe(self) -> str:
        parts = [(self.cross_step, "cross-step"), (self.self_loops, "self-loop"), (self.duplicates, "duplicate"),
                 (self.dangling, "dangling")]
        return ", ".join(f"{n:,} {name}" for n, name in parts if n) or "none"


@dataclass(frozen=True, eq=False)
class _Neighbours:
    """CSR neighbour lists over the emission positions of a replay (or one step of it)."""

    ptr: NDArray[np.int64]  # [n + 1]
    ids: NDArray[np.int64]
    seqs: NDArray[np.int64]

    def slice(self, start: int, stop: int) -> _Neighbours:
        lo, hi = int(self.ptr[start]), int(self.ptr[stop])
        return _Neighbours(self.ptr[start:stop + 1] - lo, self.ids[lo:hi], self.seqs[lo:hi])

    @cached_property
    def as_lists(self) -> tuple[list[int], list[int], list[int]]:
        return self.ptr.tolist(), self.ids.tolist(), self.seqs.tolist()

    def pairs(self, i: int) -> list[tuple[int, int]]:
        ptr, ids, seqs = self.as_lists
        a, b = ptr[i], ptr[i + 1]
        return list(zip(ids[a:b], seqs[a:b], strict=True))


def stamp(t: float) -> bytes:
    """The end of a ``wire_heads`` record: its event time, written by pydantic's own float serializer (Python's
    repr differs for exponents: 1e-07 against 1e-7)."""
    return _FLOAT.dump_json(t) + b"}"


def _rows_base64(features: NDArray[np.float32]) -> list[str]:
    """Each row's little-endian float32 bytes in base64 (``encode_features``), encoded in one call: a row of
    165 values is 660 bytes, a multiple of 3, so the rows' encodings are consecutive slices of the whole's."""
    raw = np.ascontiguousarray(features, dtype="<f4")
    row = raw.shape[1] * 4
    if row % 3:
        return [base64.b64encode(r.tobytes()).decode("ascii") for r in raw]
    whole = base64.b64encode(raw.tobytes()).decode("ascii")
    width = row // 3 * 4
    return [whole[i * width:(i + 1) * width] for i in range(raw.shape[0])]


@dataclass(frozen=True, eq=False)
class StepPlan:
    """One step of a replay: its transactions in emission order, their back-edges, its end marker."""

    replay_id: str
    step: int
    rows: NDArray[np.int64]  # data set rows, in emission order (seq = position)
    tx_ids: NDArray[np.int64]
    features: NDArray[np.float32]  # [n, 165], emission order
    inputs: _Neighbours
    outputs: _Neighbours
    clock: Clock = field(default=time.time, repr=False)

    @property
    def count(self) -> int:
        return len(self.rows)

    @property
    def n_edges(self) -> int:
        return len(self.inputs.ids) + len(self.outputs.ids)

    def event(self, seq: int) -> TxEvent:
        """The ``seq``-th event of the step, stamped with the clock's time now."""
        return TxEvent(replay_id=self.replay_id, tx_id=int(self.tx_ids[seq]), step=self.step, seq=seq,
                       features=self.features[seq], inputs_from=self.inputs.pairs(seq),
                       outputs_to=self.outputs.pairs(seq), event_time=self.clock())

    def events(self) -> Iterator[TxEvent]:
        for seq in range(self.count):
            yield self.event(seq)

    def wire_heads(self) -> list[bytes]:
        """Every event of the step as its JSON record up to the value of ``event_time``: ``head + stamp(t)`` is
        byte for byte ``event(seq).model_dump_json()`` with that time (tested), built without a model per event
        — the features of the whole step base64-encoded at once — because the producer sends each one.

        PlanError if a feature is not finite (the event model would refuse it)."""
        self.check_features()
        b64 = _rows_base64(self.features)
        prefix = (f'{{"schema_version":{SCHEMA_VERSION},"kind":"tx","replay_id":{json.dumps(self.replay_id)},'
                  f'"tx_id":')
        ip, ii, iseq = self.inputs.as_lists
        op, oi, oseq = self.outputs.as_lists
        heads = []
        for seq, tx_id in enumerate(self.tx_ids.tolist()):
            ins = ",".join(f"[{a},{b}]" for a, b in zip(ii[ip[seq]:ip[seq + 1]], iseq[ip[seq]:ip[seq + 1]],
                                                        strict=True))
            outs = ",".join(f"[{a},{b}]" for a, b in zip(oi[op[seq]:op[seq + 1]], oseq[op[seq]:op[seq + 1]],
                                                         strict=True))
            heads.append(f'{prefix}{tx_id},"step":{self.step},"seq":{seq},"features":"{b64[seq]}",'
                         f'"inputs_from":[{ins}],"outputs_to":[{outs}],"event_time":'.encode())
        return heads

    def check_features(self) -> None:
        """PlanError if a feature is not finite (the event contract refuses it)."""
        bad = np.argwhere(~np.isfinite(self.features))
        if bad.size:
            i, j = (int(v) for v in bad[0])
            raise PlanError(f"tx {int(self.tx_ids[i])} (step {self.step}): feature {j} is {self.features[i, j]}; "
                            f"it cannot be sent")

    def record_sizes(self) -> NDArray[np.int64]:
        """Bytes each transaction takes in a ``tx_batch`` record (its columns), header aside."""
        edges = np.diff(self.inputs.ptr) + np.diff(self.outputs.ptr)
        return ROW_BYTES + EDGE_BYTES * edges

    def columns(self, start: int, stop: int, event_times: NDArray[np.float64]) -> TxColumns:
        """Seqs ``start..stop-1`` as one batch, with these event times: row i is ``event(start + i)``."""
        parts = []
        for out, nb in ((False, self.inputs), (True, self.outputs)):
            sub = nb.slice(start, stop)
            rows = np.repeat(np.arange(stop - start, dtype=np.int64), np.diff(sub.ptr))
            parts.append((rows, np.full(rows.size, out), sub.ids, sub.seqs))
        rows = np.concatenate([p[0] for p in parts])
        order = np.argsort(rows, kind="stable")  # by row; each row's inputs before its outputs
        seqs = np.arange(start, stop, dtype=np.int64)
        return TxColumns(self.replay_id, self.step, self.tx_ids[start:stop].astype(np.int64), seqs,
                         np.asarray(event_times, dtype=np.float64), self.features[start:stop], rows[order],
                         np.concatenate([p[1] for p in parts])[order], np.concatenate([p[2] for p in parts])[order],
                         np.concatenate([p[3] for p in parts])[order])

    def batch_ends(self, max_rows: int, max_bytes: int) -> list[int]:
        """Where the step's ``tx_batch`` records end (exclusive seqs): consecutive seqs, at most ``max_rows`` of
        them and ``max_bytes`` of columns each (a transaction larger than that alone goes alone)."""
        ends = []
        size, rows = 0, 0
        for seq, b in enumerate(self.record_sizes().tolist()):
            if rows and (rows == max_rows or size + b > max_bytes):
                ends.append(seq)
                size, rows = 0, 0
            size += b
            rows += 1
        if rows:
            ends.append(self.count)
        return ends

    def end(self, partitions: int) -> StepEnd:
        return StepEnd(replay_id=self.replay_id, step=self.step, count=self.count, partitions=partitions,
                       event_time=self.clock())


@dataclass(frozen=True, eq=False)
class ReplayPlan:
    """The steps of a replay in order (iterate it), plus what could not be sent."""

    replay_id: str
    first_step: int
    last_step: int
    steps: list[StepPlan]
    skipped: SkippedEdges
    empty_steps: list[int]  # steps inside the range with no transactions: nothing is sent for them
    clock: Clock = field(default=time.time, repr=False)

    def __iter__(self) -> Iterator[StepPlan]:
        return iter(self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def count(self) -> int:
        return sum(s.count for s in self.steps)

    @property
    def n_edges(self) -> int:
        return sum(s.n_edges for s in self.steps)

    def end(self, partitions: int) -> ReplayEnd:
        return ReplayEnd(replay_id=self.replay_id, first_step=self.first_step, last_step=self.last_step,
                         count=self.count, partitions=partitions, event_time=self.clock())

    def warnings(self) -> list[str]:
        out = []
        if self.skipped.total:
            out.append(f"{self.skipped.total:,} edges cannot travel and were skipped ({self.skipped.describe()}); "
                       "only edges between transactions of the same step can be sent")
        if self.empty_steps:
            out.append(f"steps {_ranges(self.empty_steps)} have no transactions and are not sent")
        return out


def resolve_steps(ds: EllipticDataset, first_step: int | None, last_step: int | None) -> tuple[int, int]:
    """The step range to replay (defaults: the data set's first and last step), or PlanError."""
    present = np.unique(ds.steps)
    if present.size == 0:
        raise PlanError("the data set holds no transactions")
    lo, hi = int(present[0]), int(present[-1])
    first = lo if first_step is None else first_step
    last = hi if last_step is None else last_step
    for name, s in (("first step", first), ("last step", last)):
        if (why := step_range_error(s, name)) is not None:
            raise PlanError(why)
    if first > last:
        raise PlanError(f"first step {first} is after last step {last}")
    held = f"the data set holds steps {_ranges(present.tolist())}"
    for name, s in (("first step", first), ("last step", last)):
        if s not in present:
            raise PlanError(f"{name} {s} has no transactions ({held})")
    return first, last


def plan_replay(ds: EllipticDataset, first_step: int | None = None, last_step: int | None = None,
                replay_id: str = "replay", clock: Clock = time.time) -> ReplayPlan:
    """Plan the replay of steps ``first_step..last_step`` (default: all steps in the data set)."""
    first, last = resolve_steps(ds, first_step, last_step)
    steps = np.asarray(ds.steps, dtype=np.int64)
    n = len(steps)

    # Emission order: by step, data set row order within a step (stable sort).
    in_range = (steps >= first) & (steps <= last)
    sel = np.flatnonzero(in_range)
    order = sel[np.argsort(steps[sel], kind="stable")]  # order[pos] = row
    sizes = np.bincount(steps[order] - first, minlength=last - first + 1)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    pos_of_row = np.full(n, -1, dtype=np.int64)
    pos_of_row[order] = np.arange(len(order))
    seq_of_row = np.full(n, -1, dtype=np.int64)
    seq_of_row[order] = np.arange(len(order)) - np.repeat(starts[:-1], sizes)

    # Edges as rows; edges naming an unknown transaction are counted, then dropped.
    src_ids, dst_ids = ds.edges[:, 0], ds.edges[:, 1]
    (known_s, src), (known_d, dst) = ds.index.find(src_ids), ds.index.find(dst_ids)
    known = known_s & known_d
    touches_s = known_s & in_range[np.maximum(src, 0)]
    touches_d = known_d & in_range[np.maximum(dst, 0)]
    dangling = int(np.sum(~known & (touches_s | touches_d | (~known_s & ~known_d))))
    touches = known & (touches_s | touches_d)
    src, dst = src[touches], dst[touches]

    self_loop = src == dst
    cross = ~self_loop & (steps[src] != steps[dst])
    ok = ~self_loop & ~cross
    src, dst = src[ok], dst[ok]
    uniq = np.unique(src * n + dst, return_index=True)[1] if len(src) else np.zeros(0, dtype=np.int64)
    duplicates = len(src) - len(uniq)
    keep = np.sort(uniq)
    src, dst = src[keep], dst[keep]

    # Each edge rides on its later endpoint, pointing at the earlier one.
    dst_later = seq_of_row[dst] > seq_of_row[src]
    inputs = _csr(pos_of_row[dst[dst_later]], src[dst_later], len(order), ds.tx_ids, seq_of_row)
    outputs = _csr(pos_of_row[src[~dst_later]], dst[~dst_later], len(order), ds.tx_ids, seq_of_row)

    features = ds.features
    plans = []
    empty = []
    for k, step in enumerate(range(first, last + 1)):
        a, b = int(starts[k]), int(starts[k + 1])
        if a == b:
            empty.append(step)
            continue
        rows = order[a:b]
        plans.append(StepPlan(replay_id=replay_id, step=step, rows=rows, tx_ids=ds.tx_ids[rows],
                              features=_rows(features, rows), inputs=inputs.slice(a, b),
                              outputs=outputs.slice(a, b), clock=clock))
    skipped = SkippedEdges(cross_step=int(cross.sum()), self_loops=int(self_loop.sum()), duplicates=duplicates,
                           dangling=dangling)
    return ReplayPlan(replay_id=replay_id, first_step=first, last_step=last, steps=plans, skipped=skipped,
                      empty_steps=empty, clock=clock)


def _csr(owner_pos: NDArray[np.int64], nbr_rows: NDArray[np.int64], n: int, tx_ids: NDArray[np.int64],
         seq_of_row: NDArray[np.int64]) -> _Neighbours:
    nbr_seq = seq_of_row[nbr_rows]
    idx = np.lexsort((nbr_seq, owner_pos))  # by owner, then the neighbour's seq
    ptr = np.concatenate([[0], np.cumsum(np.bincount(owner_pos, minlength=n))]).astype(np.int64)
    return _Neighbours(ptr, tx_ids[nbr_rows[idx]].astype(np.int64), nbr_seq[idx])


def _rows(features: NDArray[np.float32], rows: NDArray[np.int64]) -> NDArray[np.float32]:
    """The step's feature rows: a view when they are contiguous (the usual layout), else a copy."""
    if len(rows) and rows[-1] - rows[0] == len(rows) - 1 and np.all(np.diff(rows) == 1):
        return features[rows[0]:rows[-1] + 1]
    return features[rows]


def _ranges(values: list[int]) -> str:
    """[1, 2, 3, 7, 9, 10] → '1..3, 7, 9..10'."""
    runs: list[tuple[int, int]] = []
    for v in values:
        if runs and runs[-1][1] == v - 1:
            runs[-1] = (runs[-1][0], v)
        else:
            runs.append((v, v))
    return ", ".join(f"{a}" if a == b else f"{a}..{b}" for a, b in runs)


__all__ = ["PlanError", "ReplayPlan", "SkippedEdges", "StepPlan", "plan_replay", "resolve_steps"]
