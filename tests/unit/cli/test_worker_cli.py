"""``txmon worker`` refuses to start, with the reason, when its model cannot be served: it verifies the weights
and builds the GCN before joining its consumer group (nothing here reaches Kafka or Redis)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from model_store.manifest import ModelManifest
from model_store.models.gcn import GCN
from model_store.registry import ModelStore
from txmon.cli import app
from txmon.core.elliptic_format import N_FEATURES

# Ports nothing listens on: the worker must fail before it would try them.
UNREACHABLE = {"TXMON_KAFKA_BOOTSTRAP": "127.0.0.1:9", "TXMON_REDIS_URL": "redis://127.0.0.1:9/0"}


def _store_gcn(root: Path) -> Path:
    gcn = GCN(N_FEATURES, hidden=8)
    m = ModelStore(root).save("gcn", gcn.state_dict(), architecture={**gcn.architecture(), "feature_set": "all"},
                              threshold=0.5, metrics={}, training={}, dataset_fingerprint="f",
                              feature_mean=np.zeros(N_FEATURES).tolist(), feature_std=np.ones(N_FEATURES).tolist(),
                              promote=True)
    return root / m.version


def _worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    for k, v in {**UNREACHABLE, "TXMON_MODEL_DIR": str(tmp_path / "models")}.items():
        monkeypatch.setenv(k, v)
    result = CliRunner().invoke(app, ["worker", "--web-port", "0"])
    return result.exit_code, " ".join(result.output.split())


def test_an_architecture_the_weights_do_not_fit_stops_the_worker_before_it_starts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    version_dir = _store_gcn(tmp_path / "models")
    manifest = json.loads((version_dir / "manifest.json").read_text())
    manifest["architecture"]["hidden"] = 16  # the stored weights are 8 wide; written so (serving sha256 matches)
    manifest["serving_sha256"] = ModelManifest.model_validate(manifest).serving_digest()
    (version_dir / "manifest.json").write_text(json.dumps(manifest))
    code, out = _worker(tmp_path, monkeypatch)
    assert code == 2, out
    assert "cannot be built from the manifest's architecture and its weights" in out and "Traceback" not in out


@pytest.mark.parametrize("field", ["threshold", "architecture", "feature_std"])
def test_a_hand_edited_manifest_stops_the_worker_before_it_starts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, field: str) -> None:
    """An edited threshold used to be served silently: the serving sha256 now covers it, the architecture and
    the normalisation."""
    version_dir = _store_gcn(tmp_path / "models")
    manifest = json.loads((version_dir / "manifest.json").read_text())
    if field == "feature_std":
        manifest["feature_std"] = [2 * v for v in manifest["feature_std"]]
    elif field == "architecture":
        manifest["architecture"] = {**manifest["architecture"], "hidden": 16}
    else:
        manifest["threshold"] = 0.01
    (version_dir / "manifest.json").write_text(json.dumps(manifest))
    code, out = _worker(tmp_path, monkeypatch)
    assert code == 2, out
    assert "serving sha256 mismatch" in out and "the manifest was edited" in out and "Traceback" not in out


def test_weights_that_fail_their_checksum_stop_the_worker_before_it_starts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    version_dir = _store_gcn(tmp_path / "models")
    state = torch.load(version_dir / "weights.pt", weights_only=True)
    state[next(iter(state))] += 1.0
    torch.save(state, version_dir / "weights.pt")
    code, out = _worker(tmp_path, monkeypatch)
    assert code == 2, out
    assert "sha256 mismatch" in out and "Traceback" not in out
