"""`txmon train` and `txmon evaluate` end to end on a small synthetic data set written as CSV."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from model_store.registry import ModelStore
from txmon.cli import app

pytestmark = pytest.mark.filterwarnings("ignore:Sparse:UserWarning")

runner = CliRunner()


def _invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def _ok(result) -> None:
    assert result.exit_code == 0, result.output + repr(result.exception)


def _clean_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert "error:" in result.output, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit), result.output
    # Rich may wrap long lines; compare without line breaks.
    text = " ".join(result.output.split())
    for f in fragments:
        assert f in text, result.output


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Cache and default store under tmp, so nothing is written to ~/.cache or ./models."""
    root = tmp_path_factory.mktemp("env")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TXMON_CACHE_DIR", str(root / "cache"))
        mp.setenv("TXMON_MODEL_DIR", str(root / "default-models"))
        yield root
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def trained(env: Path) -> tuple[Path, Path]:
    data, store = env / "data", env / "store"
    _ok(_invoke("data", "synth", "--out", data, "--scale", "0.05", "--seed", "1"))
    for args in (["gcn", "--epochs", "5"], ["rf"], ["lpa", "--split", "random"]):
        result = _invoke("train", *args, "--data", data, "--store", store)
        _ok(result)
        assert "stored as" in result.output
    return data, store


def test_train_stores_one_version_per_model(trained: tuple[Path, Path], env: Path) -> None:
    _, store_dir = trained
    store = ModelStore(store_dir)
    assert [m.version for m in store.list()] == ["gcn-v1", "lpa-v1", "rf-v1"]
    assert {m.model_type: m.training["split"] for m in store.list()} == {"gcn": "temporal", "rf": "temporal",
                                                                          "lpa": "random"}
    assert store.manifest("gcn-v1").training["epochs"] == 5
    assert (store_dir / "gcn-v1" / "training_curves.png").is_file()
    arrival = store.manifest("gcn-v1").arrival  # a gcn version holds its arrival model; the others none
    assert arrival is not None and arrival.window_size == 256 and "comparison" in arrival.metrics
    assert store.manifest("rf-v1").arrival is None
    assert (store_dir / "gcn-v1" / "arrival_training_curves.png").is_file()
    assert (store_dir / "rf-v1" / "confusion_test.png").is_file()
    assert not (env / "default-models").exists()
    assert (env / "cache").is_dir()  # the loader's binary copy went to TXMON_CACHE_DIR


@pytest.mark.parametrize(("split", "models"), [("temporal", ["gcn", "rf"]), ("random", ["lpa"])])
def test_evaluate_json_reproduces_stored_test_metrics(trained: tuple[Path, Path], split: str,
                                                      models: list[str]) -> None:
    data, store_dir = trained
    result = _invoke("evaluate", "--data", data, "--store", store_dir, "--split", split, "--json")
    _ok(result)
    report = json.loads(result.stdout)
    assert sorted(report["models"]) == models  # only the models trained on this split
    store = ModelStore(store_dir)
    for model_type, ev in report["models"].items():
        manifest = store.manifest(ev["version"])
        stored = manifest.metrics["test"]
        assert ev["threshold"] == manifest.threshold
        assert ev["f1"] == stored["f1"], model_type
        assert ev["confusion"] == stored["confusion"], model_type
        assert ev["n"] == stored["n"] == report["split"]["test"]
        assert {int(k): v for k, v in ev["f1_per_step"].items()} == \
            {int(k): v for k, v in manifest.metrics["test_f1_per_step"].items()}
        if manifest.arrival is not None:  # re-simulated from the stored arrival model: training's figures
            got, saved = ev["arrival"]["overall"], manifest.arrival.metrics["comparison"]["overall"]
            assert got["arrival"]["f1"] == saved["arrival"]["f1"] and got["final"]["f1"] == saved["final"]["f1"]
            assert got["arrival_alerts"] == saved["arrival_alerts"] and got["retracted"] == saved["retracted"]
            assert ev["arrival"]["arrival_threshold"] == manifest.arrival.threshold


def test_evaluate_out_writes_json_and_plot(trained: tuple[Path, Path], env: Path) -> None:
    data, store_dir = trained
    out = env / "eval-out"
    result = _invoke("evaluate", "--data", data, "--store", store_dir, "--out", out)
    _ok(result)
    report = json.loads((out / "evaluation.json").read_text())
    assert sorted(report["models"]) == ["gcn", "rf"] and report["split"]["name"] == "temporal"
    png = out / "f1_per_step.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "illicit F1 per test step" in result.output
    assert (out / "arrival_pr_gcn.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "arrival model against the GCN at step close" in result.output


def test_train_unknown_model_is_a_clean_error(trained: tuple[Path, Path]) -> None:
    data, store_dir = trained
    _clean_error(_invoke("train", "svm", "--data", data, "--store", store_dir),
                 "unknown model 'svm'", "gcn", "rf-local")
    assert [m.version for m in ModelStore(store_dir).list()] == ["gcn-v1", "lpa-v1", "rf-v1"]


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_unknown_split_is_a_clean_error(trained: tuple[Path, Path], command: str) -> None:
    data, store_dir = trained
    args = ["train", "rf"] if command == "train" else ["evaluate"]
    _clean_error(_invoke(*args, "--data", data, "--store", store_dir, "--split", "weekly"),
                 "--split must be one of temporal, random", "'weekly'")


def test_evaluate_empty_store_is_a_clean_error(trained: tuple[Path, Path], env: Path) -> None:
    data, _ = trained
    empty = env / "empty-store"
    _clean_error(_invoke("evaluate", "--data", data, "--store", empty), "no model in", "txmon train")


def test_evaluate_without_models_for_the_split_is_a_clean_error(trained: tuple[Path, Path]) -> None:
    data, store_dir = trained
    _clean_error(_invoke("evaluate", "--data", data, "--store", store_dir, "--split", "random", "--seed", "3"),
                 "random split (seed 3)")
