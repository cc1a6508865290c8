"""The layer rule of docs/architecture.md holds: no upward import, no cycle, a lean worker import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_import_contracts_are_kept() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint_imports), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_the_worker_imports_no_command_runner_analysis_or_report() -> None:
    code = ("import json, sys, stream_app.app, stream_app.processor; "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('txmon', 'producer', 'stream_app', 'model_store', 'replay'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                         check=True).stdout
    loaded = json.loads(out)
    above = [m for m in loaded if m.startswith(("txmon.cli", "txmon.pipeline", "txmon.testing", "replay.analysis",
                                                "replay.report", "replay.synth", "producer"))]
    assert above == [], above
