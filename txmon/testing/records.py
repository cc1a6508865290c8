"""Transactions-topic records as the producer sends them, and bad variants, for the routing and view tests."""

from __future__ import annotations

import base64
import json

import numpy as np

from stream_app.routing import Consumed
from txmon.core.contracts import ReplayEnd, StepEnd, TxEvent
from txmon.core.elliptic_format import N_FEATURES

TOPIC = "txmon.transactions"
MAX_BYTES = 64 * 1024


def features(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=N_FEATURES).astype(np.float32)


def tx(step: int = 1, seq: int = 0, inputs_from: list[tuple[int, int]] | None = None, **changes: object) -> dict:
    """A valid transaction event (tx id 1000 * step + seq + 1) as a JSON-ready dict; ``changes`` are applied
    to the dict afterwards, unvalidated, to make it bad."""
    e = TxEvent(replay_id="r", tx_id=1000 * step + seq + 1, step=step, seq=seq, features=features(1000 * step + seq),
                inputs_from=inputs_from or [], event_time=1_700_000_000.0)
    return {**json.loads(e.model_dump_json()), **changes}


def step_end(replay_id: str = "r", step: int = 1, partitions: int = 1, **changes: object) -> dict:
    return {**StepEnd(replay_id=replay_id, step=step, count=0, partitions=partitions, event_time=1.0).model_dump(),
            **changes}


def replay_end(replay_id: str = "r", partitions: int = 1, **changes: object) -> dict:
    return {**ReplayEnd(replay_id=replay_id, first_step=1, last_step=1, count=0, partitions=partitions,
                        event_time=1.0).model_dump(), **changes}


def msg(value: dict | bytes | None, partition: int = 0, offset: int = 0, key: bytes | None = b"k") -> Consumed:
    raw = json.dumps(value).encode() if isinstance(value, dict) else value
    return Consumed(TOPIC, partition, offset, key, raw)


def b64(values: np.ndarray) -> str:
    return base64.b64encode(np.asarray(values, "<f4").tobytes()).decode()
