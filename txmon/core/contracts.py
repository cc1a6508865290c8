"""Wire contracts: every record txmon puts on Kafka, defined once (pydantic v2).

The transactions topic carries five kinds, told apart by ``kind``: the producer's ``tx`` events,
``step_end`` markers (one per partition after each step) and a final ``replay_end``; and the workers'
hand-overs, ``windows_ready`` and ``step_ready``, which pass a step's scoring and close to the worker that
owns the step (stream_app.placement). The worker publishes ``Alert`` records, one ``StepStats`` record per
step, and ``DeadLetter`` records for bad input.
Labels never travel on these topics.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Annotated, Literal, cast, get_args

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
)

from txmon.core.elliptic_format import N_FEATURES, STEP_MAX, STEP_MIN

SCHEMA_VERSION = 5

# -- vocabulary: the words and numbers the records share, spelled once ----------------------------------------------

AlertKind = Literal["arrival", "confirmed", "retracted", "final"]  # an arrival alert ends confirmed or retracted
ALERT_KINDS: tuple[AlertKind, ...] = get_args(AlertKind)
Verdict = Literal["arrival", "final"]  # the two verdicts a replay is judged by: as raised on arrival, at step close
VERDICTS: tuple[Verdict, ...] = get_args(Verdict)

# A step's transactions are scored on arrival in windows of this many consecutive seqs (see stream_app.processor).
ARRIVAL_WINDOW = 256
# A dead letter keeps the start of the refused record, enough to see what it was.
DEAD_LETTER_EXCERPT = 2048
DEAD_LETTER_KEY_BYTES = 256  # a refused record's key, as the dead letter's key and field: any key still fits

# Braces would break Redis' hash tag and ':' is the key separator inside it (stream_app.keys).
_REPLAY_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")
REPLAY_ID_RULE = "1-100 characters of A-Z a-z 0-9 _ . -"


@lru_cache(maxsize=256)  # called per event
def check_replay_id(replay_id: str) -> str:
    """The replay id itself, or ValueError when it does not follow REPLAY_ID_RULE."""
    if not _REPLAY_ID.match(replay_id):
        raise ValueError(f"replay id {replay_id!r} must be {REPLAY_ID_RULE}")
    return replay_id


def step_range_error(step: int, name: str = "step") -> str | None:
    """Why ``step`` is not an Elliptic time step (STEP_MIN..STEP_MAX), or None when it is one."""
    return None if STEP_MIN <= step <= STEP_MAX else f"{name} must be in {STEP_MIN}..{STEP_MAX}, got {step}"

TxId = Annotated[int, Field(gt=0, description="Elliptic transaction id")]
Step = Annotated[int, Field(ge=1, description=f"time step, {STEP_MIN}..{STEP_MAX} on Elliptic")]
ReplayId = Annotated[str, Field(description="the replay (one producer run) the record belongs to; the worker "
                                            f"accepts {REPLAY_ID_RULE}")]


class _Record(BaseModel):
    # strict: a JSON string or boolean is never coerced into a number (the boundary takes what it documents)
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    schema_version: int = Field(SCHEMA_VERSION, description="layout version of the record (the same for every "
                                "record kind); bumped on incompatible changes")


FEATURES_BASE64_CHARS = -(-4 * N_FEATURES // 3) * 4  # 880: 660 bytes, a multiple of 3, so never padded
_DEFER_FEATURES = {"defer_features": True}  # validation context of parse_records


def _decode_features(v: object, info: ValidationInfo) -> np.ndarray | str:
    if isinstance(v, str) and len(v) == FEATURES_BASE64_CHARS and info.context is _DEFER_FEATURES:
        return v  # decoded with the rest of its batch by parse_records
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

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, arbitrary_types_allowed=True)
    kind: Literal["tx"] = Field("tx", description="record kind on the transactions topic")
    replay_id: ReplayId
    tx_id: TxId
    step: Step
    seq: int = Field(ge=0, description="0-based position of the transaction in its step's replay order")
    features: Features = Field(description=f"the transaction's {N_FEATURES} Elliptic features (93 local, "
                                           "72 aggregated), base64 of little-endian float32")
    inputs_from: list[Neighbour] = Field(default_factory=list, description="earlier transactions paying into this one")
    outputs_to: list[Neighbour] = Field(default_factory=list, description="earlier transactions this one pays into")
    event_time: float = Field(description="when the producer sent the transaction, Unix seconds")


class StepEnd(_Record):
    """Sent to every partition after the last transaction of a step."""

    kind: Literal["step_end"] = Field("step_end", description="record kind on the transactions topic")
    replay_id: ReplayId
    step: Step = Field(description="the step that has ended")
    count: int = Field(ge=0, description="transactions in the step (all partitions)")
    partitions: int = Field(ge=1, description="partitions this marker was sent to: a step is complete "
                                              "once every one of them has passed it")
    event_time: float = Field(description="when the producer sent the marker, Unix seconds")


class ReplayEnd(_Record):
    """Sent to every partition after the last step of a replay."""

    kind: Literal["replay_end"] = Field("replay_end", description="record kind on the transactions topic")
    replay_id: ReplayId
    first_step: Step = Field(description="first step the replay sent")
    last_step: Step = Field(description="last step the replay sent")
    count: int = Field(ge=0, description="transactions in the replay")
    partitions: int = Field(ge=1, description="partitions this marker was sent to")
    event_time: float = Field(description="when the producer sent the marker, Unix seconds")


class WindowsReady(_Record):
    """Written by a worker to the step's owning partition: these arrival windows of the step have every
    transaction, score them (the owner of the partition does)."""

    kind: Literal["windows_ready"] = Field("windows_ready", description="record kind on the transactions topic")
    replay_id: ReplayId
    step: Step = Field(description="the step the windows belong to")
    windows: list[Annotated[int, Field(ge=0)]] = Field(
        min_length=1, description=f"arrival windows of the step (window w: seqs w·{ARRIVAL_WINDOW} .. "
                                  f"(w + 1)·{ARRIVAL_WINDOW} − 1), each complete")
    event_time: float = Field(description="when the worker wrote the record, Unix seconds")


class StepReady(_Record):
    """Written by the worker that saw a step's last step_end, when it does not hold the step's owning partition
    (or a window of the step is still being scored elsewhere), to that partition: close the step (its holder
    does)."""

    kind: Literal["step_ready"] = Field("step_ready", description="record kind on the transactions topic")
    replay_id: ReplayId
    step: Step = Field(description="the step whose step_end every partition has passed")
    count: int = Field(ge=0, description="transactions in the step, as its step_end markers declared")
    event_time: float = Field(description="when the worker wrote the record, Unix seconds")


TopicRecord = TxEvent | StepEnd | ReplayEnd | WindowsReady | StepReady
Marker = StepEnd | ReplayEnd | WindowsReady | StepReady  # every kind but tx
TopicEvent = Annotated[TopicRecord, Field(discriminator="kind")]
TOPIC_EVENT = TypeAdapter(TopicEvent)


class Influence(BaseModel):
    """A neighbour of the alerted transaction and how much it pushed the score."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    tx_id: TxId = Field(description="the neighbour's Elliptic transaction id")
    weight: float = Field(description="signed contribution of this neighbour to logit(illicit) − logit(licit) in "
                                      "the GCN's last layer: > 0 pushes towards illicit")


