"""`txmon demo` end to end, as real processes: a tiny synthetic data set, a quickly trained GCN, an
embedded broker (Apache Kafka, and Tansu, the no-Java fallback) and redis-server, the worker subprocess, the
replay and the summary — and nothing left running afterwards, also after Ctrl-C.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from txmon.testing.procs import child_processes

ROOT = Path(__file__).resolve().parents[2]
DEMO = [sys.executable, "-m", "txmon", "demo", "--scale", "0.02", "--epochs", "5"]

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shared by the tests here, so the data set is generated and the model trained once."""
    return tmp_path_factory.mktemp("demo")


def _env(workdir: Path, broker: str = "kafka") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TXMON_KAFKA_BOOTSTRAP", "TXMON_REDIS_URL")}
    tmp = workdir / f"tmp-{broker}"  # run dirs and service dirs land here, one folder per broker
    tmp.mkdir(exist_ok=True)
    env.update(TXMON_DATA_DIR=str(workdir / "data"), TXMON_MODEL_DIR=str(workdir / "models"),
               TXMON_CACHE_DIR=str(workdir / "cache"), TXMON_EMBEDDED_BROKER=broker, TMPDIR=str(tmp),
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
               COLUMNS="200")
    return env


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] != "Z"


def _printed_pids(out: str) -> dict[str, int]:
    found = {name: re.search(pattern, out) for name, pattern in (
        ("broker", r"embedded (?:Apache Kafka [\d.]+|Tansu) broker \S+ \(pid (\d+)\)"),
        ("redis", r"embedded redis-server \S+ \(pid (\d+)\)"),
        ("worker", r"worker pid (\d+)"),
    )}
    missing = [name for name, m in found.items() if m is None]
    assert not missing, f"no pid printed for {missing}:\n{out}"
    return {name: int(m.group(1)) for name, m in found.items()}


@pytest.mark.parametrize("broker_kind", ["kafka", "tansu"])
def test_demo_runs_end_to_end_and_leaves_nothing_running(workdir: Path, broker_kind: str) -> None:
    proc = subprocess.run(DEMO, cwd=workdir, env=_env(workdir, broker_kind), capture_output=True, text=True,
                          timeout=170)
    out = proc.stdout
    assert proc.returncode == 0, f"exit {proc.returncode}\n--- stdout\n{out}\n--- stderr\n{proc.stderr[-3000:]}"
    name = {"kafka": "Apache Kafka 4.", "tansu": "Tansu"}[broker_kind]
    assert f"embedded {name}" in out and re.search(rf"broker\s+│ {name}", out), out  # also in the summary

    pids = _printed_pids(out)
    assert not [name for name, pid in pids.items() if _alive(pid)], "a child process outlived the demo"
    assert "worker ready after" in out
    # The live view's last frame: all 49 steps closed.
    assert re.search(r"steps closed 49/49", out), out

    # The summary: alert counts by kind, throughput, the label join.
    m = re.search(r"alerts\s+│ arrival ([\d,]+) · confirmed ([\d,]+) · retracted ([\d,]+) · final ([\d,]+)", out)
    assert m, out
    arrival, confirmed, retracted, final = (int(g.replace(",", "")) for g in m.groups())
    assert arrival > 0
    assert re.search(r"throughput\s+│ [\d,]+ tx/s end to end", out), out
    assert "worker exit code 0" in out
    for row in ("alerts (arrival + final − retracted)", "arrival alerts as raised", "final-score alerts only"):
        assert row in out

    runs = list((workdir / f"tmp-{broker_kind}").glob("txmon-demo-*/summary.json"))
    assert len(runs) == 1
    summary = json.loads(runs[0].read_text())
    assert summary["alerts"] == {"arrival": arrival, "confirmed": confirmed, "retracted": retracted, "final": final}
    assert confirmed + retracted == arrival  # every arrival alert resolved at its step's close
    assert summary["events"] == 4075 and summary["throughput_tx_s"] > 0
    assert summary["alerted"] == arrival + final - retracted  # a retraction always follows an arrival alert
    # Streaming final scores are exact, so the alerts on the model's test set score what training measured.
    manifest = json.loads((workdir / "models" / summary["model"] / "manifest.json").read_text())
    assert summary["metrics"]["alerts (arrival + final − retracted)"]["test"]["f1"] == pytest.approx(
        manifest["metrics"]["test"]["f1"], abs=0.02)
    # The worker ran in the run directory: no Faust data directory in the caller's.
    assert not list(workdir.glob("*-data"))
    assert summary["broker"].startswith(name)


def test_ctrl_c_stops_everything(workdir: Path) -> None:
    # Paced, so that the replay is still running when Ctrl-C arrives.
    proc = subprocess.Popen([*DEMO, "--rate", "400"], cwd=workdir, env=_env(workdir), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "worker ready after" in line:
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ready.wait(120), "the worker never became ready:\n" + "".join(lines)
        time.sleep(1.0)  # into the replay
        children = child_processes(proc.pid)
        pids = _printed_pids("".join(lines))
        assert set(pids.values()) <= set(children), (pids, children)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(5)
    stderr = proc.stderr.read() if proc.stderr else ""
    assert code == 130, f"exit {code}\n{''.join(lines)}\n{stderr[-3000:]}"
    assert "interrupted" in stderr
    assert not [pid for pid in children if _alive(pid)], f"left running: {children}"
