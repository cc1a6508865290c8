"""The stream worker's core against a real redis-server: every check is an offline recomputation.

Events are built as the producer sends them (seq = row order within the step, each edge on the
event of its later end); the model is a small randomly initialised GCN with a fitted Scaler.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
import torch

from model_store.arrival_train import simulate_arrival
from model_store.graph import undirected_edge_index
from model_store.inference import Scaler, gcn_scores
from model_store.models.gcn import GCN
from model_store.registry import ArrivalPart, ModelStore
from replay.analysis.network import analyze_network
from replay.data.dataset import EllipticDataset
from replay.synth import generate
from stream_app.claims import Origin
from stream_app.fit_pool import FitPool
from stream_app.graph_store import NODES_PER_CHUNK, RECORD, GraphStore, NodeBatch
from stream_app.keys import ReplayKeys, StepKeys
from stream_app.placement import Placement
from stream_app.processor import MAX_SEQ, Processor
from stream_app.routing import Consumed, Outputs, record_published, route
from stream_app.scorer import LoadedModel
from txmon.core.contracts import ARRIVAL_WINDOW, ReplayEnd, StepEnd, TxEvent
from txmon.core.graph import undirected_adjacency
from txmon.core.tx_batch import TxColumns
from txmon.testing.records import MAX_BYTES, TOPIC

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore:Sparse:UserWarning")]
TOL = 1e-5


# ---------------------------------------------------------------- data, model, events


def _dataset(d) -> EllipticDataset:  # noqa: ANN001
    return EllipticDataset(d.tx_ids, d.steps, d.features.astype(np.float32), d.labels, d.edges, fingerprint="t")


@pytest.fixture(scope="module")
def ds() -> EllipticDataset:
    """Realistic: 6 synthetic steps of ~100-450 transactions."""
    return _dataset(generate(0.05, 6, seed=1))


@pytest.fixture(scope="module")
def dense() -> EllipticDataset:
    """Triangle-rich: 3 steps of 50 transactions with random edges (p = 0.15), random directions."""
    rng = np.random.default_rng(7)
    n, steps = 50, 3
    ids = rng.choice(np.arange(1, 10**7), size=n * steps, replace=False).astype(np.int64)
    edges = []
    for t in range(steps):
        i, j = np.triu_indices(n, 1)
        keep = rng.random(i.size) < 0.15
        a, b = i[keep] + t * n, j[keep] + t * n
        flip = rng.random(a.size) < 0.5
        edges.append(np.stack([np.where(flip, b, a), np.where(flip, a, b)], axis=1))
    e = np.concatenate(edges)
    return EllipticDataset(ids, np.repeat(np.arange(1, steps + 1), n).astype(np.int16),
                           rng.normal(size=(n * steps, 165)).astype(np.float32), np.full(n * steps, -1, np.int8),
                           ids[e], fingerprint="dense")


def make_model(ds: EllipticDataset, quantile: float = 0.8, seed: int = 0) -> tuple[LoadedModel, np.ndarray]:
    """A random GCN and another as its arrival model, the GCN's offline scores on the full graph; thresholds at a
    score quantile of each (plenty of alerts)."""
    torch.manual_seed(seed)
    gcn, arrival_gcn = GCN(165, hidden=16).eval(), GCN(165, hidden=16).eval()
    scaler = Scaler.fit(ds.features)
    edges = undirected_edge_index(ds.edge_rows, ds.n_nodes)
    offline = gcn_scores(gcn, scaler.transform(ds.features), edges)
    on_arrival = gcn_scores(arrival_gcn, scaler.transform(ds.features), edges)
    arrival = LoadedModel(arrival_gcn, scaler, float(np.quantile(on_arrival, quantile)), "gcn-test")
    return LoadedModel(gcn, scaler, float(np.quantile(offline, quantile)), "gcn-test", arrival), offline


def step_seqs(ds: EllipticDataset) -> np.ndarray:
    """seq of every row: its position among its step's rows, in row order."""
    steps = ds.steps.astype(np.int64)
    order = np.argsort(steps, kind="stable")
    seq = np.empty(ds.n_nodes, dtype=np.int64)
    seq[order] = np.arange(ds.n_nodes) - np.searchsorted(steps[order], steps[order])
    return seq


