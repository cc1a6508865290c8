"""Wire contracts: every record txmon puts on Kafka, defined once (pydantic v2).

The transactions topic carries three kinds, told apart by ``kind``: ``tx`` events, ``step_end``
markers (one per partition after each step) and a final ``replay_end``. The worker publishes
``Alert`` records, one ``StepStats`` record per step, and ``DeadLetter`` records for bad input.
Labels never travel on these topics.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, PlainValidator, TypeAdapter, WithJsonSchema

from replay.elliptic_format import N_FEATURES

SCHEMA_VERSION = 1
TxId = Annotated[int, Field(gt=0, description="Elliptic transaction id")]
Step = Annotated[int, Field(ge=1, description="time step, 1..49 on Elliptic")]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    schema_version: int = Field(SCHEMA_VERSION, description="bumped on incompatible changes")


def _decode_features(v: object) -> np.ndarray:
    if isinstance(v, np.ndarray):
        arr = v.astype("<f4", copy=False).ravel()
    elif isinstance(v, str | bytes):
        try:
            raw = base64.b64decode(v, validate=True)
        except (binascii.Error, ValueError) as e:
            raise ValueError(f"features is not valid base64: {e}") from None
        if len(raw) != 4 * N_FEATURES:
            raise ValueError(f"features must decode to {N_FEATURES} float32 ({4 * N_FEATURES} bytes), got {len(raw)}")
        arr = np.frombuffer(raw, dtype="<f4")
    elif isinstance(v, list | tuple):
        arr = np.asarray(v, dtype="<f4")
    else:
        raise ValueError("features must be base64 of float32 values")
    if arr.shape != (N_FEATURES,):
        raise ValueError(f"features must hold {N_FEATURES} values, got {arr.size}")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(f"feature {int(bad[0])} is {arr[bad[0]]}")
    return arr


def encode_features(arr: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(arr, dtype="<f4").tobytes()).decode("ascii")


# On the wire: base64 of 165 little-endian float32 (≈0.9 KB instead of ≈3.3 KB of decimal
# text, exact, and cheap to decode); in Python: a float32 numpy array.
Features = Annotated[
    np.ndarray,
    PlainValidator(_decode_features),
    PlainSerializer(encode_features, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "contentEncoding": "base64",
                    "description": f"{N_FEATURES} little-endian float32 values, base64-encoded"}),
]
Neighbour = Annotated[tuple[int, int], Field(description="(tx id, seq) of a transaction sent earlier in the step")]


class TxEvent(_Record):
    """One transaction, with the edges to transactions sent before it in its step (each edge travels once)."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
    kind: Literal["tx"] = "tx"
    replay_id: str
    tx_id: TxId
    step: Step
    seq: int = Field(ge=0, description="0-based position of the transaction in its step's replay order")
    features: Features
    inputs_from: list[Neighbour] = Field(default_factory=list, description="earlier transactions paying into this one")
    outputs_to: list[Neighbour] = Field(default_factory=list, description="earlier transactions this one pays into")
    event_time: float = Field(description="producer send time, Unix seconds")


class StepEnd(_Record):
    """Sent to every partition after the last transaction of a step."""

    kind: Literal["step_end"] = "step_end"
    replay_id: str
    step: Step
    count: int = Field(ge=0, description="transactions in the step (all partitions)")
    partitions: int = Field(ge=1, description="partitions this marker was sent to: a step is complete "
                                              "once every one of them has passed it")
    event_time: float


class ReplayEnd(_Record):
    """Sent to every partition after the last step of a replay."""

    kind: Literal["replay_end"] = "replay_end"
    replay_id: str
    first_step: Step
    last_step: Step
    count: int = Field(ge=0, description="transactions in the replay")
    partitions: int = Field(ge=1, description="partitions this marker was sent to")
    event_time: float


TopicEvent = Annotated[TxEvent | StepEnd | ReplayEnd, Field(discriminator="kind")]
TOPIC_EVENT = TypeAdapter(TopicEvent)


class Influence(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    tx_id: TxId
    weight: float = Field(description="how much this neighbour moved the score")


class Alert(_Record):
    alert_id: str = Field(description="deterministic: '<replay_id>:<tx_id>:<kind>'")
    kind: Literal["arrival", "final", "retracted"]
    replay_id: str
    tx_id: TxId
    step: Step
    arrival_score: float = Field(ge=0, le=1)
    final_score: float | None = Field(None, ge=0, le=1, description="set once the step is closed")
    threshold: float = Field(ge=0, le=1)
    model_version: str
    neighbours: list[Influence] = Field(default_factory=list, description="the neighbours that weighed most")
    event_time: float = Field(description="when the transaction was sent, Unix seconds")
    processing_time: float = Field(description="when the alert was emitted, Unix seconds")


class PowerLawFit(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    alpha: float
    xmin: float
    ks_distance: float
    n_tail: int
    lognormal_loglik_ratio: float = Field(description="> 0 favours the power law, < 0 the lognormal")
    lognormal_p: float


class StepStats(_Record):
    replay_id: str
    step: Step
    nodes_step: int
    edges_step: int
    nodes_total: int
    edges_total: int
    avg_degree: float
    density: float
    clustering: float
    triangles_step: int
    in_degree_fit: PowerLawFit | None = None
    out_degree_fit: PowerLawFit | None = None
    densification_alpha: float | None = Field(None, description="E ∝ N^α over the cumulative history")
    densification_r2: float | None = None
    densification_alpha_window: float | None = Field(None, description="α over the last `window` steps")
    window: int
    computed_at: float


class DeadLetter(_Record):
    reason: str
    topic: str
    partition: int
    offset: int
    key: str | None = None
    value: str = Field(description="the record as received (decoded leniently, truncated)")
    received_at: float
