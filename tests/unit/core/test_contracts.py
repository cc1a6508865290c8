"""Wire contracts: round trips, the compact feature encoding, what is refused, the exported JSON Schemas."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import numpy as np
import pytest
from jsonschema import Draft202012Validator
from pydantic import BaseModel, ValidationError

from txmon.core.contracts import (
    SCHEMA_VERSION,
    TOPIC_EVENT,
    Alert,
    DeadLetter,
    Influence,
    PowerLawFit,
    ReplayEnd,
    StepEnd,
    StepStats,
    TxEvent,
    encode_features,
    parse_records,
    validation_reason,
)
from txmon.core.schemas import RECORDS, RecordName, json_schema, type_text, update_doc
from txmon.core.tx_batch import TxBatchHeader, encode_events


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


def _with_features(features: str) -> bytes:
    raw = json.loads(_event().model_dump_json())
    raw["features"] = features
    return json.dumps(raw).encode()


_BAD_FEATURES = {  # each the length of a good feature string (880 characters), so the batch decode takes them up
    "a character outside base64": "*" + encode_features(np.ones(165, dtype=np.float32))[1:],
    "padding inside the batch": encode_features(np.ones(165, dtype=np.float32))[:-2] + "==",
    "nan": encode_features(np.r_[np.zeros(164), np.nan].astype(np.float32)),
    "non-ASCII": "é" + encode_features(np.ones(165, dtype=np.float32))[1:],
}


@pytest.mark.parametrize("bad", sorted(_BAD_FEATURES))
def test_parse_records_is_validate_json_one_by_one(bad: str) -> None:
    rng = np.random.default_rng(0)
    events = [_event(seq=i, tx_id=100 + i, features=rng.normal(size=165).astype(np.float32)) for i in range(6)]
    values = [e.model_dump_json().encode() for e in events]
    values[2] = _with_features(_BAD_FEATURES[bad])
    values.insert(4, StepEnd(replay_id="r1", step=3, count=6, partitions=2, event_time=1.0).model_dump_json().encode())
    values.insert(5, b'{"kind": "tx"')
    values.append(_with_features("not base64!"))
    got = parse_records(values)
    assert len(got) == len(values)
    for value, record in zip(values, got, strict=True):
        try:
            alone = TOPIC_EVENT.validate_json(value)
        except ValidationError as e:
            assert isinstance(record, ValidationError) and validation_reason(record) == validation_reason(e)
            continue
        assert not isinstance(record, ValidationError) and type(record) is type(alone)
        assert record.model_dump(exclude={"features"}) == alone.model_dump(exclude={"features"})
        if isinstance(alone, TxEvent):
            assert isinstance(record, TxEvent) and record.features.dtype == np.float32
            assert np.array_equal(record.features, alone.features) and record.features.shape == (165,)
    assert sum(isinstance(r, ValidationError) for r in got) == 3


def test_parse_records_decodes_a_clean_batch_at_once() -> None:
    events = [_event(seq=i, features=np.full(165, i, dtype=np.float32)) for i in range(3)]
    got = parse_records([e.model_dump_json().encode() for e in events])
    assert [float(r.features[0]) for r in got if isinstance(r, TxEvent)] == [0.0, 1.0, 2.0]
    # one buffer for the batch: the rows are views of it, not arrays decoded one by one
    assert all(isinstance(r, TxEvent) and r.features.base is not None for r in got)


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


# -- the exported JSON Schemas and the docs generated from them ------------------------------------------------------


def _records() -> dict[RecordName, list[BaseModel]]:
    """Records as the producer and the worker build them, optional parts both set and unset."""
    now = time.time()
    fit = PowerLawFit(alpha=2.6, xmin=3.0, ks_distance=0.04, n_tail=120, lognormal_loglik_ratio=-0.8, lognormal_p=0.4)
    alert = dict(kind="arrival", replay_id="r1", tx_id=5, step=35, arrival_score=0.91, threshold=0.7,
                 model_version="gcn-v1", event_time=now - 0.5, processing_time=now, alert_id="r1:5:arrival")
    stats = dict(replay_id="r1", step=35, nodes_step=100, edges_step=115, nodes_total=900, edges_total=1030,
                 avg_degree=1.15, density=0.0116, clustering=0.001, triangles_step=1, window=10, computed_at=now)
    return {
        RecordName.alert: [
            Alert(**alert),
            Alert(**{**alert, "kind": "retracted", "alert_id": "r1:5:retracted", "final_score": 0.2,
                     "neighbours": [Influence(tx_id=7, weight=1.25), Influence(tx_id=8, weight=-0.5)]}),
        ],
        RecordName.stats: [
            StepStats(**stats),
            StepStats(**stats, in_degree_fit=fit, out_degree_fit=fit, densification_alpha=1.02,
                      densification_r2=0.99, densification_alpha_window=1.01),
        ],
        RecordName.dead_letter: [
            DeadLetter(reason="invalid record: step: Input should be greater than or equal to 1", topic="t",
                       partition=2, offset=17, key="42", value='{"kind": "tx", "step": 0}', received_at=now),
            DeadLetter(reason="empty record", topic="t", partition=0, offset=0, value="", received_at=now),
        ],
        RecordName.transaction: [
            _event(),
            StepEnd(replay_id="r1", step=3, count=10, partitions=4, event_time=now),
            ReplayEnd(replay_id="r1", first_step=1, last_step=3, count=30, partitions=4, event_time=now),
        ],
        RecordName.transaction_batch: [_batch_header(encode_events([_event(), _event(seq=8, tx_id=43)]))],
    }


def _batch_header(value: bytes) -> TxBatchHeader:
    """The header of a binary tx_batch record, as sent."""
    h = int.from_bytes(value[4:8], "little")
    return TxBatchHeader.model_validate_json(value[8:8 + h])


def _as_json(record: BaseModel) -> dict:
    return json.loads(record.model_dump_json())  # exactly what goes on the topic


@pytest.mark.parametrize("name", list(RecordName))
def test_every_schema_is_valid_json_schema_with_id_and_version(name: RecordName) -> None:
    schema = json_schema(name)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"urn:txmon:schema:{name.value}:v{SCHEMA_VERSION}"
    assert schema["title"] and schema["x-schema-version"] == SCHEMA_VERSION


@pytest.mark.parametrize("name", list(RecordName))
def test_real_records_validate_against_their_schema(name: RecordName) -> None:
    validator = Draft202012Validator(json_schema(name))
    for record in _records()[name]:
        errors = [e.message for e in validator.iter_errors(_as_json(record))]
        assert not errors, f"{type(record).__name__}: {errors}"


def _set(path: str, value: object):
    def mutate(raw: dict) -> None:
        *parents, last = path.split(".")
        for p in parents:
            raw = raw[int(p)] if isinstance(raw, list) else raw[p]
        if value is _DELETE:
            del raw[last]
        else:
            raw[last] = value
    mutate.label = f"{path}-deleted" if value is _DELETE else f"{path}={value!r}"
    return mutate


_DELETE = object()
_WRONG = [
    (RecordName.alert, 0, _set("arrival_score", 1.5)),
    (RecordName.alert, 0, _set("kind", "maybe")),
    (RecordName.alert, 0, _set("tx_id", "abc")),
    (RecordName.alert, 0, _set("tx_id", 0)),
    (RecordName.alert, 0, _set("label", 1)),  # unknown field
    (RecordName.alert, 0, _set("processing_time", _DELETE)),
    (RecordName.alert, 1, _set("neighbours.0.weight", "heavy")),
    (RecordName.stats, 0, _set("step", 0)),
    (RecordName.stats, 1, _set("in_degree_fit.alpha", None)),
    (RecordName.stats, 1, _set("out_degree_fit.extra", 1)),
    (RecordName.dead_letter, 0, _set("offset", "x")),
    (RecordName.dead_letter, 0, _set("reason", _DELETE)),
    (RecordName.transaction, 0, _set("kind", _DELETE)),  # the union needs kind to pick the variant
    (RecordName.transaction, 0, _set("features", 12)),
    (RecordName.transaction, 1, _set("partitions", 0)),
    (RecordName.transaction, 2, _set("features", "")),  # a replay_end has no features
]


@pytest.mark.parametrize(("name", "which", "mutate"), _WRONG, ids=lambda x: getattr(x, "label", None))
def test_a_wrong_record_fails_the_schema_and_the_model_alike(name: RecordName, which: int, mutate) -> None:
    raw = _as_json(_records()[name][which])
    mutate(raw)
    assert list(Draft202012Validator(json_schema(name)).iter_errors(raw)), raw
    with pytest.raises(ValidationError):
        RECORDS[name].adapter.validate_json(json.dumps(raw))


def test_docs_tables_match_the_models() -> None:
    doc = Path(__file__).resolve().parents[3] / "docs" / "contracts.md"
    text = doc.read_text(encoding="utf-8")
    assert update_doc(text) == text, "docs/contracts.md is out of date: run python -m txmon.core.schemas --write " \
                                     "docs/contracts.md"


def test_docs_describe_every_field() -> None:
    for name in RecordName:
        schema = json_schema(name)
        for obj in [schema, *schema.get("$defs", {}).values()]:
            for field, prop in obj.get("properties", {}).items():
                assert prop.get("description"), f"{name.value}: {field} has no description"


def test_type_text_reads_like_the_schema() -> None:
    assert type_text({"anyOf": [{"type": "number", "minimum": 0, "maximum": 1}, {"type": "null"}]}) \
        == "number in [0, 1] | null"
    assert type_text({"type": "integer", "exclusiveMinimum": 0}) == "integer > 0"
    assert type_text({"type": "array", "items": {"$ref": "#/$defs/Influence"}}) == "array of Influence"
    assert type_text({"type": "array", "prefixItems": [{"type": "integer"}] * 2}) == "[integer, integer]"
    assert type_text({"enum": ["a", "b"], "type": "string"}) == '"a" | "b"'