def replay_events(ds: EllipticDataset, replay_id: str) -> list[TxEvent]:
    """Events in replay order (by step, then seq); each edge rides on its later end, pointing back."""
    seq = step_seqs(ds)
    ins: dict[int, list] = defaultdict(list)
    outs: dict[int, list] = defaultdict(list)
    for a, b in ds.edge_rows.tolist():
        if seq[b] > seq[a]:
            ins[b].append((int(ds.tx_ids[a]), int(seq[a])))
        else:
            outs[a].append((int(ds.tx_ids[b]), int(seq[b])))
    order = np.lexsort((seq, ds.steps))
    return [TxEvent(replay_id=replay_id, tx_id=int(ds.tx_ids[r]), step=int(ds.steps[r]), seq=int(seq[r]),
                    features=ds.features[r], inputs_from=ins[r], outputs_to=outs[r], event_time=1_000.0 + r)
            for r in order.tolist()]


def batches(events: list, rng: np.random.Generator, lo: int = 1, hi: int = 120) -> list[list]:
    out, i = [], 0
    while i < len(events):
        k = int(rng.integers(lo, hi))
        out.append(events[i:i + k])
        i += k
    return out


def close_all(proc: Processor, ds: EllipticDataset, replay_id: str) -> dict:
    return {int(t): proc.on_step_end(replay_id, int(t), 0, 1) for t in np.unique(ds.steps)}


def row_of(ds: EllipticDataset) -> dict[int, int]:
    return {int(t): i for i, t in enumerate(ds.tx_ids)}


def offline_on(ds: EllipticDataset, model: LoadedModel, rows: np.ndarray) -> np.ndarray:
    """The GCN on the subgraph induced by ``rows`` (sorted), scores in that order."""
    er = ds.edge_rows
    keep = np.isin(er[:, 0], rows) & np.isin(er[:, 1], rows)
    local = np.searchsorted(rows, er[keep])
    return gcn_scores(model.gcn, model.scale(ds.features[rows]), undirected_edge_index(local, rows.size))


def stored(r: redis.Redis, replay_id: str, step: int, field: str) -> np.ndarray:
    return np.frombuffer(r.get(getattr(StepKeys(replay_id, step), field)) or b"", dtype="<f4")


@pytest.fixture
def r(redis_client: redis.Redis) -> redis.Redis:
    """The test server, emptied; a binary client (values are packed arrays)."""
    assert not redis_client.get_connection_kwargs().get("decode_responses")
    return redis_client


# ---------------------------------------------------------------- scores


def test_final_scores_equal_the_offline_gcn(r: redis.Redis, ds: EllipticDataset, tmp_path: Path) -> None:
    """Model loaded from the store; batches of random size that span steps; all steps closed after."""
    gcn_model, offline = make_model(ds)
    arrival = gcn_model.on_arrival
    part = ArrivalPart(arrival.gcn.state_dict(), arrival.gcn.architecture(), arrival.threshold, ARRIVAL_WINDOW, {}, {})
    ModelStore(tmp_path).save("gcn", gcn_model.gcn.state_dict(), architecture=gcn_model.gcn.architecture(),
                              threshold=gcn_model.threshold, metrics={}, training={}, dataset_fingerprint="t",
                              feature_mean=gcn_model.scaler.mean.tolist(), feature_std=gcn_model.scaler.std.tolist(),
                              arrival=part)
    model = LoadedModel.from_store(tmp_path)
    assert model.version == "gcn-v1" and model.layers == 3
    # both models of the version, each with its threshold
    assert model.arrival is not None and model.on_arrival.threshold == arrival.threshold != model.threshold
    assert all(torch.equal(v, arrival.gcn.state_dict()[k]) for k, v in model.on_arrival.gcn.state_dict().items())
    proc = Processor(r, model)
    for b in batches(replay_events(ds, "par"), np.random.default_rng(0), 50, 400):
        proc.process_batch(b)
    results = close_all(proc, ds, "par")
    final = {}
    for res in results.values():
        final.update(zip(res.tx_ids.tolist(), res.final_scores.tolist(), strict=True))
    assert len(final) == ds.n_nodes
    np.testing.assert_allclose([final[t] for t in ds.tx_ids.tolist()], offline, atol=TOL, rtol=0)
    # What Redis holds is the same (float32).
    seq, rows = step_seqs(ds), row_of(ds)
    for t, res in results.items():
        fin = stored(r, "par", t, "fin")
        np.testing.assert_allclose(fin[seq[[rows[i] for i in res.tx_ids.tolist()]]], res.final_scores, atol=TOL)


WINDOW = 16  # small arrival windows, so that the test steps (~100-450 transactions) have many


