"""The versioned model store: round trip, versions, latest pointers, refusal of tampered or mismatched artifacts."""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from model_store.manifest import ModelManifest
from model_store.registry import ArrivalPart, BrokenVersion, ModelStore, ModelStoreError
from txmon.cli.common import console, err_console
from txmon.cli.models import models_app
from txmon.core.files import sha256_file

N = 4


def _save(store: ModelStore, model_type: str = "gcn", **kw: Any) -> ModelManifest:
    args: dict[str, Any] = dict(
        architecture={"n_features": N, "hidden": [8]}, threshold=0.5,
        metrics={"test": {"f1": 0.8, "precision": 0.9, "recall": 0.7}}, training={"epochs": 3, "lr": 0.01},
        dataset_fingerprint="abc123def4567890", feature_mean=[0.0] * N, feature_std=[1.0] * N,
    )
    state = kw.pop("state_dict", {"w": torch.arange(N * 2, dtype=torch.float32).reshape(N, 2), "b": torch.zeros(2)})
    return store.save(model_type, state, **{**args, **kw})


def _edit_manifest(store: ModelStore, version: str, **changes: Any) -> None:
    path = store.root / version / "manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "models")


def test_round_trip(store: ModelStore) -> None:
    state = {"w": torch.randn(N, 3), "step": torch.tensor(7, dtype=torch.int64)}
    saved = _save(store, state_dict=state, threshold=0.42)
    m, loaded = store.load(saved.version)
    assert m == saved and m.version == "gcn-v1" and m.n_features == N and m.threshold == 0.42
    assert m.created_at.utcoffset().total_seconds() == 0 and m.training == {"epochs": 3, "lr": 0.01}
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)
    assert store.load("latest", model_type="gcn")[0] == saved


def test_numpy_and_tuples_are_stored_as_plain_json(store: ModelStore) -> None:
    saved = _save(store, architecture={"n_features": np.int64(N), "hidden": (8, 4)}, threshold=np.float32(0.25),
                  metrics={"test": {"f1": np.float32(0.5), "support": np.int64(12)}},
                  feature_mean=np.zeros(N), feature_std=torch.ones(N))
    m = store.manifest(saved.version)
    assert m == saved and m.architecture["hidden"] == [8, 4] and m.metrics["test"]["support"] == 12


def test_concurrent_saves_get_distinct_versions(store: ModelStore) -> None:
    with ThreadPoolExecutor(8) as pool:
        versions = sorted(pool.map(lambda _: _save(store).version, range(8)), key=lambda v: int(v.split("-v")[1]))
    assert versions == [f"gcn-v{i}" for i in range(1, 9)]
    assert store.latest("gcn") in versions


def test_empty_state_dict_is_allowed(store: ModelStore) -> None:
    m = _save(store, "lpa", state_dict={})
    assert store.load(m.version)[1] == {}


def test_versions_increment_per_type(store: ModelStore) -> None:
    assert [_save(store, t).version for t in ("gcn", "gcn", "rf", "gcn")] == ["gcn-v1", "gcn-v2", "rf-v1", "gcn-v3"]
    assert [m.version for m in store.list()] == ["gcn-v1", "gcn-v2", "gcn-v3", "rf-v1"]
    assert [m.version for m in store.list("rf")] == ["rf-v1"]


def test_hyphenated_types_are_their_own_line(store: ModelStore) -> None:
    assert [_save(store, t).version for t in ("rf", "rf-local", "rf-local", "rf")] == [
        "rf-v1", "rf-local-v1", "rf-local-v2", "rf-v2"]
    assert (store.latest("rf"), store.latest("rf-local")) == ("rf-v1", "rf-local-v1")
    assert [m.version for m in store.list("rf-local")] == ["rf-local-v1", "rf-local-v2"]
    for bad in ("GCN", "gcn-", "gcn v2", "../x", ""):
        with pytest.raises(ModelStoreError, match="model type"):
            _save(store, bad)


