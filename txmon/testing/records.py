"""Records as they travel, for tests: transactions-topic records as the producer sends them (and bad variants),
and alerts as the worker publishes them."""

from __future__ import annotations

import base64
import json
import time

import numpy as np

from stream_app.routing import Consumed
from txmon.core.contracts import Alert, AlertKind, Influence, ReplayEnd, StepEnd, TxEvent
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


def alert(tx_id: int, kind: AlertKind = "arrival", arrival: float = 0.9, final: float | None = None,
          replay_id: str = "r1", neighbours: list[Influence] | None = None) -> Alert:
    """An alert of step 35, threshold 0.7, sent 0.2 s after its transaction."""
    now = time.time()
    return Alert(alert_id=f"{replay_id}:{tx_id}:{kind}", kind=kind, replay_id=replay_id, tx_id=tx_id, step=35,
                 arrival_score=arrival, final_score=final, threshold=0.7, model_version="gcn-v1",
                 neighbours=neighbours or [], event_time=now - 0.2, processing_time=now)