def expected_arrival(ds: EllipticDataset, model: LoadedModel, window: int) -> np.ndarray:
    """Per row: the GCN on its step's rows with seq < the end of its arrival window."""
    seq = step_seqs(ds)
    out = np.zeros(ds.n_nodes)
    for t in np.unique(ds.steps):
        in_step = np.flatnonzero(ds.steps == t)
        for w in np.unique(seq[in_step] // window):
            rows = np.sort(in_step[seq[in_step] < (w + 1) * window])
            members = in_step[seq[in_step] // window == w]
            out[members] = offline_on(ds, model, rows)[np.searchsorted(rows, members)]
    return out


@pytest.mark.parametrize("arrival", ["replay order", "shuffled", "two workers"])
def test_arrival_scores_depend_only_on_the_data(r: redis.Redis, ds: EllipticDataset, arrival: str) -> None:
    """A transaction's arrival score is the GCN on its step's transactions up to the end of its arrival window,
    whatever the batching, the order of arrival or the number of workers (so replays are repeatable). A window
    is scored as soon as it and every window before it have arrived — the step's last one at step close.

    Shuffled: edges name neighbours that have not arrived yet. Two workers: each has its own feature cache,
    so a window completed by one worker may hold the other's transactions, read from Redis.
    """
    model, _ = make_model(ds)
    rng = np.random.default_rng(1)
    events = replay_events(ds, "arr")
    if arrival == "shuffled":
        events = [events[i] for i in rng.permutation(len(events))]
    procs = [Processor(r, model, window_size=WINDOW) for _ in range(2 if arrival == "two workers" else 1)]
    rows, seq = row_of(ds), step_seqs(ds)
    arrived = np.zeros(ds.n_nodes, dtype=bool)
    for k, b in enumerate(batches(events, rng, 1, 90)):
        procs[k % len(procs)].process_batch(b)
        arrived[[rows[e.tx_id] for e in b]] = True
        for t in {e.step for e in b}:
            in_step = np.flatnonzero(ds.steps == t)
            by_seq = np.zeros(in_step.size, dtype=bool)
            by_seq[seq[in_step]] = arrived[in_step]
            prefix = int(np.argmin(by_seq)) if not by_seq.all() else by_seq.size
            ready = prefix - prefix % WINDOW
            got = stored(r, "arr", int(t), "arr")
            scored = np.zeros(in_step.size, dtype=bool)
            scored[: got.size] = got != 0
            assert np.array_equal(scored[:ready], np.ones(ready, bool)), "a complete window was left unscored"
            assert not scored[ready:].any(), "a window was scored before it was complete"
    for t in np.unique(ds.steps):
        procs[0].on_step_end("arr", int(t), 0, 1)
    want = expected_arrival(ds, model.on_arrival, WINDOW)  # the arrival model, not the GCN
    got = np.zeros(ds.n_nodes)
    for t in np.unique(ds.steps):
        in_step = np.flatnonzero(ds.steps == t)
        got[in_step] = stored(r, "arr", int(t), "arr")[seq[in_step]]
    np.testing.assert_allclose(got, want, atol=TOL, rtol=0)
    assert np.abs(got - expected_arrival(ds, model, WINDOW)).max() > 1e-3
    # model_store's offline simulation (training's threshold, `txmon evaluate`) gives exactly these scores.
    sim = simulate_arrival(model.on_arrival.gcn, model.scale(ds.features), ds, np.unique(ds.steps), WINDOW)
    np.testing.assert_allclose(sim.scores, got, atol=TOL, rtol=0)
    in_step = [np.flatnonzero(ds.steps == t) for t in ds.steps]
    assert (sim.ahead == [s.size - min((seq[i] // WINDOW + 1) * WINDOW, s.size)
                          for i, s in enumerate(in_step)]).all()


def _partition_logs(ds: EllipticDataset, replay_id: str, partitions: int) -> list[list[bytes]]:
    """The producer's records on each partition: a step's events (by tx id), then its step_end everywhere;
    after the last step, replay_end everywhere."""
    logs: list[list[bytes]] = [[] for _ in range(partitions)]
    events = replay_events(ds, replay_id)
    steps = [int(t) for t in np.unique(ds.steps)]
    for t in steps:
        for e in events:
            if e.step == t:
                logs[e.tx_id % partitions].append(e.model_dump_json().encode())
        end = StepEnd(replay_id=replay_id, step=t, count=int((ds.steps == t).sum()), partitions=partitions,
                      event_time=1.0)
        for log in logs:
            log.append(end.model_dump_json().encode())
    end_all = ReplayEnd(replay_id=replay_id, first_step=steps[0], last_step=steps[-1], count=ds.n_nodes,
                        partitions=partitions, event_time=1.0)
    for log in logs:
        log.append(end_all.model_dump_json().encode())
    return logs


def test_work_handed_over_to_the_owning_partition_gives_the_same_outputs(r: redis.Redis, redis_url: str,
                                                                        ds: EllipticDataset) -> None:
    """Two workers holding two of four partitions each, batches of random partitions and sizes, hand-over
    records appended to the partition they are for (as the broker would): every window is scored and every step
    closed by the worker holding the step's owning partition, once; the arrival scores are the data's; the
    replay is done only after its last close; and the alerts are those of one processor doing everything."""
    model, _ = make_model(ds)
    partitions, held = 4, [frozenset({0, 1}), frozenset({2, 3})]
    workers = [Processor(r, model, window_size=WINDOW),
               Processor(redis.Redis.from_url(redis_url), model, window_size=WINDOW)]
    logs = _partition_logs(ds, "ho", partitions)
    done_at: list[int] = []  # how many steps had closed when the replay was reported done
    outs: list[tuple[int, Outputs]] = []
    rng = np.random.default_rng(5)
    read = [0] * partitions
    for _ in range(10_000):
        left = [p for p in range(partitions) if read[p] < len(logs[p])]
        if not left:
            break
        p = int(rng.choice(left))
        w = 0 if p in held[0] else 1
        end = min(len(logs[p]), read[p] + int(rng.integers(1, 60)))
        batch = [Consumed(TOPIC, p, o, None, logs[p][o]) for o in range(read[p], end)]
        read[p] = end
        out = route(workers[w], batch, MAX_BYTES, "g", Placement(partitions, held[w]))
        assert not out.dead_letters, out.dead_letters
        outs.append((w, out))
        done_at += [sum(len(o.stats_records) for _, o in outs)] * len(record_published(workers[w], out))
        for to, _key, value in out.handovers:
            logs[to].append(value)
    else:
        pytest.fail("the partitions were not consumed within 10,000 batches")

    steps = [int(t) for t in np.unique(ds.steps)]
    assert done_at == [len(steps)]  # once, and only after every close
    handed = [v for log in logs for v in log if b'"windows_ready"' in v]
    assert handed and any(b'"step_ready"' in v for log in logs for v in log)  # and some closes went through Kafka
    closes = [(w, s.step) for w, o in outs for s in o.stats_records]  # where they completed, or handed over
    assert sorted(s for _, s in closes) == steps
    placements = [Placement(partitions, h) for h in held]
    assert all(placements[w].holds("ho", s) for w, s in closes)
    alerts = [(w, a) for w, o in outs for a in o.alert_records]
    assert len({a.alert_id for _, a in alerts}) == len(alerts)  # each published once
    assert all(placements[w].holds("ho", a.step) for w, a in alerts)  # arrival ones too: scored by the owner

    seq = step_seqs(ds)
    got = np.zeros(ds.n_nodes)
    for t in steps:
        in_step = np.flatnonzero(ds.steps == t)
        got[in_step] = stored(r, "ho", t, "arr")[seq[in_step]]
    np.testing.assert_allclose(got, expected_arrival(ds, model.on_arrival, WINDOW), atol=TOL, rtol=0)

    direct = Processor(r, model, window_size=WINDOW)
    want = []
    for b in batches(replay_events(ds, "direct"), rng):
        want += direct.process_batch(b)
    want += [a for res in close_all(direct, ds, "direct").values() if res is not None for a in res.alerts]
    assert sorted((a.tx_id, a.kind) for _, a in alerts) == sorted((a.tx_id, a.kind) for a in want)


# ---------------------------------------------------------------- at-least-once


def snapshot(r: redis.Redis) -> dict:
    out = {}
    for key in r.scan_iter(count=1000):
        kind = r.type(key)
        value = {b"string": r.get, b"set": lambda k: sorted(r.smembers(k)), b"hash": r.hgetall,
                 b"zset": lambda k: r.zrange(k, 0, -1, withscores=True)}[kind](key)
        out[key] = (kind, value, r.pttl(key))
    return out


def test_replaying_events_changes_nothing_and_alerts_nothing(r: redis.Redis, ds: EllipticDataset) -> None:
    model, _ = make_model(ds)
    proc = Processor(r, model)
    events = replay_events(ds, "rep")
    rng = np.random.default_rng(2)
    first = [a for b in batches(events, rng) for a in proc.process_batch(b)]
    # A crash before the step close: part of the stream comes again, in other batches, plus duplicates in a batch.
    part = events[: len(events) // 2]
    assert [a for b in batches(part + part[:50], rng, 30, 300) for a in proc.process_batch(b)] == []
    before = snapshot(r)
    assert [a for b in batches(events, rng, 1, 500) for a in Processor(r, model).process_batch(b)] == []
    assert snapshot(r) == before
    closes = close_all(proc, ds, "rep")
    assert all(res is not None for res in closes.values()) and first
    after_close = snapshot(r)
    # After the close: the events and the step_end markers again, to a fresh worker.
    other = Processor(r, model)
    assert [a for b in batches(events, rng) for a in other.process_batch(b)] == []
    assert all(v is None for v in close_all(other, ds, "rep").values())
    assert snapshot(r) == after_close


def test_alerts_follow_the_scores_and_are_unique(r: redis.Redis, ds: EllipticDataset) -> None:
    model, _ = make_model(ds, quantile=0.7)
    procs = [Processor(r, model), Processor(r, model)]
    events = replay_events(ds, "al")
    alerts = []
    for k, b in enumerate(batches(events, np.random.default_rng(3))):
        alerts += procs[k % 2].process_batch(b)
    for res in close_all(procs[0], ds, "al").values():
        alerts += res.alerts
    assert len({a.alert_id for a in alerts}) == len(alerts)
    assert all(a.alert_id == f"al:{a.tx_id}:{a.kind}" and a.model_version == "gcn-test" for a in alerts)

    seq, rows = step_seqs(ds), row_of(ds)
    arr = np.zeros(ds.n_nodes)
    fin = np.zeros(ds.n_nodes)
    for t in np.unique(ds.steps):
        in_step = np.flatnonzero(ds.steps == t)
        arr[in_step] = stored(r, "al", int(t), "arr")[seq[in_step]]
        fin[in_step] = stored(r, "al", int(t), "fin")[seq[in_step]]
    thr, thr_arr = model.threshold, model.on_arrival.threshold  # each model's verdict by its own threshold
    kinds = defaultdict(set)
    for a in alerts:
        kinds[a.kind].add(rows[a.tx_id])
        assert a.arrival_score == pytest.approx(arr[rows[a.tx_id]], abs=1e-6)
        assert a.threshold == (thr_arr if a.kind == "arrival" else thr)
        if a.kind != "arrival":
            assert a.final_score == pytest.approx(fin[rows[a.tx_id]], abs=1e-6)
    assert kinds["arrival"] == set(np.flatnonzero(arr >= thr_arr))
    assert kinds["final"] == set(np.flatnonzero((fin >= thr) & (arr < thr_arr)))
    assert kinds["retracted"] == set(np.flatnonzero((arr >= thr_arr) & (fin < thr)))
    assert kinds["confirmed"] == set(np.flatnonzero((arr >= thr_arr) & (fin >= thr)))
    assert kinds["final"] and kinds["retracted"] and kinds["confirmed"]
    # The lifecycle: every arrival alert ends in exactly one of confirmed and retracted, nothing else does.
    assert kinds["confirmed"] | kinds["retracted"] == kinds["arrival"]
    assert not kinds["confirmed"] & kinds["retracted"] and not kinds["final"] & kinds["arrival"]

    # Explanations name real neighbours (at close: 3 of them, or all), the largest contributions first.
    adj = undirected_adjacency(ds.n_nodes, ds.edge_rows[:, 0], ds.edge_rows[:, 1]).tolil()
    for a in alerts:
        nb = {int(ds.tx_ids[j]) for j in adj.rows[rows[a.tx_id]]}
        assert {i.tx_id for i in a.neighbours} <= nb
        assert len(a.neighbours) == min(3, len(nb)) if a.kind != "arrival" else len(a.neighbours) <= 3
        w = [abs(i.weight) for i in a.neighbours]
        assert w == sorted(w, reverse=True)


def test_explanation_contributions_add_up_to_the_logit_margin(ds: EllipticDataset) -> None:
    """All neighbours' contributions + the node's own + the bias = logit(illicit) − logit(licit)."""
    from stream_app.scorer import score, top_neighbours

    model, _ = make_model(ds)
    rows = np.flatnonzero(ds.steps == 1)
    er = ds.edge_rows[np.isin(ds.edge_rows[:, 0], rows)]
    local = np.searchsorted(rows, er)
    adj = undirected_adjacency(rows.size, local[:, 0], local[:, 1]).astype(np.float32).tocsr()
    s = score(model, model.scale(ds.features[rows]), adj)
    deg = np.diff(adj.indptr)
    v = int(np.argmax(deg))
    (nbs,) = top_neighbours(model, s, np.array([v]), k=10**6)
    conv = model.gcn.convs[-1]
    w = conv.lin.weight.detach()
    own = float(s.hidden[v] @ (w[1] - w[0])) / (deg[v] + 1)
    margin = np.log(s.probs[v] / (1 - s.probs[v]))
    total = sum(c for _, c in nbs) + own + float((conv.bias[1] - conv.bias[0]).detach())
    assert len(nbs) == deg[v] and total == pytest.approx(margin, abs=1e-4)


# ---------------------------------------------------------------- step close


def test_finalisation_is_claimed_once(r: redis.Redis, redis_url: str, ds: EllipticDataset) -> None:
    model, _ = make_model(ds)
    a = Processor(r, model)
    b = Processor(redis.Redis.from_url(redis_url), model)
    for batch in batches(replay_events(ds, "cl"), np.random.default_rng(4)):
        a.process_batch(batch)
    steps = [int(t) for t in np.unique(ds.steps)]
    assert a.on_step_end("cl", steps[0], 0, 3) is None  # 1 of 3 partitions
    assert b.on_step_end("cl", steps[0], 1, 3) is None
    assert a.on_step_end("cl", steps[0], 1, 3) is None  # the same partition again does not complete the set

    for step in steps:  # both workers see the set complete at the same moment
        barrier = threading.Barrier(2)
        out: dict[str, object] = {}

        def run(name: str, proc: Processor, partition: int, step: int = step, barrier=barrier, out=out) -> None:  # noqa: ANN001
            barrier.wait()
            out[name] = proc.on_step_end("cl", step, partition, 3)

        if step != steps[0]:
            a.on_step_end("cl", step, 0, 3)
        threads = [threading.Thread(target=run, args=("a", a, 1)), threading.Thread(target=run, args=("b", b, 2))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sum(v is not None for v in out.values()) == 1
        assert r.get(ReplayKeys("cl").final(step)).startswith(b"done:")
    assert all(p.on_step_end("cl", s, 2, 3) is None for s in steps for p in (a, b))


def test_a_dead_finaliser_is_taken_over_after_its_lease(r: redis.Redis, ds: EllipticDataset) -> None:
    model, _ = make_model(ds)
    proc = Processor(r, model)
    step = int(ds.steps.min())
    proc.process_batch([e for e in replay_events(ds, "ls") if e.step == step])
    r.set(ReplayKeys("ls").final(step), "7:1234", px=300)  # another record's claim, whose worker died
    assert proc.on_step_end("ls", step, 0, 1) is None
    time.sleep(0.4)
    res = proc.on_step_end("ls", step, 0, 1)  # a later step_end, once the lease is over
    assert res is not None and res.stats.nodes_step == int(np.sum(ds.steps == step))


def test_the_completing_step_end_processed_again_takes_its_close_over_at_once(r: redis.Redis,
                                                                             ds: EllipticDataset) -> None:
    """A worker died mid-close, before its transaction committed: whoever processes the same record next
    (the partition's next owner) owns the close at once, with no lease to wait for, and publishes it in full."""
    model, _ = make_model(ds)
    proc = Processor(r, model, close_lease_s=600)
    step = int(ds.steps.min())
    proc.process_batch([e for e in replay_events(ds, "to") if e.step == step])
    origin = Origin.of(3, [40, 41, 42])
    r.set(ReplayKeys("to").final(step), origin.cause(42), px=600_000)  # the dead worker's claim, same record
    assert proc.on_step_end("to", step, 3, 1, Origin.of(3, [43]), 43) is None  # another record: not its close
    res = proc.on_step_end("to", step, 3, 1, origin, 42)
    assert res is not None and res.stats.nodes_step == int(np.sum(ds.steps == step))
    again = proc.on_step_end("to", step, 3, 1, Origin.of(3, [42]), 42)  # and again, after it finished
    assert again is not None and [a.alert_id for a in again.alerts] == [a.alert_id for a in res.alerts]
    assert again.final_scores.tolist() == res.final_scores.tolist()
    assert proc.on_step_end("to", step, 3, 1) is None  # a direct call owns nothing of it


def offline_triangles(ds: EllipticDataset, step: int) -> int:
    rows = np.flatnonzero(ds.steps == step)
    er = ds.edge_rows[np.isin(ds.edge_rows[:, 0], rows)]
    local = np.searchsorted(rows, er)
    a = undirected_adjacency(rows.size, local[:, 0], local[:, 1])
    return int(round((a @ a).multiply(a).sum() / 6))


@pytest.mark.parametrize("order", ["replay", "reversed", "shuffled", "one by one, shuffled"])
def test_triangles_and_edges_match_offline_in_any_arrival_order(r: redis.Redis, dense: EllipticDataset,
                                                                order: str) -> None:
    model, _ = make_model(dense)
    proc = Processor(r, model)
    rng = np.random.default_rng(5)
    events = replay_events(dense, "tri")
    if order == "reversed":
        events = events[::-1]
    elif order != "replay":
        events = [events[i] for i in rng.permutation(len(events))]
    for b in batches(events, rng, 1, 2 if order.startswith("one") else 40):
        proc.process_batch(b)
    seq = step_seqs(dense)
    for t in range(1, 4):
        expected = offline_triangles(dense, t)
        assert expected > 20
        assert int(r.get(StepKeys("tri", t).tri)) == expected
        log = np.frombuffer(r.get(StepKeys("tri", t).edges), dtype="<i4").reshape(-1, 2)
        er = dense.edge_rows[dense.steps[dense.edge_rows[:, 0]] == t]
        assert sorted(map(tuple, log.tolist())) == sorted(map(tuple, seq[er].tolist()))  # directed, each once
        stats = proc.on_step_end("tri", t, 0, 1).stats
        assert stats.triangles_step == expected


@pytest.fixture(scope="module")
def fit_pool() -> Iterator[FitPool]:
    pool = FitPool()
    yield pool
    pool.close()


@pytest.mark.parametrize("fits", ["in-line", "in the fit process"])
@pytest.mark.parametrize("data", ["ds", "dense"])
def test_step_statistics_equal_the_offline_analysis(r: redis.Redis, data: str, fits: str,
                                                    request: pytest.FixtureRequest) -> None:
    d: EllipticDataset = request.getfixturevalue(data)
    model, _ = make_model(d)
    pool = request.getfixturevalue("fit_pool") if fits == "in the fit process" else None
    proc = Processor(r, model, window=3, fit_pool=pool)
    for b in batches(replay_events(d, "st"), np.random.default_rng(6), 20, 200):
        proc.process_batch(b)
    stats = [res.stats for res in close_all(proc, d, "st").values()]
    net = analyze_network(d, window=3)
    for i, s in enumerate(stats):
        step, cum = net.per_step[i], net.cumulative[i]
        assert (s.nodes_step, s.edges_step, s.nodes_total, s.edges_total) == (step.nodes, step.edges, cum.nodes,
                                                                              cum.edges)
        assert s.triangles_step == step.triangles
        assert s.avg_degree == pytest.approx(step.avg_in_degree)
        assert s.density == pytest.approx(step.density)
        assert s.clustering == pytest.approx(step.transitivity)
        assert s.in_degree_fit == net.step_fits[i].in_degree
        assert s.out_degree_fit == net.step_fits[i].out_degree
        hist, win = net.densification_history[i], net.densification_window[i]
        assert s.densification_alpha == (pytest.approx(hist.alpha) if hist else None)
        assert s.densification_r2 == (pytest.approx(hist.r2) if hist else None)
        assert s.densification_alpha_window == (pytest.approx(win.alpha) if win else None)
        assert s.window == 3
    assert stats[-1].densification_alpha is not None and stats[-1].densification_alpha_window is not None
    if data == "dense":
        assert stats[0].clustering > 0.05


def test_an_empty_step_closes_with_zero_statistics(r: redis.Redis, ds: EllipticDataset) -> None:
    model, _ = make_model(ds)
    res = Processor(r, model).on_step_end("empty", 7, 0, 1)
    assert res is not None and res.alerts == [] and res.tx_ids.size == 0
    s = res.stats
    assert (s.nodes_step, s.edges_step, s.triangles_step, s.clustering, s.in_degree_fit) == (0, 0, 0, 0.0, None)


# ---------------------------------------------------------------- storage and input


def test_records_round_trip_in_full_size_chunks(r: redis.Redis, redis_url: str, ds: EllipticDataset) -> None:
    store = GraphStore(r)
    keys = StepKeys("rec", 1)
    events = [e for e in replay_events(ds, "rec") if e.step == int(ds.steps.min())]
    kept = sorted(events[::3] + events[1::3], key=lambda e: e.seq)  # gaps and several runs
    batch = NodeBatch.from_columns(TxColumns.from_events(kept))
    store.write_batch(keys, batch)
    assert r.strlen(keys.node(0)) == NODES_PER_CHUNK * RECORD.itemsize  # created at full size
    got = store.read_records(keys, batch.seqs[::-1])
    assert got.tobytes() == batch.records[::-1].tobytes()
    assert r.bitcount(keys.seen) == batch.seqs.size
    with pytest.raises(ValueError, match="decode_responses"):
        GraphStore(redis.Redis.from_url(redis_url, decode_responses=True))


def test_scripts_are_reloaded_after_a_script_flush(r: redis.Redis, ds: EllipticDataset) -> None:
    model, _ = make_model(ds)
    proc = Processor(r, model, window_size=10)  # each batch completes a window: both are scored at once
    events = replay_events(ds, "fl")
    proc.process_batch(events[:10])
    r.script_flush()
    proc.process_batch(events[10:20])
    assert r.bitcount(StepKeys("fl", events[0].step).scored) == 20


def test_bad_events_are_refused_and_skipped(r: redis.Redis, ds: EllipticDataset) -> None:
    model, _ = make_model(ds)
    proc = Processor(r, model)
    good = replay_events(ds, "bad")[:5]
    far = good[0].model_copy(update={"seq": MAX_SEQ, "tx_id": 11})
    loop = good[1].model_copy(update={"tx_id": 12, "seq": 40, "inputs_from": [(5, 40)]})
    braces = good[2].model_copy(update={"replay_id": "a{b}", "tx_id": 13})
    for e in (far, loop, braces):
        assert Processor.check(e)
    assert all(Processor.check(e) is None for e in good)
    proc.process_batch([far, loop, braces, *good])
    assert r.bitcount(StepKeys("bad", good[0].step).seen) == 5
    assert not list(r.scan_iter(match="txm:{a{b}*"))


def test_two_workers_on_the_same_events_at_once(r: redis.Redis, redis_url: str, dense: EllipticDataset) -> None:
    """A rebalance can hand the same events to two workers: the graph, counters and alert ids stay exact."""
    model, _ = make_model(dense, quantile=0.5)
    events = replay_events(dense, "dup")
    chunks = batches(events, np.random.default_rng(8), 5, 30)
    barrier = threading.Barrier(2)
    alerts: list = []

    def work(client: redis.Redis) -> None:
        proc = Processor(client, model, window_size=10)  # 50-transaction steps: five complete windows each
        barrier.wait()
        for b in chunks:
            alerts.extend(proc.process_batch(b))

    threads = [threading.Thread(target=work, args=(redis.Redis.from_url(redis_url),)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({a.alert_id for a in alerts}) == len(alerts) > 0
    for t in range(1, 4):
        keys = StepKeys("dup", t)
        assert int(r.get(keys.tri)) == offline_triangles(dense, t)
        assert r.strlen(keys.edges) == 8 * int(np.sum(dense.steps[dense.edge_rows[:, 0]] == t))
        assert r.bitcount(keys.scored) == r.bitcount(keys.seen) == int(np.sum(dense.steps == t))


def test_unfinished_earlier_steps_are_the_started_ones_not_done(redis_client) -> None:
    from stream_app.step_close import DONE, unfinished_earlier_steps

    rk = ReplayKeys("wait")
    for s in (2, 3):  # the replay started at step 2: step 1 is not one of its steps
        redis_client.sadd(rk.stepend(s), 0)
    redis_client.set(rk.final(2), DONE + b"0:7")
    redis_client.set(rk.final(3), b"1:9")  # another worker's claim, running
    assert unfinished_earlier_steps(redis_client, "wait", 4) == [3]
    redis_client.set(rk.final(3), DONE + b"1:9")
    assert unfinished_earlier_steps(redis_client, "wait", 4) == []


def test_a_step_closes_without_waiting_for_an_earlier_close_still_running(r: redis.Redis,
                                                                         ds: EllipticDataset) -> None:
    """Step 2 completes while another worker (dead, or slow) still holds step 1's close: step 2 closes at once,
    with cumulative statistics read from step 1's graph — the same as when step 1 closed first."""
    model, _ = make_model(ds)
    first, second = (int(t) for t in np.unique(ds.steps)[:2])
    stats = {}
    for rid, order in (("inorder", "in order"), ("stuck", "step 1 held by another")):
        proc = Processor(r, model, close_lease_s=600)
        proc.process_batch([e for e in replay_events(ds, rid) if e.step in (first, second)])
        if order == "in order":
            assert proc.on_step_end(rid, first, 0, 1) is not None
        else:
            r.sadd(ReplayKeys(rid).stepend(first), 0)  # its set complete, its close claimed by a worker that died
            r.set(ReplayKeys(rid).final(first), b"g/t/5:77", px=600_000)
        t0 = time.monotonic()
        res = proc.on_step_end(rid, second, 0, 1)
        assert res is not None and time.monotonic() - t0 < 5
        stats[order] = res.stats.model_dump(exclude={"computed_at", "replay_id"})
    assert stats["in order"] == stats["step 1 held by another"]
    assert stats["in order"]["nodes_total"] == int(np.isin(ds.steps, [first, second]).sum())
