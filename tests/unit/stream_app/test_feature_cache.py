"""The worker's feature cache: exact round trips, and memory that follows the nodes cached, not the seqs named."""

from __future__ import annotations

import numpy as np

from stream_app.graph_store import CACHE_CHUNK, FeatureCache
from stream_app.keys import StepKeys
from stream_app.processor import MAX_SEQ

N = 165


def _records(seqs: np.ndarray) -> np.ndarray:
    rec = np.zeros(seqs.size, dtype=[("tx_id", "<i8"), ("event_time", "<f8")])
    rec["tx_id"], rec["event_time"] = seqs + 1000, seqs * 0.5
    return rec


def test_cached_features_and_records_round_trip_exactly() -> None:
    cache, keys = FeatureCache(N), StepKeys("r", 1)
    seqs = np.array([0, 5, CACHE_CHUNK - 1, CACHE_CHUNK, 3 * CACHE_CHUNK + 7])
    x = np.random.default_rng(0).normal(size=(seqs.size, N)).astype(np.float32)
    cache.put(keys, seqs, x, _records(seqs))
    ask = np.array([CACHE_CHUNK, 5, 6, 3 * CACHE_CHUNK + 7])
    got_x, got_meta = cache.get(keys, ask)
    assert np.array_equal(got_x[[0, 1, 3]], x[[3, 1, 4]]) and not got_x[2].any()
    assert got_meta["tx_id"].tolist() == [CACHE_CHUNK + 1000, 1005, 0, 3 * CACHE_CHUNK + 1007]
    assert cache.missing(keys, ask).tolist() == [6]


def test_one_record_with_the_largest_seq_costs_one_chunk() -> None:
    cache, keys = FeatureCache(N), StepKeys("r", 1)
    seqs = np.array([0, 1, MAX_SEQ - 1])
    cache.put(keys, seqs, np.ones((3, N), np.float32), _records(seqs))
    held = sum(a.nbytes for chunk in cache._steps[keys].values() for a in chunk)
    assert held <= 2 * CACHE_CHUNK * (4 * N + 17)  # two chunks; the dense arrays it replaced took 700 MB


def test_steps_stay_cached_until_the_byte_bound_then_the_least_recently_used_go() -> None:
    one_chunk = FeatureCache(N)._chunk_bytes
    cache = FeatureCache(N, max_bytes=3 * one_chunk)
    seqs = np.arange(10)
    steps = [StepKeys("r", s) for s in range(1, 5)]
    for keys in steps[:3]:  # three open steps, one chunk each: within the bound, however many steps
        cache.put(keys, seqs, np.ones((seqs.size, N), np.float32), _records(seqs))
    assert all(cache.missing(k, seqs).size == 0 for k in steps[:3]) and cache.nbytes == 3 * one_chunk
    cache.get(steps[0], seqs)  # step 1 used last: step 2 is now the least recently used
    cache.put(steps[3], seqs, np.ones((seqs.size, N), np.float32), _records(seqs))
    assert cache.missing(steps[1], seqs).tolist() == seqs.tolist()
    assert [cache.missing(k, seqs).size for k in (steps[0], steps[2], steps[3])] == [0, 0, 0]
    assert cache.nbytes == 3 * one_chunk


def test_a_step_larger_than_the_bound_is_kept_while_it_is_used_and_a_close_frees_its_bytes() -> None:
    one_chunk = FeatureCache(N)._chunk_bytes
    cache, big, small = FeatureCache(N, max_bytes=one_chunk), StepKeys("r", 1), StepKeys("r", 2)
    cache.put(small, np.arange(3), np.ones((3, N), np.float32), _records(np.arange(3)))
    seqs = np.arange(3 * CACHE_CHUNK)
    cache.put(big, seqs, np.ones((seqs.size, N), np.float32), _records(seqs))
    assert cache.missing(big, seqs).size == 0  # the step being written is never the one evicted
    assert cache.missing(small, np.arange(3)).size == 3 and cache.nbytes == 3 * one_chunk
    cache.drop(big)
    assert cache.nbytes == 0