class Alert(_Record):
    """A transaction the model flags, and how that ends; keyed by tx id.

    The lifecycle: an ``arrival`` alert is resolved once its step closes, by exactly one ``confirmed``
    (the final score is at or above the GCN's threshold) or ``retracted`` (it is below); a transaction
    first flagged at step close gets one ``final`` alert. Two models decide: the served version's arrival
    model on arrival (trained on the partial graphs seen then), its GCN at step close."""

    alert_id: str = Field(description="deterministic: '<replay_id>:<tx_id>:<kind>', so a consumer can drop "
                                      "re-delivered copies (delivery is at-least-once)")
    kind: AlertKind = Field(
        description="arrival: the arrival model scored it at or above its threshold when the transaction arrived "
                    "(act early); confirmed: an arrival alert whose final score at step close is at or above the "
                    "GCN's threshold (keep it); retracted: an arrival alert whose final score is below it (withdraw "
                    "it); final: at or above it only at step close, never on arrival (act now). Every arrival alert "
                    "ends in exactly one confirmed or retracted")
    replay_id: ReplayId
    tx_id: TxId
    step: Step
    arrival_score: float = Field(ge=0, le=1, description="probability of illicit from the arrival model, in [0, 1], "
                                                         "on the step's transactions up to the end of this one's "
                                                         "arrival window "
                                                         f"({ARRIVAL_WINDOW} consecutive transactions of the step; "
                                                         "the last window is scored at step close)")
    final_score: float | None = Field(None, ge=0, le=1, description="probability of illicit from the GCN when the "
                                                                    "whole step is re-scored at its close, in "
                                                                    "[0, 1]; null on "
                                                                    "arrival alerts, set on the other kinds")
    threshold: float = Field(ge=0, le=1, description="the decision threshold of the verdict this alert reports, in "
                                                     "[0, 1]: the arrival model's on arrival alerts (compare "
                                                     "arrival_score), the GCN's on the others (compare "
                                                     "final_score)")
    model_version: str = Field(description="the stored model version that scored, e.g. gcn-v3")
    neighbours: list[Influence] = Field(default_factory=list, description="up to 3 neighbours that weighed most, "
                                                                          "largest |weight| first")
    event_time: float = Field(description="when the producer sent the transaction, Unix seconds")
    processing_time: float = Field(description="when the worker emitted the alert, Unix seconds")


