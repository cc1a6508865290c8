"""Step close: who finalises a step, the final re-scoring, the alerts that resolve it, the step's statistics.

Statistics follow ``replay.analysis.network`` (the offline report) so the two can be compared:
edges are directed (each edge row once), avg_degree = edges / nodes (the average in- and out-degree),
density = edges / (nodes · (nodes − 1)); clustering is the global clustering coefficient
3 · triangles / wedges of the simple undirected graph, with triangles from the counter the write
script keeps in Redis and wedges Σ C(d, 2) from the undirected degrees. Power laws are fitted to the
step's own in- and out-degrees (as the report's per-step fits; a cumulative fit at every step would
have to re-read every earlier step). Densification E ∝ N^α is fitted over the cumulative (N, E) of
the finalised steps so far and over the last ``window`` of them, at least 3 points each.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import cast

import numpy as np
import redis
from numpy.typing import NDArray

from stream_app.alerts import Candidate, claim
from stream_app.claims import Origin
from stream_app.fit_pool import DegreeFits, FitPool, degree_fits
from stream_app.graph_store import GraphStore
from stream_app.keys import ReplayKeys, StepKeys
from stream_app.scorer import LoadedModel, score, top_neighbours
from txmon.core.contracts import Alert, AlertKind, StepStats
from txmon.core.fits import densification_series
from txmon.core.graph import undirected_adjacency

DONE = b"done:"  # a finalisation claim's prefix once the step is finalised: done:<cause>


@dataclass(frozen=True)
class StepResult:
    stats: StepStats
    alerts: list[Alert]
    tx_ids: NDArray[np.int64]  # the step's transactions, in seq order
    final_scores: NDArray[np.float64]  # their final scores


# -- who finalises ---------------------------------------------------------------------------------------------------


def add_partition(client: redis.Redis, key: str, partition: int, n_partitions: int) -> bool:
    """Add ``partition`` to the set of partitions that passed a marker; True once every one has."""
    pipe = client.pipeline(transaction=False)
    pipe.sadd(key, partition)
    pipe.scard(key)
    return int(pipe.execute()[1]) >= n_partitions


def record_step_end(client: redis.Redis, replay_id: str, step: int, partition: int, n_partitions: int) -> bool:
    """Record that ``partition`` passed step_end; True when every partition has."""
    return add_partition(client, ReplayKeys(replay_id).stepend(step), partition, n_partitions)


def claim_finalisation(client: redis.Redis, replay_id: str, step: int, lease_s: float, origin: Origin,
                       cause: bytes) -> bool:
    """Claim the step's close for ``cause`` (its completing step_end); True when ``origin`` owns it: a new claim,
    or one an earlier try of the same step_end made (the worker died before its transaction committed: the
    record is processed again, here or by the partition's next owner, which takes the close over at once).
    The lease is the fallback for a claim whose record never comes back (its topic was lost); done:<cause>
    has no expiry."""
    before = client.set(ReplayKeys(replay_id).final(step), cause, nx=True, get=True, px=int(lease_s * 1000))
    return origin.owns(cast("bytes | None", before))  # with get=True: the value before, None if there was none


def unfinished_earlier_steps(client: redis.Redis, replay_id: str, step: int) -> list[int]:
    """The replay's steps before ``step`` whose close has not finished (another worker is on it, or died on it).

    Cumulative statistics need every earlier step's node and edge counts. A step's markers follow the
    previous step's on every partition, so when ``step`` completes, every earlier step of the replay has
    completed too — all its events are in Redis — and its counts can be read from its graph while its
    close is still running elsewhere: the closer never waits. Earlier steps of the replay are the ones
    with a step_end set.
    """
    rk = ReplayKeys(replay_id)
    earlier = list(range(1, step))
    pipe = client.pipeline(transaction=False)
    for s in earlier:
        pipe.exists(rk.stepend(s))
        pipe.get(rk.final(s))
    res = pipe.execute()
    return [s for s, started, final in zip(earlier, res[::2], res[1::2], strict=True)
            if started and not (final or b"").startswith(DONE)]


def mark_finalised(client: redis.Redis, replay_id: str, step: int, cause: bytes) -> None:
    client.set(ReplayKeys(replay_id).final(step), DONE + cause)


# -- statistics ------------------------------------------------------------------------------------------------------


def step_stats(replay_id: str, step: int, n: int, src: NDArray[np.int64], dst: NDArray[np.int64], triangles: int,
               history: dict[int, tuple[int, int]], window: int, missing: int = 0, dangling: int = 0,
               fits: DegreeFits | None = None) -> StepStats:
    """Statistics of a step graph on nodes 0..n-1 with directed edges src → dst (each node pair once).

    ``history``: step -> (nodes, edges) of the finalised steps (this one is added if missing). ``missing``,
    ``dangling``: declared transactions that never arrived, edges to seqs that never arrived (the record says
    it is partial). ``fits``: this graph's :func:`degree_fits`, when they were computed elsewhere.
    """
    in_fit, out_fit = fits if fits is not None else degree_fits(n, src, dst)
    e = int(src.size)
    deg = np.bincount(np.r_[src, dst], minlength=n)  # undirected: the log holds each pair once
    wedges = float(np.sum(deg * (deg - 1) / 2))
    history = {**history, step: (n, e)}
    past = sorted(s for s in history if s <= step)
    cum_n = np.cumsum([history[s][0] for s in past], dtype=np.float64)
    cum_e = np.cumsum([history[s][1] for s in past], dtype=np.float64)
    dens = densification_series(cum_n, cum_e)[-1]
    dens_w = densification_series(cum_n, cum_e, window=window)[-1]
    return StepStats(
        replay_id=replay_id, step=step, nodes_step=n, edges_step=e,
        nodes_total=int(cum_n[-1]), edges_total=int(cum_e[-1]),
        avg_degree=e / n if n else 0.0, density=e / (n * (n - 1)) if n > 1 else 0.0,
        clustering=3 * triangles / wedges if wedges else 0.0, triangles_step=triangles,
        in_degree_fit=in_fit, out_degree_fit=out_fit,
        densification_alpha=dens.alpha if dens else None, densification_r2=dens.r2 if dens else None,
        densification_alpha_window=dens_w.alpha if dens_w else None, window=window,
        missing_transactions=missing, dangling_edges=dangling, computed_at=time.time(),
    )


# -- finalisation ----------------------------------------------------------------------------------------------------


def finalise(store: GraphStore, model: LoadedModel, replay_id: str, step: int, window: int, origin: Origin,
             cause: bytes, unfinished: dict[int, tuple[int, int]] | None = None,
             declared: int | None = None, fit_pool: FitPool | None = None) -> StepResult:
    """Re-score the whole step from Redis, store final scores and history, claim the step-close alerts: each
    arrival alert confirmed or retracted, a final alert for a transaction first flagged now.

    ``unfinished``: (nodes, edges) of earlier steps whose close has not stored them in the history yet;
    ``declared``: the transactions the step's markers say it has; ``fit_pool``: where the degree fits run
    meanwhile (default: here, after the claims)."""
    keys = StepKeys(replay_id, step)
    data = store.read_step(keys)
    g = data.graph
    seqs = np.flatnonzero(g.seen)
    n = seqs.size
    local = np.full(g.size, -1, dtype=np.int64)
    local[seqs] = np.arange(n)
    e = g.arrived_edges()
    src, dst = local[e[:, 0]], local[e[:, 1]]
    pending = fit_pool.submit(n, src, dst) if fit_pool else None
    adj = undirected_adjacency(n, src, dst)
    records = data.records[seqs]
    scored = score(model, model.scale(records["features"]), adj) if n else None
    # Decide on the float32 value Redis keeps, so a later reader reaches the same verdict.
    fin = scored.probs.astype(np.float32).astype(np.float64) if scored else np.zeros(0)
    by_seq = np.zeros(g.size, dtype=np.float64)
    by_seq[seqs] = fin
    history = {**(unfinished or {}), **store.store_final(keys, by_seq, n, int(src.size))}
    missing = max((declared or 0) - n, 0)
    dangling = int(g.edges.shape[0] - e.shape[0])  # every partition passed step_end: these never arrive

    thr = model.threshold
    has_arr = g.scored[seqs]
    arr = np.where(has_arr, data.arr[seqs], fin)  # never scored on arrival (crash): the final score stands in
    arrival_alert = has_arr & (arr >= model.on_arrival.threshold)  # each model's verdict by its own threshold
    # Every arrival alert is resolved (confirmed or retracted); a transaction first flagged now gets "final".
    kind_of: dict[int, AlertKind] = {1: "retracted", 2: "final", 3: "confirmed"}
    kinds = np.where(arrival_alert, np.where(fin >= thr, 3, 1), np.where(fin >= thr, 2, 0))
    chosen = np.flatnonzero(kinds)
    candidates: list[Candidate] = []
    if chosen.size and scored is not None:
        ids = records["tx_id"]
        for i, nbs in zip(chosen, top_neighbours(model, scored, chosen), strict=True):
            candidates.append(Candidate(
                kind=kind_of[int(kinds[i])], tx_id=int(ids[i]), step=step,
                arrival_score=float(arr[i]), final_score=float(fin[i]), event_time=float(records["event_time"][i]),
                neighbours=[(int(ids[j]), w) for j, w in nbs]))
    alerts = claim(store.redis, replay_id, candidates, thr, model.version, origin, cause)
    stats = step_stats(replay_id, step, n, src, dst, data.triangles, history, window, missing, dangling,
                       pending.result() if pending else None)
    return StepResult(stats, alerts, records["tx_id"].astype(np.int64), fin)
