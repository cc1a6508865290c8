"""Wire contracts: every record txmon puts on Kafka, defined once (pydantic v2).

The transactions topic carries three kinds, told apart by ``kind``: ``tx`` events, ``step_end``
markers (one per partition after each step) and a final ``replay_end``. The worker publishes
``Alert`` records, one ``StepStats`` record per step, and ``DeadLetter`` records for bad input.
Labels never travel on these topics.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

from replay.elliptic_format import N_FEATURES

SCHEMA_VERSION = 1
TxId = Annotated[int, Field(gt=0, description="Elliptic transaction id")]
Step = Annotated[int, Field(ge=1, description="time step, 1..49 on Elliptic")]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    schema_version: int = Field(SCHEMA_VERSION, description="bumped on incompatible changes")


class TxEvent(_Record):
    """One transaction, with the edges to transactions emitted before it (each edge travels once)."""

    kind: Literal["tx"] = "tx"
    replay_id: str
    tx_id: TxId
    step: Step
    features: list[float] = Field(min_length=N_FEATURES, max_length=N_FEATURES)
    inputs_from: list[TxId] = Field(default_factory=list, description="earlier tx ids paying into this one")
    outputs_to: list[TxId] = Field(default_factory=list, description="earlier tx ids this one pays into")
    event_time: float = Field(description="producer send time, Unix seconds")

    @field_validator("features")
    @classmethod
    def _finite(cls, v: list[float]) -> list[float]:
        for i, x in enumerate(v):
            if not math.isfinite(x):
                raise ValueError(f"feature {i} is {x}")
        return v


class StepEnd(_Record):
    """Sent to every partition after the last transaction of a step."""

    kind: Literal["step_end"] = "step_end"
    replay_id: str
    step: Step
    count: int = Field(ge=0, description="transactions in the step (all partitions)")
    event_time: float


class ReplayEnd(_Record):
    """Sent to every partition after the last step of a replay."""

    kind: Literal["replay_end"] = "replay_end"
    replay_id: str
    first_step: Step
    last_step: Step
    count: int = Field(ge=0, description="transactions in the replay")
    event_time: float


TopicEvent = Annotated[TxEvent | StepEnd | ReplayEnd, Field(discriminator="kind")]
TOPIC_EVENT = TypeAdapter(TopicEvent)


class Neighbour(BaseModel):
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
    neighbours: list[Neighbour] = Field(default_factory=list, description="the neighbours that weighed most")
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