class PowerLawFit(BaseModel):
    """A power law p(x) ∝ x^−α fitted to the tail x ≥ xmin of a degree distribution (the powerlaw package)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    alpha: float = Field(description="exponent α, maximum-likelihood estimate")
    xmin: float = Field(description="where the tail starts, the value minimising the KS distance")
    ks_distance: float = Field(description="Kolmogorov-Smirnov distance between the tail and the fit, in [0, 1]")
    n_tail: int = Field(description="values in the tail (x ≥ xmin)")
    lognormal_loglik_ratio: float = Field(description="normalised log-likelihood ratio of power law vs lognormal "
                                                      "on the same tail: > 0 favours the power law, < 0 the "
                                                      "lognormal")
    lognormal_p: float = Field(description="p-value of that ratio's sign, in [0, 1]: small means the sign is "
                                           "significant")


class StepStats(_Record):
    """Network statistics of one closed step and of the replay so far; keyed by '<replay_id>:<step>'."""

    replay_id: ReplayId
    step: Step = Field(description="the closed step")
    nodes_step: int = Field(description="transactions of the step")
    edges_step: int = Field(description="directed edges within the step (each transaction pair once)")
    nodes_total: int = Field(description="transactions of the replay's closed steps up to this one")
    edges_total: int = Field(description="edges of the replay's closed steps up to this one")
    avg_degree: float = Field(description="edges_step / nodes_step: the average in-degree (= out-degree)")
    density: float = Field(description="edges_step / (nodes_step · (nodes_step − 1)), in [0, 1]")
    clustering: float = Field(description="global clustering coefficient of the step's undirected simple graph, "
                                          "3 · triangles / connected triples, in [0, 1]")
    triangles_step: int = Field(description="triangles in the step's undirected simple graph")
    in_degree_fit: PowerLawFit | None = Field(None, description="power law fitted to the step's in-degrees; null "
                                                                "when the tail is too small to fit")
    out_degree_fit: PowerLawFit | None = Field(None, description="power law fitted to the step's out-degrees; null "
                                                                 "when the tail is too small to fit")
    densification_alpha: float | None = Field(None, description="exponent α of E ∝ N^α over the cumulative (N, E) "
                                                                "of the closed steps; null with fewer than 3 of "
                                                                "them or when they cannot be fitted")
    densification_r2: float | None = Field(None, description="R² of that fit, in [0, 1]; null when α is")
    densification_alpha_window: float | None = Field(None, description="α over the last `window` closed steps; "
                                                                       "null likewise")
    window: int = Field(description="steps in the rolling densification window")
    missing_transactions: int = Field(0, ge=0, description="transactions the step's markers declared that had not "
                                                          "arrived when it closed (dead-lettered, or never sent); "
                                                          "not 0: the step's statistics and final scores are partial")
    dangling_edges: int = Field(0, ge=0, description="edges named by the step's transactions whose other end never "
                                                     "arrived; left out of the graph. Not 0: the statistics and final "
                                                     "scores are partial")
    computed_at: float = Field(description="when the worker closed the step, Unix seconds")


class DeadLetter(_Record):
    """A record the worker could not take, with the reason; keyed by the refused record's key."""

    reason: str = Field(description="why the record was refused, e.g. 'invalid record: step: Input should be "
                                    "greater than or equal to 1'")
    topic: str = Field(description="topic the refused record was read from")
    partition: int = Field(description="its partition")
    offset: int = Field(description="its offset")
    key: str | None = Field(None, description=f"its key's first {DEAD_LETTER_KEY_BYTES} bytes, decoded as UTF-8 "
                                               "(invalid bytes replaced); null if none")
    value: str = Field(description="the record as received, decoded as UTF-8 (invalid bytes replaced), truncated "
                                   f"to {DEAD_LETTER_EXCERPT} characters")
    received_at: float = Field(description="when the worker refused it, Unix seconds")


