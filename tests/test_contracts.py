"""Wire contracts: round trips, the compact feature encoding, and what is refused."""

from __future__ import annotations

import base64
import json
import time

import numpy as np
import pytest
from pydantic import ValidationError

from txmon.contracts import TOPIC_EVENT, Alert, ReplayEnd, StepEnd, TxEvent, encode_features


def _event(**kw) -> TxEvent:
    base = dict(replay_id="r1", tx_id=42, step=3, seq=7, features=np.linspace(-1, 1, 165, dtype=np.float32),
                inputs_from=[(11, 0)], outputs_to=[(12, 1)], event_time=time.time())
    return TxEvent(**{**base, **kw})


def test_tx_event_round_trips_exactly() -> None:
    e = _event()
    back = TOPIC_EVENT.validate_json(e.model_dump_json())
    assert isinstance(back, TxEvent)
    assert back.features.dtype == np.float32 and np.array_equal(back.features, e.features)
    assert back.inputs_from == [(11, 0)] and back.outputs_to == [(12, 1)] and back.seq == 7


def test_features_travel_as_base64_float32() -> None:
    raw = json.loads(_event().model_dump_json())
    assert isinstance(raw["features"], str)
    assert len(base64.b64decode(raw["features"])) == 165 * 4


@pytest.mark.parametrize(("features", "message"), [
    ("not base64!", "not valid base64"),
    (encode_features(np.zeros(164, dtype=np.float32)), "165 float32"),
    (encode_features(np.r_[np.zeros(164), np.nan].astype(np.float32)), "feature 164 is nan"),
    (encode_features(np.r_[np.inf, np.zeros(164)].astype(np.float32)), "feature 0 is inf"),
])
def test_bad_features_are_refused_with_the_reason(features: str, message: str) -> None:
    raw = json.loads(_event().model_dump_json())
    raw["features"] = features
    with pytest.raises(ValidationError, match=message):
        TOPIC_EVENT.validate_json(json.dumps(raw))


@pytest.mark.parametrize(("field", "value"), [("tx_id", 0), ("step", 0), ("seq", -1), ("kind", "nope")])
def test_out_of_range_fields_are_refused(field: str, value: object) -> None:
    raw = json.loads(_event().model_dump_json())
    raw[field] = value
    with pytest.raises(ValidationError):
        TOPIC_EVENT.validate_json(json.dumps(raw))


def test_unknown_fields_are_refused() -> None:
    raw = json.loads(_event().model_dump_json())
    raw["label"] = 1  # labels never travel on the live topic
    with pytest.raises(ValidationError, match="label"):
        TOPIC_EVENT.validate_json(json.dumps(raw))


def test_markers_are_told_apart_by_kind() -> None:
    now = time.time()
    step_end = StepEnd(replay_id="r1", step=3, count=10, partitions=4, event_time=now)
    replay_end = ReplayEnd(replay_id="r1", first_step=1, last_step=3, count=30, partitions=4, event_time=now)
    assert isinstance(TOPIC_EVENT.validate_json(step_end.model_dump_json()), StepEnd)
    assert isinstance(TOPIC_EVENT.validate_json(replay_end.model_dump_json()), ReplayEnd)


def test_alert_scores_are_probabilities() -> None:
    with pytest.raises(ValidationError):
        Alert(alert_id="r1:5:arrival", kind="arrival", replay_id="r1", tx_id=5, step=1, arrival_score=1.5,
              threshold=0.5, model_version="gcn-v1", event_time=0.0, processing_time=0.0)
