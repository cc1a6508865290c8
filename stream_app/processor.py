"""The worker's core, Kafka-free: micro-batches of transactions in, alerts and step statistics out.

Per micro-batch and step, the round trips are: write + read back the step graph (one pipeline: the
batch's Lua write, then GET of the seen/scored bitmaps and the edge log); the records of neighbours
not in this worker's cache (only with several workers); store the arrival scores; claim alert ids
(only when there are alerts). Everything per event is numpy; the GCN runs once per arrival window
that the batch completes (see ARRIVAL_WINDOW).

Called by a worker, with a ``Handover``, a batch that completes windows of a step owned by another worker's
partition, or a step's last step_end, hands the work over (stream_app.placement); called directly, without
one, it does all the work itself.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import replace
from itertools import groupby
from typing import cast

import numpy as np
import redis
import torch
from numpy.typing import NDArray
from scipy import sparse

from model_store.arrival import arrival_view
from stream_app.alerts import Candidate, claim
from stream_app.claims import Origin, claim_windows
from stream_app.fit_pool import FitPool
from stream_app.graph_store import CACHE_BYTES, FeatureCache, GraphStore, NodeBatch, StepGraph
from stream_app.keys import SEQ_BITS, ReplayKeys, StepKeys
from stream_app.placement import Handover
from stream_app.retention import is_pruned
from stream_app.scorer import LoadedModel, Scored, score_rows, top_neighbours
from stream_app.state import check_instance, instance_token
from stream_app.step_close import (
    StepResult,
    add_partition,
    claim_finalisation,
    finalise,
    mark_finalised,
    record_step_end,
    unfinished_earlier_steps,
)
from txmon.core.contracts import ARRIVAL_WINDOW, Alert, StepReady, TxEvent, WindowsReady, check_replay_id
from txmon.core.elliptic_format import STEP_MAX
from txmon.core.errors import TxmonError
from txmon.core.tx_batch import TxColumns

log = logging.getLogger(__name__)

MAX_SEQ = 1 << SEQ_BITS  # bounds a step's bitmaps (128 KiB) and record chunks; Elliptic's largest step has 8k
MAX_TX_ID = (1 << 63) - 1
# Arrival scores are computed per window of ARRIVAL_WINDOW consecutive seqs of a step, once every seq of
# the window and before it has arrived, on exactly those nodes (the step's last window: at step close).
# So an arrival score is a function of the data and the model alone — the same whatever the batching,
# the partitions' interleaving or the number of workers — and replays are repeatable. The price is the
# time the window takes to fill: 256 transactions, ~50 ms at 5,000 tx/s.


class MarkerRefused(TxmonError, ValueError):
    """A step_end or replay_end that contradicts its replay: dead-lettered, and it changes nothing."""


class Processor:
    """Stateless between calls apart from a feature cache: any worker can process any event or step close.

    window: steps in the rolling densification fit; window_size: transactions per arrival window (below);
    close_lease_s: how long a finalisation claim
    holds before another worker may take over; cache_bytes: the feature cache's bound (FeatureCache);
    torch_threads: intra-op threads for the process (None leaves torch's setting) — one, because a
    batch's GCN is small and extra threads on 2 shared cores cost more in wake-ups than they save
    (measured: a 200x165 linear layer took 13 ms with 2 threads on a busy machine, 0.02 ms with 1);
    fit_pool: a process for the step closes' degree fits (stream_app.fit_pool; None: fitted in this one).
    """

    def __init__(self, client: redis.Redis, model: LoadedModel, *, window: int = 10, close_lease_s: float = 60.0,
                 cache_bytes: int = CACHE_BYTES, torch_threads: int | None = 1, window_size: int = ARRIVAL_WINDOW,
                 fit_pool: FitPool | None = None) -> None:
        if torch_threads is not None:
            torch.set_num_threads(torch_threads)
        self.redis = client
        self.model = model
        self.store = GraphStore(client)
        self.cache = FeatureCache(model.n_features, cache_bytes)
        self.window = window
        self.window_size = window_size
        self.close_lease_s = close_lease_s
        self.fit_pool = fit_pool
        self.instance = instance_token(client)
        self._writes: int | None = None  # txm:writes as this processor last saw it
        self._pruned: set[str] = set()
        self._not_pruned: dict[str, float] = {}  # replay id -> until when "not pruned" is believed

    def step_end_offsets(self, steps: list[tuple[str, int]], partition: int) -> dict[tuple[str, int], int]:
        """The offset of ``partition``'s step_end for each of ``steps`` that has passed it (one round trip): records
        after it are late."""
        if not steps:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        for replay_id, step in steps:
            pipe.hget(ReplayKeys(replay_id).markers, f"{step}:{partition}")
        return {k: int(v) for k, v in zip(steps, pipe.execute(), strict=True) if v is not None}

    def refuse_if_pruned(self, replay_id: str) -> None:
        """MarkerRefused when the replay's graph was pruned: its steps are closed and their inputs gone."""
        if self.pruned(replay_id):
            raise MarkerRefused(_pruned(replay_id))

    def pruned(self, replay_id: str) -> bool:
        """Whether the replay's graph was pruned (stream_app.retention); "no" is remembered for a second."""
        if replay_id in self._pruned:
            return True
        now = time.monotonic()
        if self._not_pruned.get(replay_id, 0.0) > now:
            return False
        if is_pruned(self.redis, replay_id):
            self._pruned.add(replay_id)
            return True
        self._not_pruned[replay_id] = now + 1.0
        return False

    def check_state(self) -> None:
        """StateLost if Redis lost the state this processor has been writing, or its latest writes
        (stream_app.state)."""
        self._writes = check_instance(self.redis, self.instance, self._writes)

    @staticmethod
    def check(event: TxEvent) -> str | None:
        """Why the worker cannot take this event (the agent dead-letters it), or None."""
        if reason := step_problem(event.replay_id, event.step):
            return reason
        if event.seq >= MAX_SEQ:
            return _seq_beyond(event.seq)
        if event.tx_id > MAX_TX_ID:  # stored as int64
            return f"tx id {event.tx_id} does not fit in 64 bits"
        if not math.isfinite(event.event_time):
            return _not_finite(event.event_time)
        for _, s in event.inputs_from + event.outputs_to:
            if not 0 <= s < event.seq:  # the contract: edges travel with the later of their two transactions
                return _not_earlier(s, event.seq)
        return None

    @staticmethod
    def check_columns(cols: TxColumns) -> list[tuple[int, str]]:
        """``check`` for a batch's rows, as arrays: (row, why) for each row the worker cannot take, in row order.
        The batch's replay id and step are the caller's to check (``step_problem``: the whole record goes with
        them); its tx ids are int64 already."""
        why: dict[int, str] = {}
        for i in np.flatnonzero(cols.seq >= MAX_SEQ).tolist():
            why[i] = _seq_beyond(int(cols.seq[i]))
        for i in np.flatnonzero(~np.isfinite(cols.event_time)).tolist():
            why.setdefault(i, _not_finite(float(cols.event_time[i])))
        if cols.n_edges:
            own = cols.seq[cols.edge_row]
            for k in np.flatnonzero((cols.edge_seq < 0) | (cols.edge_seq >= own)).tolist():
                why.setdefault(int(cols.edge_row[k]), _not_earlier(int(cols.edge_seq[k]), int(own[k])))
        return sorted(why.items())

    # -- arrival --------------------------------------------------------------------------------------------------

    def process_batch(self, events: list[TxEvent], *, checked: bool = False, origin: Origin | None = None,
                      offsets: list[int] | None = None, rejects: list[tuple[TxEvent, str]] | None = None,
                      late: set[int] | None = None, handover: Handover | None = None) -> list[Alert]:
        """Write the batch to Redis, score the arrival windows it completes, return the arrival alerts: the events
        grouped by replay and step, each group through ``process_columns``.

        checked: the caller already ran ``check`` on every event.
        origin, offsets: the consumed records the events came from (one offset per event), whose claims a
        retry owns (stream_app.claims); default: a direct call, owning only what it claims itself.
        rejects: receives (event, reason) for events that contradict the step (``process_columns``).
        late: ids (``id(event)``) of events whose record came after their partition's step_end for their step.
        handover: completed windows of steps its placement does not hold go there (as ``windows_ready``), not scored.
        """
        origin = origin or Origin.direct()
        at = offsets if offsets is not None else [origin.last] * len(events)
        good = []
        for e, offset in zip(events, at, strict=True):
            reason = None if checked else self.check(e)
            if reason:
                log.warning("skipping tx %s of replay %r: %s", e.tx_id, e.replay_id, reason)
            else:
                good.append((e, offset))
        good.sort(key=lambda eo: (eo[0].replay_id, eo[0].step))
        alerts: list[Alert] = []
        for _, group in groupby(good, key=lambda eo: (eo[0].replay_id, eo[0].step)):
            step_events, step_offsets = zip(*group, strict=True)
            was_late = np.array([id(e) in (late or set()) for e in step_events], dtype=bool)
            found, refused = self.process_columns(TxColumns.from_events(step_events),
                                                  np.array(step_offsets, dtype=np.int64), origin=origin,
                                                  late=was_late, handover=handover)
            alerts += found
            if rejects is not None:
                rejects += [(step_events[i], why) for i, why in refused]
        return alerts

    def process_columns(self, cols: TxColumns, offsets: NDArray[np.int64], *, origin: Origin | None = None,
                        late: NDArray[np.bool_] | None = None,
                        handover: Handover | None = None) -> tuple[list[Alert], list[tuple[int, str]]]:
        """Write one step's transactions to Redis, score the arrival windows they complete; return the arrival
        alerts and (row, reason) for the rows refused because they contradict the step (a seq already holding
        another transaction or other features, or a late row whose seq had not arrived): nothing of them is
        written. The rows must pass ``check_columns``.

        offsets: each row's record offset in ``origin``; late: the rows whose record came after their partition's
        step_end for the step."""
        origin = origin or Origin.direct()
        if self.pruned(cols.replay_id):
            return [], [(i, _pruned(cols.replay_id)) for i in range(len(cols))]
        # The step's windows this batch completes are caused by its last record of the step: a retry
        # holding that record holds some of the step's events too, so it passes here and re-owns them.
        cause = origin.cause(int(offsets.max()))
        late = late if late is not None else np.zeros(len(cols), dtype=bool)
        return self._process_step(StepKeys(cols.replay_id, cols.step), cols, origin, cause, late, handover)

    def _process_step(self, keys: StepKeys, cols: TxColumns, origin: Origin, cause: bytes, late: NDArray[np.bool_],
                      handover: Handover | None) -> tuple[list[Alert], list[tuple[int, str]]]:
        rejects: list[tuple[int, str]] = []
        # The same seq twice in a batch: a redelivery (kept once), or a conflict with the first (refused).
        order = np.argsort(cols.seq, kind="stable")
        sorted_seqs = cols.seq[order]
        first = np.r_[True, sorted_seqs[1:] != sorted_seqs[:-1]]
        keep = order[first]
        if not first.all():
            dups = order[~first]
            orig = keep[np.searchsorted(cols.seq[keep], cols.seq[dups])]
            same = (cols.tx_id[dups] == cols.tx_id[orig]) & (cols.features[dups] == cols.features[orig]).all(axis=1)
            rejects += [(int(i), _conflict(keys, int(cols.seq[i]))) for i in np.sort(dups[~same])]
        batch = NodeBatch.from_columns(cols.take(keep))
        graph, conflicts, refused = self.store.write_batch(keys, batch, batch.seqs[late[keep]])
        ok = ~np.isin(batch.seqs, np.r_[conflicts, refused])
        if not ok.all():
            row_of = dict(zip(batch.seqs.tolist(), keep.tolist(), strict=True))
            rejects += [(row_of[int(s)], _conflict(keys, int(s))) for s in conflicts]
            rejects += [(row_of[int(s)], f"seq {int(s)} of step {keys.step} of replay {keys.replay_id} came after "
                                         f"its partition's step_end for the step, which may have closed without "
                                         f"it: not written") for s in refused]
        self.cache.put(keys, batch.seqs[ok], self.model.scale(batch.records["features"][ok]), batch.records[ok])
        n_windows = self._complete_windows(graph)
        new = np.flatnonzero(graph.seen[:n_windows * self.window_size] & ~graph.scored[:n_windows * self.window_size])
        if handover is not None and not handover.placement.holds(keys.replay_id, keys.step):
            self._hand_over(keys, new, origin, cause, handover)
            return [], rejects
        return self._score_arrivals(keys, graph, new, n_windows, origin, cause), rejects

    def _complete_windows(self, graph: StepGraph) -> int:
        """How many of the step's first windows have every seq arrived (here or on another worker): their
        graph is final."""
        unseen = np.flatnonzero(~graph.seen)
        prefix = int(unseen[0]) if unseen.size else graph.size
        return prefix // self.window_size

    def _hand_over(self, keys: StepKeys, new: NDArray[np.int64], origin: Origin, cause: bytes,
                   handover: Handover) -> None:
        """Claim the complete windows of ``new`` for ``cause`` and hand over every window ``origin`` claimed
        (these, and an earlier try's) to the step's owning partition, as one ``windows_ready`` record."""
        new_windows = [int(w) for w in np.unique(new // self.window_size)]
        owned = claim_windows(self.redis, keys, new_windows, cause, origin, keys.handed)
        if owned:
            handover.records.append(WindowsReady(replay_id=keys.replay_id, step=keys.step, windows=sorted(owned),
                                                 event_time=time.time()))

    def on_windows_ready(self, replay_id: str, step: int, windows: list[int], origin: Origin,
                         offset: int) -> list[Alert]:
        """Score the handed-over ``windows`` of the step that are not scored yet (the record at ``offset`` of
        ``origin`` claims them), and any window an earlier try of ``origin`` claimed; return the arrival alerts.
        MarkerRefused when the replay's graph was pruned."""
        self.refuse_if_pruned(replay_id)
        keys = StepKeys(replay_id, step)
        graph = self.store.read_graph(keys)
        arrived = np.flatnonzero(graph.seen & ~graph.scored)
        new = arrived[np.isin(arrived // self.window_size, windows)]
        return self._score_arrivals(keys, graph, new, self._complete_windows(graph), origin, origin.cause(offset))

    def _score_arrivals(self, keys: StepKeys, graph: StepGraph, new: NDArray[np.int64], n_windows: int,
                        origin: Origin, cause: bytes) -> list[Alert]:
        """Arrival scores of the windows below ``n_windows`` that ``origin`` owns: those of ``new`` (not scored
        yet), claimed here for ``cause``, and those an earlier try of its records claimed. A node of window w is
        scored on the step's arrived nodes with seq < (w + 1) * window_size. Store the scores; claim the alerts."""
        owned = claim_windows(self.redis, keys, [int(w) for w in np.unique(new // self.window_size)], cause, origin)
        done = origin.scored.setdefault(keys, set())
        windows = [w for w in owned if w < n_windows and w not in done]  # not twice in one try
        done.update(windows)
        arrived = np.flatnonzero(graph.seen)  # in proportion to the nodes, not to the largest seq named
        todo = arrived[np.isin(arrived // self.window_size, windows)]
        if todo.size == 0:
            return []
        model = self.model.on_arrival
        adj = graph.adjacency()
        probs = np.zeros(todo.size)
        outputs = []  # (indices into todo, scored, the ball's seqs, their rows in it)
        for w in np.unique(todo // self.window_size):
            sel = np.flatnonzero(todo // self.window_size == w)
            scored, nodes, at = self._score_window(keys, arrival_view(adj, int(w), self.window_size), todo[sel])
            probs[sel] = scored.probs[at]
            outputs.append((sel, scored, nodes, at))
        probs = probs.astype(np.float32).astype(np.float64)  # as stored: step close re-reads it
        self.store.store_arrival(keys, todo, probs)  # the same scores on a retry: the window's graph is final
        alerting = probs >= model.threshold
        candidates = []
        for sel, scored, nodes, at in outputs:
            hit = alerting[sel]
            if not hit.any():
                continue
            meta = self.cache.get(keys, todo[sel[hit]])[1]
            explained = top_neighbours(model, scored, at[hit])
            # one cache lookup for every alert's neighbours: a call per alert cost more than the lookup
            nb_ids = iter(self.cache.get(keys, nodes[[j for nbs in explained for j, _ in nbs]])[1]["tx_id"].tolist())
            for i, m, nbs in zip(sel[hit], meta, explained, strict=True):
                candidates.append(Candidate(
                    kind="arrival", tx_id=int(m["tx_id"]), step=keys.step, arrival_score=float(probs[i]),
                    final_score=None, event_time=float(m["event_time"]),
                    neighbours=[(next(nb_ids), wt) for _, wt in nbs]))
        return claim(self.redis, keys.replay_id, candidates, model.threshold, model.version, origin, cause)

    def _score_window(self, keys: StepKeys, view: sparse.csr_matrix,
                      todo: NDArray[np.int64]) -> tuple[Scored, NDArray[np.int64], NDArray[np.int64]]:
        """The arrival model at ``todo`` in its arrival view: (its outputs, the seqs they are on, todo's rows)."""

        def features(seqs: NDArray[np.int64]) -> NDArray[np.float32]:
            missing = self.cache.missing(keys, seqs)
            if missing.size:  # other workers' nodes
                rec = self.store.read_records(keys, missing)
                self.cache.put(keys, missing, self.model.scale(rec["features"]), rec)
            return self.cache.get(keys, seqs)[0]

        scored, nodes = score_rows(self.model.on_arrival, view, todo, features)
        return scored, nodes, np.searchsorted(nodes, todo)

    # -- step close -----------------------------------------------------------------------------------------------

    def declare(self, replay_id: str, n_partitions: int, step: int | None = None, count: int | None = None) -> None:
        """MarkerRefused if a marker's partition count (or its step's transaction count) disagrees with what the
        replay's first markers declared: one round trip."""
        rk = ReplayKeys(replay_id)
        fields = {"partitions": n_partitions} | ({f"count:{step}": count} if step is not None and count is not None
                                                   else {})
        pipe = self.redis.pipeline(transaction=False)
        for f, v in fields.items():
            pipe.hsetnx(rk.declared, f, v)
        pipe.hmget(rk.declared, list(fields))
        declared = pipe.execute()[-1]
        for (f, v), d in zip(fields.items(), declared, strict=True):
            if int(d) != v:
                what = "partitions" if f == "partitions" else f"transactions in step {step}"
                raise MarkerRefused(f"the marker says {v} {what}, but replay {replay_id} declared {int(d)}")

    def on_replay_end(self, replay_id: str, partition: int, n_partitions: int, last_step: int) -> bool:
        """Record that ``partition`` has passed replay_end (everything before it is processed); True once the
        replay is done (``replay_done``)."""
        self.redis.hsetnx(ReplayKeys(replay_id).declared, "last_step", last_step)
        add_partition(self.redis, ReplayKeys(replay_id).replay_end, partition, n_partitions)
        return self.replay_done(replay_id)

    def replay_done(self, replay_id: str) -> bool:
        """Whether every partition has passed the replay's replay_end and every step of it is closed — what
        ``txmon replay`` waits for, never consumer lag. A step's close can come after the last replay_end (it is
        handed over to the step's partition), so both the last replay_end and every close ask."""
        rk = ReplayKeys(replay_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hmget(rk.declared, ["partitions", "last_step"])
        pipe.scard(rk.replay_end)
        (partitions, last_step), ended = pipe.execute()
        if partitions is None or last_step is None or ended < int(partitions):
            return False
        return not unfinished_earlier_steps(self.redis, replay_id, int(last_step) + 1)

    def on_step_end(self, replay_id: str, step: int, partition: int, n_partitions: int,
                    origin: Origin | None = None, offset: int | None = None,
                    count: int | None = None, handover: Handover | None = None) -> StepResult | None:
        """Record the partition's step_end; if the set is complete, close the step here (``close_step``), or —
        given a ``handover`` whose placement does not hold the step's owning partition, or while a window of the
        step is being scored for another record — hand the close over as a ``step_ready`` record.

        origin, offset: the consumed record (default: a direct call); count: the transactions the marker says the
        step has. MarkerRefused for a marker that contradicts the replay (its partition or transaction count),
        or that completes a step none of whose transactions has arrived (premature, or of a replay that never
        started): no statistics come of it. The caller must have processed every event it read before the
        marker (flush the micro-batch first).
        """
        check_replay_id(replay_id)
        self.refuse_if_pruned(replay_id)
        self.declare(replay_id, n_partitions, step, count)
        if offset is not None:
            self.redis.hsetnx(ReplayKeys(replay_id).markers, f"{step}:{partition}", offset)
        origin = origin or Origin.direct()
        if not record_step_end(self.redis, replay_id, step, partition, n_partitions):
            return None
        if count and not self.redis.bitcount(StepKeys(replay_id, step).seen):
            raise MarkerRefused(f"step_end completes step {step} of replay {replay_id}, but none of its {count} "
                                f"transactions has arrived")
        if handover is not None and (not handover.placement.holds(replay_id, step)
                                     or self._scored_elsewhere(StepKeys(replay_id, step), origin)):
            handover.records.append(StepReady(replay_id=replay_id, step=step, count=count or 0,
                                              event_time=time.time()))
            return None
        return self.close_step(replay_id, step, origin, origin.last if offset is None else offset, count)

    def _scored_elsewhere(self, keys: StepKeys, origin: Origin) -> bool:
        """Whether a window of the step is claimed for scoring by another record and not stored yet: a worker
        died between the two, and its record (on the step's owning partition) will be processed again. The
        close must come after that, so it goes through the owning partition too."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(keys.windows)
        pipe.get(keys.seen)
        pipe.get(keys.scored)
        claims, seen, scored = cast("tuple[dict[bytes, bytes], bytes | None, bytes | None]", pipe.execute())
        graph = StepGraph.decode(seen, scored, None)  # the bitmaps are enough: one round trip, no edge log
        unscored = np.unique(np.flatnonzero(graph.seen & ~graph.scored) // self.window_size)
        return any(int(w) in unscored and not origin.owns(c) for w, c in claims.items())

    def close_step(self, replay_id: str, step: int, origin: Origin, offset: int,
                   count: int | None = None) -> StepResult | None:
        """Finalise the step if ``origin`` owns its close: the record at ``offset`` claims it, or an earlier try of
        ``origin`` did (stream_app.claims); None when the close is another record's (done, or running elsewhere).
        Every partition must have passed the step's step_end. MarkerRefused when the replay's graph was pruned.
        A try closes a step once, however many of its records ask (a step_ready written twice)."""
        self.refuse_if_pruned(replay_id)
        if (replay_id, step) in origin.closed:
            return None
        cause = origin.cause(offset)
        if not claim_finalisation(self.redis, replay_id, step, self.close_lease_s, origin, cause):
            return None  # another step_end's: done, or another worker is on it
        origin.closed.add((replay_id, step))
        # Earlier steps still being closed elsewhere: their counts from their graphs (complete by now).
        unfinished = {}
        for s in unfinished_earlier_steps(self.redis, replay_id, step):
            g = self.store.read_graph(StepKeys(replay_id, s))
            unfinished[s] = (int(g.seen.sum()), int(g.arrived_edges().shape[0]))
        keys = StepKeys(replay_id, step)
        # Every event of the step has arrived: the last, partly filled window (and any window a missing
        # seq kept open) gets its arrival scores now, by the same rule, before the final re-scoring.
        graph = self.store.read_graph(keys)
        n_windows = -(-graph.size // self.window_size)
        arrivals = self._score_arrivals(keys, graph, np.flatnonzero(graph.seen & ~graph.scored), n_windows,
                                        origin, cause)
        result = finalise(self.store, self.model, replay_id, step, self.window, origin, cause, unfinished, count,
                          self.fit_pool)
        if result.stats.missing_transactions or result.stats.dangling_edges:
            log.warning("step %d of replay %s closed partial: %d declared transaction(s) never arrived, %d edge(s) "
                        "name a seq that never arrived; its statistics record says so", step, replay_id,
                        result.stats.missing_transactions, result.stats.dangling_edges)
        mark_finalised(self.redis, replay_id, step, cause)
        self.cache.drop(keys)
        return replace(result, alerts=arrivals + result.alerts) if arrivals else result


def step_problem(replay_id: str, step: int) -> str | None:
    """Why the worker cannot take a record of this replay and step — an event, a batch of them, a marker — or None."""
    try:
        check_replay_id(replay_id)
    except ValueError as e:
        return str(e)
    return f"step {step} is beyond {STEP_MAX}" if step > STEP_MAX else None  # step close walks the steps before it


# The reasons ``check`` and ``check_columns`` give, worded once.
def _seq_beyond(seq: int) -> str:
    return f"seq {seq} is beyond {MAX_SEQ - 1}"


def _not_finite(event_time: float) -> str:
    return f"event_time {event_time} is not finite"


def _not_earlier(neighbour: int, seq: int) -> str:
    return f"neighbour seq {neighbour} is not an earlier seq of the step (the event's seq is {seq})"


def _pruned(replay_id: str) -> str:
    return f"replay {replay_id} has ended and its graph was pruned"


def _conflict(keys: StepKeys, seq: int) -> str:
    return (f"seq {seq} of step {keys.step} of replay {keys.replay_id} already holds another transaction or "
            f"other features: this record contradicts it and was not written")
