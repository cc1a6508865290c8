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