def test_claimed_but_incomplete_version_is_skipped_not_reused(store: ModelStore) -> None:
    _save(store)
    (store.root / "gcn-v2").mkdir()  # a trainer that crashed (or is still writing) before its manifest
    assert [m.version for m in store.list()] == ["gcn-v1"]
    assert _save(store).version == "gcn-v3"
    with pytest.raises(ModelStoreError, match="available: gcn-v1, gcn-v3"):
        store.manifest("gcn-v2")


def test_latest_is_per_type_and_promote_semantics(store: ModelStore) -> None:
    assert store.latest("gcn") is None
    _save(store)                                   # first of its type: promoted
    _save(store)                                   # promote=None: gcn already has a latest
    _save(store, "rf")                             # another type never replaces the gcn latest
    assert (store.latest("gcn"), store.latest("rf")) == ("gcn-v1", "rf-v1")
    _save(store, promote=True)
    assert store.latest("gcn") == "gcn-v3"
    _save(store, "mlp", promote=False)             # never, even as the first of its type
    assert store.latest("mlp") is None
    assert store.promote("gcn-v2") == "gcn-v3"
    assert store.latest("gcn") == "gcn-v2" and store.latest("rf") == "rf-v1"
    assert json.loads((store.root / "latest.json").read_text()) == {"gcn": "gcn-v2", "rf": "rf-v1"}
    with pytest.raises(ModelStoreError, match="no latest mlp model"):
        store.load("latest", model_type="mlp")
    with pytest.raises(ModelStoreError, match="needs a model type"):
        store.load("latest")


def test_unknown_version_names_store_and_available(store: ModelStore) -> None:
    _save(store)
    with pytest.raises(ModelStoreError, match="gcn-v9") as e:
        store.load("gcn-v9")
    assert str(store.root) in str(e.value) and "available: gcn-v1" in str(e.value)
    with pytest.raises(ModelStoreError):
        store.promote("gcn-v9")


def test_flipped_byte_is_refused(store: ModelStore) -> None:
    m = _save(store)
    path = store.root / m.version / "weights.pt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelStoreError, match="sha256 mismatch.*modified or corrupted"):
        store.load(m.version)
    with pytest.raises(ModelStoreError, match="sha256"):
        store.promote(m.version)


def test_mismatches_are_refused(store: ModelStore) -> None:
    m = _save(store)
    with pytest.raises(ModelStoreError, match=f"trained on {N} features, but 5"):
        store.load(m.version, n_features=5)
    with pytest.raises(ModelStoreError, match="architecture mismatch: hidden"):
        store.load(m.version, expect_architecture={"hidden": [16]})
    with pytest.raises(ModelStoreError, match="dropout='<missing>'"):
        store.load(m.version, expect_architecture={"dropout": 0.5})
    with pytest.raises(ModelStoreError, match="not rf"):
        store.load(m.version, model_type="rf")
    # A tuple matches the list it became in manifest.json.
    assert store.load(m.version, n_features=N, expect_architecture={"hidden": (8,)}, model_type="gcn")[0] == m


@pytest.mark.parametrize("state", [{"w": [1.0, 2.0]}, {"w": torch.zeros(1), "opt": {"lr": 0.1}}, [torch.zeros(1)]])
def test_non_tensor_state_dict_is_refused_on_save(store: ModelStore, state: Any) -> None:
    with pytest.raises(ModelStoreError, match="state_dict must"):
        _save(store, state_dict=state)
    assert not store.root.exists() or not any(store.root.iterdir())


@pytest.mark.parametrize(("change", "match"), [
    ({"feature_mean": [0.0] * (N - 1)}, "feature_mean has 3 values but n_features is 4"),
    ({"feature_std": [1.0, 0.0, 1.0, 1.0]}, r"feature_std\[1\] is 0.0"),
    ({"architecture": {"hidden": 8}}, "n_features"),
    ({"threshold": 1.5}, "threshold"),
    ({"metrics": {"auc": object()}}, "cannot save"),
])
def test_invalid_manifest_fields_are_refused_before_claiming(store: ModelStore, change: dict, match: str) -> None:
    with pytest.raises(ModelStoreError, match=match):
        _save(store, **change)
    assert not store.root.exists() or not any(p.is_dir() for p in store.root.iterdir())


