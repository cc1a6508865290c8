"""The `txmon` command: help texts, synth + describe, clean errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from txmon.cli import app

runner = CliRunner()


def _all_command_paths() -> list[list[str]]:
    paths: list[list[str]] = []

    def walk(cmd: object, prefix: list[str]) -> None:
        paths.append(prefix)
        # typer >= 0.26 vendors click: its groups are not click.Group, so look for subcommands instead.
        if isinstance(getattr(cmd, "commands", None), dict):
            for name, sub in cmd.commands.items():
                walk(sub, [*prefix, name])

    walk(get_command(app), [])
    return paths


@pytest.mark.parametrize("path", _all_command_paths(), ids=lambda p: " ".join(p) or "txmon")
def test_every_command_has_help(path: list[str]) -> None:
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_synth_then_describe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TXMON_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "d"
    result = runner.invoke(app, ["data", "synth", "--out", str(out), "--scale", "0.01", "--steps", "5", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert "over 5 steps" in result.output
    result = runner.invoke(app, ["data", "describe", str(out), "--json"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output)
    assert stats["steps"] == 5 and stats["cross_step_edges"] == 0
    result = runner.invoke(app, ["data", "describe", str(out)])
    assert result.exit_code == 0 and "edges per node" in result.output


def test_synth_refuses_to_overwrite(tmp_path: Path) -> None:
    args = ["data", "synth", "--out", str(tmp_path), "--scale", "0.01", "--steps", "2"]
    assert runner.invoke(app, args).exit_code == 0
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "--force" in result.output
    assert runner.invoke(app, [*args, "--force"]).exit_code == 0


def test_describe_reports_bad_data_without_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TXMON_CACHE_DIR", str(tmp_path / "cache"))
    result = runner.invoke(app, ["data", "describe", str(tmp_path)])
    assert result.exit_code == 2
    assert "elliptic_txs_features.csv" in result.output and "Traceback" not in result.output


def test_synth_rejects_out_of_range_steps(tmp_path: Path) -> None:
    result = runner.invoke(app, ["data", "synth", "--out", str(tmp_path), "--steps", "50"])
    assert result.exit_code == 2 and "--steps" in result.output


def test_schema_prints_json_schema_or_writes_it(tmp_path: Path) -> None:
    from txmon.core.schemas import RecordName, json_schema

    result = runner.invoke(app, ["schema", "alert"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == json_schema(RecordName.alert)
    out = tmp_path / "dl.json"
    result = runner.invoke(app, ["schema", "dead-letter", "--out", str(out)])
    assert result.exit_code == 0 and result.stdout == ""
    assert json.loads(out.read_text(encoding="utf-8"))["$id"] == "urn:txmon:schema:dead-letter:v5"
    assert runner.invoke(app, ["schema", "bogus"]).exit_code == 2