def parse_records(values: Sequence[bytes]) -> list[TopicRecord | ValidationError]:
    """Each JSON value of the transactions topic as its record, or the error validating it: the same as
    ``TOPIC_EVENT.validate_json`` one by one, but the transactions' features — most of a record and of its parse —
    are decoded and checked in one call for the batch. A batch holding a bad feature string is decoded again one
    record at a time, so every bad record gets the reason it would get alone."""
    out: list[TopicRecord | ValidationError] = []
    deferred: list[tuple[int, TxEvent]] = []  # the events whose features are still base64, and where they are
    for v in values:
        try:
            record = TOPIC_EVENT.validate_json(v, context=_DEFER_FEATURES)
        except ValidationError as e:
            out.append(e)
            continue
        if isinstance(record, TxEvent) and isinstance(record.features, str):
            deferred.append((len(out), record))
        out.append(record)
    if not deferred:
        return out
    text = "".join(cast(str, e.features) for _, e in deferred)
    rows = np.zeros((len(deferred), N_FEATURES), dtype="<f4")
    good: np.ndarray = np.zeros(len(deferred), dtype=bool)
    try:
        rows = np.frombuffer(binascii.a2b_base64(text, strict_mode=True), dtype="<f4").reshape(rows.shape)
        good = np.asarray(np.isfinite(rows).all(axis=1))
    except (binascii.Error, ValueError):  # a character outside base64, or padding inside the batch
        pass  # every event of the batch is decoded alone
    for j, (i, event) in enumerate(deferred):
        if good[j]:
            event.__dict__["features"] = rows[j]  # frozen, and its validator left this field to this function
        else:
            try:
                out[i] = TOPIC_EVENT.validate_json(values[i])
            except ValidationError as e:
                out[i] = e
    return out


def validation_reason(e: ValidationError) -> str:
    """A one-line reason for a record that failed validation: where, what, and how many more problems."""
    first = e.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    more = f" (+{e.error_count() - 1} more)" if e.error_count() > 1 else ""
    return f"{where + ': ' if where else ''}{first['msg']}{more}"