class _Payload:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def test_pickle_payload_with_matching_sha_is_refused(store: ModelStore, tmp_path: Path) -> None:
    m = _save(store)
    path = store.root / m.version / "weights.pt"
    marker = tmp_path / "pwned"
    torch.save({"w": _Payload(marker)}, path)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()  # an adversary rewrites both checksums
    _edit_manifest(store, m.version, weights_sha256=sha,
                   serving_sha256=m.model_copy(update={"weights_sha256": sha}).serving_digest())
    with pytest.raises(ModelStoreError, match="not a plain tensor file and was refused"):
        store.load(m.version)
    assert not marker.exists()


def test_broken_manifest_is_reported_not_skipped(store: ModelStore) -> None:
    _save(store)
    _save(store)
    (store.root / "gcn-v2" / "manifest.json").write_text("{not json")
    entries = store.scan()
    assert isinstance(entries[0], ModelManifest) and isinstance(entries[1], BrokenVersion)
    with pytest.raises(ModelStoreError, match="gcn-v2"):
        store.list()
    with pytest.raises(ModelStoreError, match="not a valid manifest"):
        store.manifest("gcn-v2")


def test_manifest_copied_under_another_name_is_refused(store: ModelStore) -> None:
    m = _save(store)
    os.rename(store.root / m.version, store.root / "gcn-v7")
    with pytest.raises(ModelStoreError, match="describes gcn-v1, not gcn-v7"):
        store.manifest("gcn-v7")


# -- CLI ---------------------------------------------------------------------------------------------------------

runner = CliRunner()
cli = typer.Typer()
cli.add_typer(models_app, name="models")


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    # rich wraps at 80 columns under CliRunner; widen it so table cells and messages stay on one line.
    monkeypatch.setattr(console, "width", 300)
    monkeypatch.setattr(err_console, "width", 300)


def _real_gcn() -> dict[str, Any]:
    """What `models show` needs for a gcn: weights its architecture builds (it checks what a worker checks)."""
    from model_store.models.gcn import GCN

    gcn = GCN(N, hidden=8)
    return {"state_dict": gcn.state_dict(), "architecture": {**gcn.architecture(), "feature_set": "all"}}


