"""The deployment files (docker-compose.yml, Dockerfile, ops/) are consistent with each other and the code.

No Docker engine runs here, so this checks what can be checked without one: Compose's own validation
(Debian's `docker-compose` v1, installed by scripts/setup.sh), the services' wiring, and that the
dashboard and Prometheus ask for metrics and ports the worker really serves.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

from stream_app.metrics import EXPORTED, exported_series

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = ROOT / "docker-compose.yml"
DASHBOARD = ROOT / "ops/grafana/dashboards/txmon.json"
PROMETHEUS = ROOT / "ops/prometheus/prometheus.yml"
GRAFANA_PROVISIONING = ROOT / "ops/grafana/provisioning"
ONE_SHOT = ("topics", "synth", "train")


def _compose(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.fail("docker-compose is not installed: scripts/setup.sh installs it (apt-get install docker-compose); "
                    "without it docker-compose.yml goes unvalidated")
    # Only the file's defaults: a developer's exported TXMON_* or DATASET must not change what is checked.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tempfile.gettempdir()}
    return subprocess.run([exe, "-f", str(COMPOSE), "--project-directory", str(ROOT), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def services() -> dict[str, dict]:
    """The services as Compose resolves them (anchors merged, variables filled in), the replay profile on."""
    result = _compose("--profile", "replay", "config")
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["services"]


# -- (a) docker-compose.yml ----------------------------------------------------------------------------------


def test_compose_file_is_valid() -> None:
    result = _compose("config", "-q")
    assert result.returncode == 0, f"docker-compose config rejects docker-compose.yml:\n{result.stderr}"


def test_replay_is_a_profile_job_and_everything_else_starts_by_default(services: dict[str, dict]) -> None:
    result = _compose("--profile", "replay", "config", "--services")
    assert result.returncode == 0, result.stderr
    assert "replay" in result.stdout.split()
    assert services["replay"].get("profiles") == ["replay"]
    assert {name for name, s in services.items() if s.get("profiles")} == {"replay"}
    cmd = services["replay"]["command"]
    assert cmd[0] == "replay" and cmd[cmd.index("--from-step") + 1] == "35" and cmd[cmd.index("--to-step") + 1] == "49"
    assert cmd[cmd.index("--report") + 1].startswith("/reports/")
    assert any(v.startswith("reports:/reports") for v in services["replay"]["volumes"])


def test_workers_can_be_scaled(services: dict[str, dict]) -> None:
    worker = services["worker"]
    assert "container_name" not in worker, "a fixed container name makes --scale worker=N fail"
    for port in worker.get("ports", []):
        published = port.get("published") if isinstance(port, dict) else ":" in str(port)  # "6066" is ephemeral
        assert not published, f"worker publishes a fixed host port ({port}): replicas would clash"
    cmd = worker["command"]
    assert cmd[0] == "worker" and cmd[cmd.index("--web-bind") + 1] == "0.0.0.0", "Prometheus scrapes from outside"


def test_workers_start_after_topics_data_model_and_healthy_backends(services: dict[str, dict]) -> None:
    deps = {name: d["condition"] for name, d in services["worker"]["depends_on"].items()}
    assert deps == {"kafka": "service_healthy", "redis": "service_healthy",
                    "topics": "service_completed_successfully", "train": "service_completed_successfully"}
    assert services["train"]["depends_on"]["synth"]["condition"] == "service_completed_successfully"
    for name in ("kafka", "redis", "worker"):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    for name in ONE_SHOT:  # a restarting one-shot job never counts as completed
        assert services[name].get("restart", "no") == "no", name


def test_txmon_services_are_configured_by_txmon_variables(services: dict[str, dict]) -> None:
    expected = {"TXMON_KAFKA_BOOTSTRAP": "kafka:9092", "TXMON_REDIS_URL": "redis://redis:6379/0",
                "TXMON_MODEL_DIR": "/models", "TXMON_DATA_DIR": "/data"}
    for name in (*ONE_SHOT, "worker", "replay"):
        env = services[name]["environment"]
        assert {k: env.get(k) for k in expected} == expected, name
        assert all(k.startswith("TXMON_") for k in env), name
    assert services["topics"]["command"][-1].count("txmon topics create") == 1
    # The partitions the topics job creates are the broker's default too, so nothing differs by accident.
    assert services["kafka"]["environment"]["KAFKA_NUM_PARTITIONS"] == services["topics"]["environment"][
        "TXMON_TOPIC_PARTITIONS"]


def test_named_volumes_hold_the_state() -> None:
    volumes = yaml.safe_load(COMPOSE.read_text())["volumes"]
    assert {"data", "models", "reports", "redis"} <= set(volumes)


# -- (b) the Grafana dashboard ----------------------------------------------------------------------------


def _panels() -> list[dict]:
    return json.loads(DASHBOARD.read_text())["panels"]


def _exprs() -> list[str]:
    return [t["expr"] for p in _panels() for t in p.get("targets", []) if t.get("expr")]


def test_every_panel_has_a_query() -> None:
    panels = _panels()
    assert panels
    for p in panels:
        assert [t for t in p.get("targets", []) if t.get("expr", "").strip()], f"panel {p.get('title')!r} is empty"


def test_dashboard_queries_only_metrics_the_worker_exports() -> None:
    used = {m for e in _exprs() for m in re.findall(r"txmon_[a-z_]+", e)}
    assert used, "the dashboard queries no txmon metric"
    unknown = used - exported_series()
    assert not unknown, f"the dashboard queries metrics stream_app/metrics.py does not export: {sorted(unknown)}"


def test_dashboard_covers_the_operators_questions() -> None:
    used = {m for e in _exprs() for m in re.findall(r"txmon_[a-z_]+", e)}
    wanted = {"txmon_events_processed_total", "txmon_batch_seconds_bucket", "txmon_event_to_alert_seconds_bucket",
              "txmon_alerts_total", "txmon_dead_letters_total", "txmon_redis_roundtrip_seconds_bucket",
              "txmon_step_close_seconds_bucket", "txmon_current_step", "txmon_model_info"}
    assert wanted <= used, f"no panel for {sorted(wanted - used)}"
    alert_latency = [e for e in _exprs() if "txmon_event_to_alert_seconds_bucket" in e]
    assert alert_latency and all(re.search(r"by \(le, kind\)|by \(kind, le\)", e) for e in alert_latency)


def test_counters_and_buckets_are_only_read_as_rates() -> None:
    """A raw counter or bucket on a graph only ever climbs; they must go through rate() or increase()."""
    cumulative = {n for n in exported_series() if n.endswith(("_total", "_bucket", "_sum", "_count"))}
    assert "txmon_alerts_total" in cumulative and EXPORTED["txmon_alerts_total"] == "counter"
    for e in _exprs():
        for m in re.finditer(r"txmon_[a-z_]+", e):
            if m.group() in cumulative:
                before, after = e[:m.start()], e[m.end():]
                assert re.search(r"\b(rate|irate|increase)\(\s*$", before) and re.match(r"(\{[^}]*\})?\[", after), e


def test_dashboard_uses_the_provisioned_datasource_and_is_loaded() -> None:
    ds = yaml.safe_load((GRAFANA_PROVISIONING / "datasources/prometheus.yml").read_text())["datasources"]
    uids = {d["uid"] for d in ds if d["type"] == "prometheus"}
    assert [d["url"] for d in ds] == ["http://prometheus:9090"]
    for p in _panels():
        for item in (p, *p["targets"]):
            assert item["datasource"]["uid"] in uids, p["title"]
    # The provider's path must be where docker-compose.yml mounts ops/grafana/dashboards.
    provider = yaml.safe_load((GRAFANA_PROVISIONING / "dashboards/txmon.yml").read_text())["providers"][0]
    mounts = yaml.safe_load(COMPOSE.read_text())["services"]["grafana"]["volumes"]
    assert f"./ops/grafana/dashboards:{provider['options']['path']}:ro" in mounts
    assert "./ops/grafana/provisioning:/etc/grafana/provisioning:ro" in mounts


# -- (c) Prometheus ---------------------------------------------------------------------------------------


def test_prometheus_scrapes_every_worker_on_its_web_port(services: dict[str, dict]) -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    jobs = [j for j in config["scrape_configs"] if j.get("dns_sd_configs")]
    assert len(jobs) == 1
    job = jobs[0]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    (sd,) = job["dns_sd_configs"]
    assert sd["names"] == ["worker"] and "worker" in services
    assert sd["type"] == "A"
    cmd = services["worker"]["command"]
    assert str(sd["port"]) == cmd[cmd.index("--web-port") + 1]
    mounts = services["prometheus"]["volumes"]
    assert any(str(m).startswith(f"{PROMETHEUS}:/etc/prometheus/prometheus.yml") for m in mounts), mounts


# -- (d) Dockerfile ---------------------------------------------------------------------------------------


def _instructions() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_dockerfile_installs_cpu_torch_before_the_project() -> None:
    lines = _instructions()
    assert lines[0] == "FROM python:3.11-slim"
    torch = [i for i, line in enumerate(lines) if line.startswith("RUN") and "torch==2.13.0" in line]
    project = [i for i, line in enumerate(lines) if re.match(r"RUN pip install \.(\s|$)", line)]
    assert len(torch) == 1 and len(project) == 1, lines
    assert "--index-url https://download.pytorch.org/whl/cpu" in lines[torch[0]]
    assert torch[0] < project[0], "torch must be installed first, or the project's pin pulls the CUDA build"
    assert not any("[dev]" in line for line in lines), "the image carries no dev extras"
    assert 'ENTRYPOINT ["txmon"]' in lines


def test_dockerignore_keeps_local_state_out_of_the_build() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".venv", "data", "models", ".git", "**/__pycache__"} <= ignored


def test_the_compose_broker_is_the_embedded_brokers_version() -> None:
    from txmon.embedded import KAFKA_VERSION

    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert services["kafka"]["image"] == f"apache/kafka:{KAFKA_VERSION}"
    env = services["kafka"]["environment"]
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == 1  # transactions work on one node
