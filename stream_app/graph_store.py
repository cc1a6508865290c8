"""The step graphs in Redis: idempotent batch writes and the reads scoring needs, a few round trips each.

Layout of one step (keys in :mod:`stream_app.keys`):

- ``node:<c>``: node records (int64 tx id, float64 event time, float32[165] features = 676 bytes) of
  seqs c*96 .. c*96+95 at (s - c*96)*676. One string per step would be simpler, but SETRANGE grows
  a string greedily (double below 1 MB, +1 MB above) and jemalloc rounds large allocations up:
  measured 1,009 bytes of features per transaction on an average (4,158-node) step. A chunk is
  created at its full size (64,896 bytes, inside jemalloc's 64 KiB class) so only the step's last,
  partly filled chunk wastes space.
- ``seen``: bitmap of the seqs whose record is written (the nodes that have arrived).
- ``nb:<s>``: undirected neighbour seqs of s; only for counting triangles with SINTERCARD.
- ``edges``: append-only log of directed edges (int32 src seq, int32 dst seq, 8 bytes an edge), each
  node pair once (the Lua script appends only when its SADD is new). It is the whole step's
  adjacency in one GET: hop-by-hop SMEMBERS would fetch most of it anyway (measured on the full
  synthetic data, the 4-hop ball of a 1,000-transaction batch covers 61-100% of the step's arrived
  nodes: hubs). Being directed, it gives in- and out-degrees at step close and the directed edge
  list itself: 8 bytes per edge, against ~100 bytes per node for a second (directed) set per node,
  and no degree counters to keep consistent.
- ``ids``: append-only log of (int64 tx id, int32 seq), each node once: finds a transaction by id
  (the web view) for 12 bytes a node, written by the same script at no extra round trip.
- ``tri``: triangle counter; ``scored``: bitmap of the seqs with an arrival score; ``arr``/``fin``:
  float32 arrival/final scores at s*4.

Node and edge counts are not kept as counters: BITCOUNT of ``seen`` and the log's length are exact.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import numpy as np
import redis
from numpy.typing import NDArray
from redis.exceptions import NoScriptError
from scipy import sparse

from stream_app.keys import REPLAYS, ReplayKeys, StepKeys
from txmon.core.elliptic_format import N_FEATURES, STEP_MAX
from txmon.core.graph import undirected_adjacency
from txmon.core.tx_batch import TxColumns

RECORD = np.dtype([("tx_id", "<i8"), ("event_time", "<f8"), ("features", "<f4", (N_FEATURES,))])
NODES_PER_CHUNK = 96  # 96 * 676 = 64,896 bytes + the sds header fits a 65,536-byte jemalloc class
EDGE = np.dtype("<i4")
CACHE_BYTES = 128 << 20  # the feature cache's default bound (FeatureCache)
ID_ENTRY = np.dtype([("tx_id", "<i8"), ("seq", "<i4")])  # the id log: which seq a tx id has

WRITE_BATCH = """
-- One step's share of a micro-batch, atomically. Every write is idempotent; the triangle counter and
-- the edge log move only for an edge whose SADD is new, so a replayed event changes nothing. A seq that
-- has arrived keeps its record: the same seq again with another tx id or other features is a conflict,
-- written nowhere (nor its edges: an edge belongs to its later end), and returned for the dead letters.
-- KEYS[1]: the step's seen bitmap (routes the call to the step's slot; all keys share its hash tag).
-- A late seq (its record came after its partition's step_end) must have arrived already: one that has not is
-- refused the same way (the step may have closed without it).
-- ARGV: prefix, records per chunk, record bytes, runs (int32 first seq, count; within one chunk),
--       the records of the runs in order, edges (int32 src seq, int32 dst seq), the batch's seqs that may be
--       marked seen as a bitmap (the late ones left out), the late seqs as a bitmap.
-- Returns {new edges, the conflicting seqs as int32, the refused late seqs as int32}.
local p, per, rb = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local runs, recs, edges, late = ARGV[4], ARGV[5], ARGV[6], ARGV[8]
local pos, ids, bad, conflicts, lates = 1, {}, {}, {}, {}
local function is_late(s)
  local byte = string.byte(late, math.floor(s / 8) + 1) or 0
  return bit.band(byte, bit.rshift(128, s % 8)) ~= 0
end
for r = 1, #runs, 8 do
  local s, n = struct.unpack('<i4i4', runs, r)
  local c = math.floor(s / per)
  local key = p .. 'node:' .. c
  if redis.call('EXISTS', key) == 0 then
    -- created at full size: growing it by SETRANGE would over-allocate up to 2x
    redis.call('SETRANGE', key, per * rb - 1, '\\0')
  end
  local fresh = true
  for i = 0, n - 1 do
    if redis.call('GETBIT', KEYS[1], s + i) == 1 or is_late(s + i) then fresh = false; break end
  end
  if fresh then  -- the common case: one SETRANGE for the run, every node into the id log
    for i = 0, n - 1 do
      local at = pos + i * rb
      ids[#ids + 1] = string.sub(recs, at, at + 7) .. struct.pack('<i4', s + i)
    end
    redis.call('SETRANGE', key, (s - c * per) * rb, string.sub(recs, pos, pos + n * rb - 1))
  else
    for i = 0, n - 1 do
      local at, off = pos + i * rb, (s + i - c * per) * rb
      local rec = string.sub(recs, at, at + rb - 1)
      if redis.call('GETBIT', KEYS[1], s + i) == 0 and is_late(s + i) then
        bad[s + i] = true
        lates[#lates + 1] = struct.pack('<i4', s + i)
      elseif redis.call('GETBIT', KEYS[1], s + i) == 0 then
        ids[#ids + 1] = string.sub(rec, 1, 8) .. struct.pack('<i4', s + i)
        redis.call('SETRANGE', key, off, rec)
      else  -- tx id (bytes 1-8) and features (17-) must match; the event time may differ (a re-sent replay)
        local old = redis.call('GETRANGE', key, off, off + rb - 1)
        if string.sub(old, 1, 8) ~= string.sub(rec, 1, 8) or string.sub(old, 17) ~= string.sub(rec, 17) then
          bad[s + i] = true
          conflicts[#conflicts + 1] = struct.pack('<i4', s + i)
        end
      end
    end
  end
  pos = pos + n * rb
end
if #ids > 0 then redis.call('APPEND', p .. 'ids', table.concat(ids)) end
-- seen |= batch: three calls instead of one SETBIT per node
redis.call('SET', p .. 'tmp', ARGV[7])
redis.call('BITOP', 'OR', KEYS[1], KEYS[1], p .. 'tmp')
redis.call('DEL', p .. 'tmp')
local tri, log = 0, {}
for e = 1, #edges, 8 do
  local a, b = struct.unpack('<i4i4', edges, e)
  local ka, kb = p .. 'nb:' .. a, p .. 'nb:' .. b
  if not bad[math.max(a, b)] and redis.call('SADD', ka, b) == 1 then
    redis.call('SADD', kb, a)
    -- common neighbours = the triangles this edge closes; each is counted by its last edge
    tri = tri + redis.call('SINTERCARD', 2, ka, kb)
    log[#log + 1] = string.sub(edges, e, e + 7)
  end
end
if #log > 0 then redis.call('APPEND', p .. 'edges', table.concat(log)) end
if tri > 0 then redis.call('INCRBY', p .. 'tri', tri) end
return {#log, table.concat(conflicts), table.concat(lates)}
"""

STORE_ARRIVAL = """
-- KEYS[1]: scored bitmap, KEYS[2]: arr, KEYS[3]: a scratch key. ARGV: seqs (int32, ascending), their
-- scores (float32), the seqs as a bitmap. The first score of a seq is kept; a replayed or duplicate one
-- is dropped. Returns '1' (stored) or '0' per seq.
local old = redis.call('GET', KEYS[1]) or ''
local seqs, scores, owned = ARGV[1], ARGV[2], {}
local first, run, prev = 0, {}, -2
local function flush()
  if #run > 0 then redis.call('SETRANGE', KEYS[2], first * 4, table.concat(run)) end
end
for i = 1, #seqs, 4 do
  local s = struct.unpack('<i4', seqs, i)
  local byte = string.byte(old, math.floor(s / 8) + 1) or 0
  if bit.band(byte, bit.rshift(128, s % 8)) == 0 then
    owned[#owned + 1] = '1'
    if s ~= prev + 1 then flush(); run = {}; first = s end  -- consecutive seqs: one SETRANGE
    run[#run + 1] = string.sub(scores, i, i + 3)
    prev = s
  else
    owned[#owned + 1] = '0'
  end
end
flush()
redis.call('SET', KEYS[3], ARGV[3])
redis.call('BITOP', 'OR', KEYS[1], KEYS[1], KEYS[3])
redis.call('DEL', KEYS[3])
return table.concat(owned)
"""


SCRIPTS = {"write": WRITE_BATCH, "arrival": STORE_ARRIVAL}


def bits(raw: bytes | None, size: int = 0) -> NDArray[np.bool_]:
    """A Redis bitmap as bools (bit 0 is the high bit of byte 0), padded to ``size``."""
    b = np.unpackbits(np.frombuffer(raw or b"", dtype=np.uint8)).astype(bool)
    return np.pad(b, (0, max(0, size - b.size)))


def bitmap(seqs: NDArray[np.int64]) -> bytes:
    """``seqs`` as a Redis bitmap (bit s set)."""
    b = np.zeros(int(seqs.max()) + 1 if seqs.size else 0, dtype=bool)
    b[seqs] = True
    return np.packbits(b).tobytes()


def _runs(seqs: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Runs of consecutive seqs (sorted, unique) that stay within one chunk: (first seq, length)."""
    if seqs.size == 0:
        return seqs, seqs
    brk = np.flatnonzero((np.diff(seqs) != 1) | (np.diff(seqs // NODES_PER_CHUNK) != 0)) + 1
    starts = np.r_[0, brk]
    return seqs[starts], np.diff(np.r_[starts, seqs.size])


@dataclass(frozen=True)
class NodeBatch:
    """The events of one step in a micro-batch, as arrays (one per seq, sorted)."""

    seqs: NDArray[np.int64]
    records: NDArray  # RECORD
    edges: NDArray[np.int64]  # [k, 2] directed (src seq, dst seq)

    @classmethod
    def from_columns(cls, cols: TxColumns) -> NodeBatch:
        """A batch's columns whose rows are sorted by seq, each seq once; edges as (src seq, dst seq): each row's
        inputs_from pay into it, its outputs_to are paid by it (all inputs first, in row order, then all outputs)."""
        rec = np.zeros(len(cols), dtype=RECORD)
        rec["tx_id"] = cols.tx_id
        rec["event_time"] = cols.event_time
        rec["features"] = cols.features
        own = cols.seq[cols.edge_row]
        inputs, outputs = ~cols.edge_out, cols.edge_out
        src = np.concatenate([cols.edge_seq[inputs], own[outputs]])  # inputs pay into the row, outputs from it
        dst = np.concatenate([own[inputs], cols.edge_seq[outputs]])
        edges = np.stack([src, dst], axis=1).astype(np.int64).reshape(-1, 2)
        return cls(cols.seq.astype(np.int64), rec, edges[edges[:, 0] != edges[:, 1]])


@dataclass(frozen=True)
class StepGraph:
    """A step's graph as it stands in Redis: who has arrived, who is scored, the edge log."""

    seen: NDArray[np.bool_]
    scored: NDArray[np.bool_]
    edges: NDArray[np.int64]  # [k, 2] directed, each node pair once; may name nodes not yet arrived

    @classmethod
    def decode(cls, seen: bytes | None, scored: bytes | None, edges: bytes | None) -> StepGraph:
        e = np.frombuffer(edges or b"", dtype=EDGE).astype(np.int64).reshape(-1, 2)
        size = max(len(seen or b"") * 8, int(e.max()) + 1 if e.size else 0)
        return cls(bits(seen, size), bits(scored, size), e)

    @property
    def size(self) -> int:
        return self.seen.size

    def arrived_edges(self) -> NDArray[np.int64]:
        """The directed edges whose two ends have arrived."""
        return self.edges[self.seen[self.edges[:, 0]] & self.seen[self.edges[:, 1]]]

    def adjacency(self) -> sparse.csr_matrix:
        """Undirected adjacency over seqs 0..size-1, arrived nodes only."""
        e = self.arrived_edges()
        return undirected_adjacency(self.size, e[:, 0], e[:, 1])


@dataclass(frozen=True)
class StepData:
    """Everything stored about one step, for step close."""

    graph: StepGraph
    records: NDArray  # RECORD, indexed by seq (zeros where not arrived)
    arr: NDArray[np.float32]  # indexed by seq (0 where not scored)
    triangles: int


class GraphStore:
    """Redis access for step graphs. Needs a client with ``decode_responses=False`` (values are binary)."""

    def __init__(self, client: redis.Redis) -> None:
        if client.get_connection_kwargs().get("decode_responses"):
            raise ValueError("GraphStore needs a redis client with decode_responses=False")
        self.redis = client
        self._shas: dict[str, str] = {}

    def _sha(self, name: str) -> str:
        """The script's SHA, loaded on first use: readers (the web views) never pay for SCRIPT LOAD."""
        if name not in self._shas:
            self._shas[name] = self.redis.script_load(SCRIPTS[name])
        return self._shas[name]

    def _pipeline(self, build: Callable[[redis.client.Pipeline], object]) -> list:
        """Run a pipeline; after a script cache flush (server restart) reload and run it again: all idempotent."""
        for attempt in (0, 1):
            pipe = self.redis.pipeline(transaction=False)
            build(pipe)
            try:
                return pipe.execute()
            except NoScriptError:
                if attempt:
                    raise
                self._shas.clear()
        raise AssertionError("unreachable")

    # -- arrival path ---------------------------------------------------------------------------------------------

    def write_batch(self, keys: StepKeys, batch: NodeBatch, late: NDArray[np.int64] | None = None
                    ) -> tuple[StepGraph, NDArray[np.int64], NDArray[np.int64]]:
        """Write the batch and read back the step graph, in one round trip; also the batch's seqs that conflict
        with what the step holds (the same seq with another tx id or other features) and those of ``late`` (seqs
        whose record came after its partition's step_end) that had not arrived before: neither is written."""
        late = np.zeros(0, np.int64) if late is None else late
        first, count = _runs(batch.seqs)
        runs = np.stack([first, count], axis=1).astype(EDGE).tobytes()
        edges = batch.edges.astype(EDGE).tobytes()

        def build(pipe: redis.client.Pipeline) -> None:
            pipe.evalsha(self._sha("write"), 1, keys.seen, keys.prefix, NODES_PER_CHUNK, RECORD.itemsize,
                         runs, batch.records.tobytes(), edges, bitmap(batch.seqs[~np.isin(batch.seqs, late)]),
                         bitmap(late) if late.size else b"")
            pipe.zadd(REPLAYS, {keys.replay_id: float(batch.records["event_time"].min())}, nx=True)
            pipe.get(keys.seen)
            pipe.get(keys.scored)
            pipe.get(keys.edges)

        (_, conflicts, refused), _, seen, scored, log = self._pipeline(build)
        return (StepGraph.decode(seen, scored, log), np.frombuffer(conflicts or b"", dtype=EDGE).astype(np.int64),
                np.frombuffer(refused or b"", dtype=EDGE).astype(np.int64))

    def locate(self, replay_id: str, tx_id: int) -> tuple[int, int] | None:
        """(step, seq) of a transaction the worker has written, or None: one round trip reading every
        step's id log (12 bytes a transaction) — a lookup for the web view, not for the hot path."""
        logs = self._pipeline(lambda pipe: [pipe.get(StepKeys(replay_id, t).ids) for t in range(1, STEP_MAX + 1)])
        for step, raw in enumerate(logs, start=1):
            entries = np.frombuffer(raw or b"", dtype=ID_ENTRY)
            hit = np.flatnonzero(entries["tx_id"] == tx_id)
            if hit.size:
                return step, int(entries["seq"][hit[0]])
        return None

    def neighbours(self, keys: StepKeys, seq: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """(seqs, tx ids) of ``seq``'s arrived undirected neighbours, from the edge log and the id index — what a
        pruned replay keeps (stream_app.retention); one round trip. For the web view, not the hot path."""
        seen, log, ids = self._pipeline(lambda pipe: [pipe.get(k) for k in (keys.seen, keys.edges, keys.ids)])
        e = np.frombuffer(log or b"", dtype=EDGE).astype(np.int64).reshape(-1, 2)
        nbs = np.unique(np.r_[e[e[:, 0] == seq, 1], e[e[:, 1] == seq, 0]])
        arrived = bits(seen, int(nbs.max()) + 1 if nbs.size else 0)
        nbs = nbs[arrived[nbs]] if nbs.size else nbs
        index = np.frombuffer(ids or b"", dtype=ID_ENTRY)
        tx_by_seq = dict(zip(index["seq"].tolist(), index["tx_id"].tolist(), strict=True))
        return nbs, np.array([tx_by_seq[int(s)] for s in nbs], dtype=np.int64)

    def read_graph(self, keys: StepKeys) -> StepGraph:
        """The step graph as it stands, in one round trip."""
        seen, scored, log = self._pipeline(lambda pipe: [pipe.get(k) for k in (keys.seen, keys.scored, keys.edges)])
        return StepGraph.decode(seen, scored, log)

    def read_records(self, keys: StepKeys, seqs: NDArray[np.int64]) -> NDArray:
        """Records of arrived ``seqs``: one GETRANGE per chunk touched, one round trip."""
        seqs = np.asarray(seqs, dtype=np.int64)
        chunks = seqs // NODES_PER_CHUNK
        offsets = seqs % NODES_PER_CHUNK
        spans = [(int(c), int(offsets[chunks == c].min()), int(offsets[chunks == c].max())) for c in np.unique(chunks)]
        rb = RECORD.itemsize

        def build(pipe: redis.client.Pipeline) -> None:
            for c, lo, hi in spans:
                pipe.getrange(keys.node(c), lo * rb, (hi + 1) * rb - 1)

        out = np.zeros(seqs.size, dtype=RECORD)
        for (c, lo, _), raw in zip(spans, self._pipeline(build), strict=True):
            sel = chunks == c
            out[sel] = np.frombuffer(raw, dtype=RECORD)[seqs[sel] - c * NODES_PER_CHUNK - lo]
        return out

    def store_arrival(self, keys: StepKeys, seqs: NDArray[np.int64], scores: NDArray[np.float64]) -> NDArray[np.bool_]:
        """Store first arrival scores; True where this call stored it (False: scored before)."""
        (owned,) = self._pipeline(lambda pipe: pipe.evalsha(
            self._sha("arrival"), 3, keys.scored, keys.arr, keys.tmp,
            seqs.astype(EDGE).tobytes(), scores.astype("<f4").tobytes(), bitmap(seqs)))
        return np.frombuffer(owned, dtype=np.uint8) == ord("1")

    # -- step close -----------------------------------------------------------------------------------------------

    def read_step(self, keys: StepKeys) -> StepData:
        """The whole step: two round trips (the bitmaps say how many record chunks to fetch)."""
        seen, scored, log, arr, tri = self._pipeline(lambda pipe: [
            pipe.get(k) for k in (keys.seen, keys.scored, keys.edges, keys.arr, keys.tri)])
        graph = StepGraph.decode(seen, scored, log)
        n = graph.size
        records = np.zeros(n, dtype=RECORD)
        n_chunks = -(-n // NODES_PER_CHUNK)
        if n_chunks:
            # decode_responses=False (checked in __init__): values are bytes, not the stub's bytes | str
            chunks = cast("list[bytes | None]", self.redis.mget([keys.node(c) for c in range(n_chunks)]))
            empty = bytes(NODES_PER_CHUNK * RECORD.itemsize)
            records = np.frombuffer(b"".join(c or empty for c in chunks), dtype=RECORD)[:n]
        scores = np.zeros(n, dtype=np.float32)
        a = np.frombuffer(arr or b"", dtype="<f4")[:n]
        scores[: a.size] = a
        return StepData(graph, records, scores, int(tri or 0))

    def store_final(self, keys: StepKeys, fin: NDArray[np.float64], nodes: int,
                    edges: int) -> dict[int, tuple[int, int]]:
        """Store final scores (by seq) and the step's counts in the history; return the history."""
        rk = ReplayKeys(keys.replay_id)
        _, _, hist = self._pipeline(lambda pipe: [
            pipe.set(keys.fin, fin.astype("<f4").tobytes()),
            pipe.hset(rk.hist, str(keys.step), f"{nodes},{edges}"),  # idempotent: a re-run writes the same
            pipe.hgetall(rk.hist)])
        pairs = {int(k): v.split(b",") for k, v in hist.items()}
        return {k: (int(n), int(e)) for k, (n, e) in pairs.items()}


class FeatureCache:
    """Scaled features, tx ids and event times of arrived nodes, per step, in this worker's memory.

    A node's record never changes once written, so caching it is safe; the worker's own events fill
    the cache and only other workers' nodes are read from Redis. An optimisation only: nothing here
    is needed by another worker, and a fresh worker starts empty. Held in chunks of CACHE_CHUNK seqs made on
    first use, so memory follows the nodes cached, not the largest seq a record names (one record with seq
    2^20 - 1 used to grow the step's arrays to 660 MB).

    A step's entry is dropped when the step closes; ``max_bytes`` bounds the rest, least recently used step
    first (a step whose close never comes). Bounded by bytes, not steps: on a backlog a worker's partitions
    run several steps apart (measured on the full replay: steps 9 to 17 open at once), and a cap of 4 steps
    evicted open steps, whose windows then read their features back from Redis (672 reads in one replay).
    """

    def __init__(self, n_features: int, max_bytes: int = CACHE_BYTES) -> None:
        self.n_features = n_features
        self.max_bytes = max_bytes
        self._steps: dict[StepKeys, dict[int, tuple[NDArray[np.float32], NDArray, NDArray[np.bool_]]]] = {}
        self._chunk_bytes = CACHE_CHUNK * (4 * n_features + _META.itemsize + 1)

    @property
    def nbytes(self) -> int:
        return sum(len(chunks) for chunks in self._steps.values()) * self._chunk_bytes

    def _chunks(self, keys: StepKeys) -> dict[int, tuple[NDArray[np.float32], NDArray, NDArray[np.bool_]]]:
        chunks = self._steps.pop(keys, None) or {}
        self._steps[keys] = chunks  # most recently used last
        return chunks

    def _evict(self, keep: StepKeys) -> None:
        """Drop least recently used steps, never ``keep``, until the cache fits ``max_bytes``."""
        while self.nbytes > self.max_bytes and len(self._steps) > 1:
            del self._steps[next(k for k in self._steps if k != keep)]

    @staticmethod
    def _split(seqs: NDArray[np.int64]) -> list[tuple[int, NDArray[np.bool_], NDArray[np.int64]]]:
        """(chunk, which of ``seqs`` are in it, their offsets in it) for each chunk ``seqs`` touch."""
        cid = seqs // CACHE_CHUNK
        return [(int(c), sel, seqs[sel] - int(c) * CACHE_CHUNK) for c in np.unique(cid) for sel in [cid == c]]

    def put(self, keys: StepKeys, seqs: NDArray[np.int64], x: NDArray[np.float32], records: NDArray) -> None:
        """``records``: RECORD rows (or anything with tx_id and event_time fields) of ``seqs``."""
        chunks = self._chunks(keys)
        for c, sel, off in self._split(seqs):
            if c not in chunks:
                chunks[c] = (np.zeros((CACHE_CHUNK, self.n_features), np.float32), np.zeros(CACHE_CHUNK, _META),
                             np.zeros(CACHE_CHUNK, bool))
            cx, meta, have = chunks[c]
            cx[off], have[off] = x[sel], True
            meta["tx_id"][off], meta["event_time"][off] = records["tx_id"][sel], records["event_time"][sel]
        self._evict(keys)

    def missing(self, keys: StepKeys, seqs: NDArray[np.int64]) -> NDArray[np.int64]:
        chunks = self._chunks(keys)
        have = np.zeros(seqs.size, dtype=bool)
        for c, sel, off in self._split(seqs):
            if c in chunks:
                have[sel] = chunks[c][2][off]
        return seqs[~have]

    def get(self, keys: StepKeys, seqs: NDArray[np.int64]) -> tuple[NDArray[np.float32], NDArray]:
        """(scaled features, records with tx_id and event_time) of cached ``seqs`` (zeros for others)."""
        chunks = self._chunks(keys)
        x = np.zeros((seqs.size, self.n_features), dtype=np.float32)
        meta = np.zeros(seqs.size, dtype=_META)
        for c, sel, off in self._split(seqs):
            if c in chunks:
                x[sel], meta[sel] = chunks[c][0][off], chunks[c][1][off]
        return x, meta

    def drop(self, keys: StepKeys) -> None:
        self._steps.pop(keys, None)


CACHE_CHUNK = 1024
_META = np.dtype([("tx_id", "<i8"), ("event_time", "<f8")])