def test_cli_list_show_promote(store: ModelStore) -> None:
    _save(store, **_real_gcn())
    _save(store, metrics={"f1": 0.612}, **_real_gcn())
    _save(store, "rf", metrics={})
    (store.root / "rf-v2").mkdir()
    (store.root / "rf-v2" / "manifest.json").write_text("[]")
    result = runner.invoke(cli, ["models", "list", "--store", str(store.root)])
    assert result.exit_code == 0, result.output
    for text in ("gcn-v1", "gcn-v2", "rf-v1", "rf-v2", "BROKEN", "0.800", "0.612", "abc123def456"):
        assert text in result.output
    assert "rf-v1" not in runner.invoke(cli, ["models", "list", "--type", "gcn", "--store", str(store.root)]).output

    result = runner.invoke(cli, ["models", "show", "latest", "--type", "gcn", "--store", str(store.root), "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["manifest"]["version"] == "gcn-v1" and shown["weights_verified"] is True
    result = runner.invoke(cli, ["models", "show", "gcn-v2", "--store", str(store.root)])
    assert result.exit_code == 0 and "verified" in result.output

    result = runner.invoke(cli, ["models", "promote", "gcn-v2", "--store", str(store.root)])
    assert result.exit_code == 0 and "latest gcn is now gcn-v2 (was gcn-v1)" in result.output
    assert store.latest("gcn") == "gcn-v2"


def test_cli_errors_are_clean(store: ModelStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TXMON_MODEL_DIR", str(store.root))  # the default store comes from the settings
    m = _save(store)
    for args in (["show", "gcn-v9"], ["promote", "gcn-v9"], ["show", "latest"]):
        result = runner.invoke(cli, ["models", *args])
        assert result.exit_code == 2, result.output
        assert "error:" in result.output and "Traceback" not in result.output
    assert "available: gcn-v1" in runner.invoke(cli, ["models", "show", "gcn-v9"]).output

    path = store.root / m.version / "weights.pt"
    path.write_bytes(path.read_bytes() + b"\0")
    result = runner.invoke(cli, ["models", "show", m.version])
    assert result.exit_code == 1 and "REFUSED" in result.output and "sha256 mismatch" in result.output
    result = runner.invoke(cli, ["models", "promote", m.version])
    assert result.exit_code == 2 and "sha256 mismatch" in result.output and "Traceback" not in result.output


def test_cli_show_refuses_a_gcn_that_a_worker_could_not_build(store: ModelStore) -> None:
    m = _save(store)  # weights that verify, but no GCN has them
    result = runner.invoke(cli, ["models", "show", m.version, "--store", str(store.root)])
    assert result.exit_code == 1 and "REFUSED" in result.output
    assert "cannot be built from the manifest's architecture" in " ".join(result.output.split())


def _arrival(threshold: float = 0.7) -> ArrivalPart:
    return ArrivalPart({"w": torch.ones(N, 2)}, {"n_features": N, "hidden": 4}, threshold, 256,
                       {"val": {"f1": 0.8}}, {"epochs": 3})


def test_the_arrival_model_is_part_of_its_version(store: ModelStore) -> None:
    """Its own weights file, threshold, metrics and sha256 in the manifest; verified with the version."""
    saved = _save(store, arrival=_arrival())
    m, _ = store.load(saved.version)
    assert m.arrival is not None and m.arrival.threshold == 0.7 and m.arrival.window_size == 256
    assert m.arrival.weights_sha256 == sha256_file(store.root / m.version / "arrival.pt")
    assert torch.equal(store.load_arrival(m)["w"], torch.ones(N, 2))
    assert m.serving_digest() != m.model_copy(update={"arrival": None}).serving_digest()
    # a version without one (trained before txmon stored arrival models) still loads; asking for it says why
    plain = _save(store)
    assert store.manifest(plain.version).arrival is None
    with pytest.raises(ModelStoreError, match="has no arrival model"):
        store.load_arrival(plain)


def test_a_tampered_arrival_model_refuses_the_version(store: ModelStore) -> None:
    saved = _save(store, arrival=_arrival())
    path = store.root / saved.version / "arrival.pt"
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(ModelStoreError, match="arrival.pt sha256 mismatch"):
        store.load(saved.version)
    again = _save(store, arrival=_arrival())
    arrival = json.loads((store.root / again.version / "manifest.json").read_text())["arrival"]
    _edit_manifest(store, again.version, arrival={**arrival, "threshold": 0.1})  # a looser arrival verdict
    with pytest.raises(ModelStoreError, match="serving sha256 mismatch"):
        store.load(again.version)


def test_an_arrival_model_reads_the_features_its_gcn_reads(store: ModelStore) -> None:
    part = ArrivalPart({"w": torch.ones(2)}, {"n_features": N + 1}, 0.5, 256, {}, {})
    with pytest.raises(ModelStoreError, match="they share one normalisation"):
        _save(store, arrival=part)
    assert not list(store.root.glob("gcn-v*")) if store.root.exists() else True


def test_a_served_version_without_an_arrival_model_says_so(store: ModelStore) -> None:
    from model_store.serving import served_model
    from replay.data.dataset import EllipticDataset

    ds = EllipticDataset(np.array([1, 2]), np.array([1, 1], np.int16), np.zeros((2, 165), np.float32),
                         np.array([-1, -1], np.int8), np.zeros((0, 2), np.int64), fingerprint="abc123def4567890")
    old = _save(store)  # trained on ds (the fingerprint), before arrival models
    m, why = served_model(ds, 1, store)
    assert m.version == old.version and "no arrival model" in why and "txmon train gcn" in why
    new = _save(store, arrival=_arrival(), promote=True)
    m, why = served_model(ds, 1, store)
    assert m.version == new.version and "arrival" not in why
