"""The replay producer against a real Kafka broker: every event once, markers on every partition, the command."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from producer.kafka_io import ensure_topics
from producer.send import new_replay_id, run_replay
from replay.data.dataset import EllipticDataset
from replay.synth import generate, synthesize
from txmon.core.contracts import ReplayEnd, StepEnd, TxEvent
from txmon.core.settings import Settings
from txmon.core.tx_batch import read_records

runner = CliRunner()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("produce-data")
    synthesize(out, scale=0.01, n_steps=4, seed=2)
    return out


def _app():  # noqa: ANN202
    import typer

    from txmon.cli.produce import produce

    app = typer.Typer(pretty_exceptions_enable=False)
    app.command()(produce)
    return app


def _consume_all(bootstrap: str, topic: str, replay_id: str, timeout_s: float = 60.0) -> dict[int, list]:
    """Every record of ``topic`` per partition, until each partition has shown this replay's replay_end."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             bootstrap_timeout_ms=5000, request_timeout_ms=10000)
    try:
        parts = sorted(consumer.partitions_for_topic(topic) or [])
        assert parts, f"no partitions for {topic}"
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        records: dict[int, list] = {p: [] for p in parts}
        done: set[int] = set()
        deadline = time.monotonic() + timeout_s
        while done != set(parts):
            assert time.monotonic() < deadline, f"replay_end missing on partitions {set(parts) - done}"
            for tp, batch in consumer.poll(timeout_ms=500).items():
                for m in batch:
                    for ev in read_records(m.value):
                        records[tp.partition].append((m.offset, m.key, ev))
                        if isinstance(ev, ReplayEnd) and ev.replay_id == replay_id:
                            done.add(tp.partition)
        return records
    finally:
        consumer.close()


@pytest.mark.integration
@pytest.mark.parametrize("record_format", ["batch", "json"])
def test_replay_through_real_kafka(kafka_bootstrap: str, record_format: str) -> None:
    d = generate(scale=0.01, n_steps=5, seed=4)
    ds = EllipticDataset(d.tx_ids, d.steps, d.features.astype(np.float32), d.labels, d.edges)
    topic = f"test.producer.{new_replay_id()}"
    settings = Settings(kafka_bootstrap=kafka_bootstrap, topic_transactions=topic, topic_partitions=3,
                        record_format=record_format, producer_batch=16)
    summary = run_replay(ds, kafka_bootstrap, settings, 1, 3, replay_id="itest")
    in_range = ds.steps <= 3
    assert summary.events == int(in_range.sum()) and summary.partitions == 3 and summary.markers == 3 * 4

    records = _consume_all(kafka_bootstrap, topic, "itest")
    assert set(records) == {0, 1, 2}
    txs = [(key, ev) for recs in records.values() for _, key, ev in recs if isinstance(ev, TxEvent)]
    assert sorted(ev.tx_id for _, ev in txs) == sorted(ds.tx_ids[in_range].tolist())  # each exactly once
    if record_format == "json":
        assert all(key == str(ev.tx_id).encode() for key, ev in txs)
    else:  # a record's key names its step and first seq
        assert all(key.decode().startswith(f"itest:{ev.step}:") for key, ev in txs)
    assert sum(len(ev.inputs_from) + len(ev.outputs_to) for _, ev in txs) == summary.edges
    step_of = dict(zip(ds.tx_ids.tolist(), ds.steps.tolist(), strict=True))
    for p, recs in records.items():
        offsets = [o for o, _, _ in recs]
        assert offsets == sorted(offsets)
        kinds = [ev.kind for _, _, ev in recs]
        assert kinds[-1] == "replay_end" and kinds.count("replay_end") == 1, p
        assert [ev.step for _, _, ev in recs if isinstance(ev, StepEnd)] == [1, 2, 3], p
        current = 1
        for _, key, ev in recs:
            if isinstance(ev, TxEvent):
                assert ev.step == current == step_of[ev.tx_id], f"partition {p}: tx of step {ev.step} after step_end"
            elif isinstance(ev, StepEnd):
                assert ev.count == int(np.sum(ds.steps == ev.step)) and key is None
                assert ev.partitions == len(records) == summary.partitions
                current += 1
        end = recs[-1][2]
        assert (end.first_step, end.last_step, end.count) == (1, 3, summary.events)
        assert end.partitions == summary.partitions


@pytest.mark.integration
def test_topics_are_created_and_existing_ones_kept(kafka_bootstrap: str) -> None:
    names = [f"test.topics.{new_replay_id()}.{k}" for k in ("a", "b")]
    assert ensure_topics(kafka_bootstrap, names, 2) == dict.fromkeys(names, 2)
    assert ensure_topics(kafka_bootstrap, names, 5) == dict.fromkeys(names, 2)  # existing: left alone


@pytest.mark.integration
def test_command_against_real_kafka(kafka_bootstrap: str, data_dir: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TXMON_KAFKA_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv("TXMON_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TXMON_TOPIC_TRANSACTIONS", f"test.cli.{new_replay_id()}")
    result = runner.invoke(_app(), ["--data", str(data_dir), "--from-step", "2", "--to-step", "3", "--rate", "400",
                                    "--replay-id", "cli-run", "--partitions", "2"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "cli-run" in text and "(2 partitions)" in text and "(target 400)" in text


