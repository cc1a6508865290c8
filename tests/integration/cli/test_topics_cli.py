"""`txmon topics create`: the deployment's init job creates all four topics with the configured partitions."""

from __future__ import annotations

import pytest
from kafka import KafkaAdminClient
from typer.testing import CliRunner

from producer.send import new_replay_id
from txmon.cli import app
from txmon.embedded import free_port

runner = CliRunner()
KINDS = ("TRANSACTIONS", "ALERTS", "STATS", "DEAD_LETTER")



@pytest.fixture
def topic_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Fresh topic names for this test (the broker is shared by the session)."""
    run = new_replay_id()
    names = {k: f"test.topics-cli.{run}.{k.lower()}" for k in KINDS}
    for k, name in names.items():
        monkeypatch.setenv(f"TXMON_TOPIC_{k}", name)
    return names


def _partitions(bootstrap: str, names: list[str]) -> dict[str, int]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, bootstrap_timeout_ms=5000)
    try:
        return {t["name"]: len(t["partitions"]) for t in admin.describe_topics(names)}
    finally:
        admin.close()


def _text(output: str) -> str:
    return " ".join(output.split())


@pytest.mark.integration
def test_creates_all_four_topics_from_the_settings(kafka_bootstrap: str, topic_env: dict[str, str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TXMON_KAFKA_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv("TXMON_TOPIC_PARTITIONS", "3")
    result = runner.invoke(app, ["topics", "create"])
    assert result.exit_code == 0, result.output
    names = list(topic_env.values())
    assert _partitions(kafka_bootstrap, names) == dict.fromkeys(names, 3)
    for name in names:
        assert f"{name}: 3 partitions" in _text(result.output)


@pytest.mark.integration
def test_existing_topics_are_kept_with_a_warning(kafka_bootstrap: str, topic_env: dict[str, str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TXMON_KAFKA_BOOTSTRAP", kafka_bootstrap)
    assert runner.invoke(app, ["topics", "create", "--partitions", "2"]).exit_code == 0
    result = runner.invoke(app, ["topics", "create", "--partitions", "5"])  # an init job run again
    assert result.exit_code == 0, result.output
    names = list(topic_env.values())
    assert _partitions(kafka_bootstrap, names) == dict.fromkeys(names, 2)
    assert "warning:" in result.output and "at most 2 workers" in _text(result.output)


@pytest.mark.parametrize(("bootstrap", "message"), [
    (None, "no Kafka broker configured"),
    ("closed", "cannot reach Kafka at 127.0.0.1:"),
])
def test_errors_are_clean(monkeypatch: pytest.MonkeyPatch, bootstrap: str | None, message: str) -> None:
    monkeypatch.delenv("TXMON_KAFKA_BOOTSTRAP", raising=False)
    if bootstrap:
        monkeypatch.setenv("TXMON_KAFKA_BOOTSTRAP", f"127.0.0.1:{free_port()}")
    result = runner.invoke(app, ["topics", "create"])
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and message in _text(result.output)
    assert "Traceback" not in result.output


@pytest.mark.integration
def test_the_worker_creates_missing_topics_before_it_joins(kafka_bootstrap: str, topic_env: dict[str, str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker started before any producer: its consumer finds its topic (aiokafka would see one created later only
    at its next metadata refresh, minutes on)."""
    import stream_app.app
    import stream_app.scorer

    monkeypatch.setenv("TXMON_KAFKA_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv("TXMON_REDIS_URL", "redis://127.0.0.1:1/0")  # not used: the worker itself is not run
    monkeypatch.setenv("TXMON_TOPIC_PARTITIONS", "3")
    ran = []
    monkeypatch.setattr(stream_app.scorer.LoadedModel, "from_store", classmethod(lambda cls, *args: "a model"))
    monkeypatch.setattr(stream_app.app, "create_app", lambda settings, model: (settings, model))
    monkeypatch.setattr(stream_app.app, "run_worker", lambda made, settings, loglevel: ran.append(made))
    result = runner.invoke(app, ["worker", "--web-port", "0"])
    assert result.exit_code == 0, result.output
    assert len(ran) == 1 and ran[0][1] == "a model"
    names = list(topic_env.values())
    assert _partitions(kafka_bootstrap, names) == dict.fromkeys(names, 3)
