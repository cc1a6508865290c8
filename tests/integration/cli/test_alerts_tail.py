"""``txmon alerts tail`` against a real broker (its plain functions: tests/unit/cli/test_alerts_format.py).

The integration tests run ``python -m txmon alerts tail`` as a subprocess, each on a fresh topic
(``TXMON_TOPIC_ALERTS``), and stop it with ``--limit``: Tansu's end offsets are wrong, so "read
to the end" is no way to finish (docs/tansu.md).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from txmon.core.contracts import Alert, Influence
from txmon.embedded import TansuBroker, free_port
from txmon.testing.records import alert as _alert

REPO = Path(__file__).resolve().parents[3]
RUN_TIMEOUT = 60  # seconds: a group join takes ~3 s on Tansu, a process start ~1 s


# -- against the broker ----------------------------------------------------------------------------------------------


def _env(bootstrap: str, topic: str) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, TXMON_KAFKA_BOOTSTRAP=bootstrap, TXMON_TOPIC_ALERTS=topic, PYTHONPATH=path,
                PYTHONUNBUFFERED="1")


def _tail_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "txmon", "alerts", "tail", *args]


def _new_topic(bootstrap: str) -> str:
    name = f"alerts-{uuid.uuid4().hex[:10]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, 4, 1)])
    finally:
        admin.close()
    return name


def _produce(bootstrap: str, topic: str, alerts: list[Alert], raw: Sequence[bytes] = ()) -> list[tuple[int, int]]:
    """The ``raw`` values, then the alerts keyed by tx id as the worker sends them; returns the raw ones' (partition,
    offset).

    With ``raw``, everything goes round-robin over the 4 partitions, so each raw record precedes
    alerts in its partition: a tail stopped by --limit after the last alert has passed every one.
    """
    producer = KafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=20)

    def partition(i: int) -> int | None:
        return i % 4 if raw else None

    try:
        futures = [producer.send(topic, key=b"junk", value=v, partition=partition(i)) for i, v in enumerate(raw)]
        producer.flush()
        for i, a in enumerate(alerts):
            producer.send(topic, key=str(a.tx_id).encode(), value=a.model_dump_json().encode(), partition=partition(i))
        producer.flush()
        return [(m.partition, m.offset) for m in (f.get(timeout=10) for f in futures)]
    finally:
        producer.close()


def _lines(stdout: str) -> list[Alert]:
    """Every stdout line must be one Alert."""
    return [Alert.model_validate_json(line) for line in stdout.splitlines()]


class Running:
    """A tail subprocess whose stderr is collected in the background, so a test can wait for a line."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.proc = subprocess.Popen(_tail_cmd(*args), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.err: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.err.append(line)

    def wait_for(self, text: str, timeout: float = RUN_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.err):
            assert self.proc.poll() is None, f"tail exited with {self.proc.returncode}: {self.stderr}"
            assert time.monotonic() < deadline, f"no {text!r} on stderr within {timeout} s: {self.stderr}"
            time.sleep(0.05)

    def finish(self, timeout: float = RUN_TIMEOUT) -> tuple[int, str]:
        """Wait for the exit; (exit code, stdout). Stdout is read here, stderr by the thread."""
        stdout = self.proc.stdout
        assert stdout is not None
        out: list[str] = []
        drain = threading.Thread(target=lambda: out.append("" if stdout.closed else stdout.read()), daemon=True)
        drain.start()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"tail did not finish within {timeout} s; stderr: {self.stderr}")
        finally:
            drain.join(5)
            self._reader.join(5)
        return self.proc.returncode, "".join(out)

    @property
    def stderr(self) -> str:
        return "".join(self.err)


ALERTS = [
    _alert(1, "arrival", arrival=0.95),
    _alert(2, "arrival", arrival=0.72),
    _alert(3, "final", arrival=0.40, final=0.91),
    _alert(4, "final", arrival=0.20, final=0.71),
    _alert(5, "retracted", arrival=0.88, final=0.35),
    _alert(6, "retracted", arrival=0.75, final=0.10),
    _alert(7, "arrival", arrival=0.99, replay_id="r2"),
    _alert(8, "final", arrival=0.30, final=0.80, replay_id="r2",
           neighbours=[Influence(tx_id=70, weight=2.5)]),
]
MALFORMED = [b"not json", json.dumps({"kind": "arrival", "tx_id": 1}).encode()]


@pytest.fixture(scope="module")
def filled_topic(kafka_bootstrap: str) -> tuple[str, list[tuple[int, int]]]:
    """A topic holding ALERTS and the MALFORMED records (their partition and offset returned)."""
    topic = _new_topic(kafka_bootstrap)
    return topic, _produce(kafka_bootstrap, topic, ALERTS, MALFORMED)


@pytest.mark.integration
def test_from_beginning_json_prints_every_alert_and_warns_about_malformed_records(
        kafka_bootstrap: str, filled_topic: tuple[str, list[tuple[int, int]]]) -> None:
    topic, bad = filled_topic
    run = Running(_env(kafka_bootstrap, topic), "--json", "--from-beginning", "--limit", str(len(ALERTS)))
    code, out = run.finish()
    assert code == 0, run.stderr
    got = _lines(out)
    assert sorted(a.alert_id for a in got) == sorted(a.alert_id for a in ALERTS)
    assert {a.alert_id: a for a in got} == {a.alert_id: a for a in ALERTS}  # the records as published
    for partition, offset in bad:
        assert f"malformed record at {topic} partition {partition} offset {offset}" in run.stderr
    assert "Traceback" not in run.stderr


FILTERS = [
    (["--kind", "final", "--kind", "retracted"], {3, 4, 5, 6, 8}),
    (["--min-score", "0.8"], {1, 3, 7, 8}),  # final score when set: 5 (0.88 → 0.35) is out, 8 (0.30 → 0.80) in
    (["--replay", "r2"], {7, 8}),
    (["--kind", "arrival", "--min-score", "0.9", "--replay", "r1"], {1}),
]


@pytest.mark.integration
@pytest.mark.slow
def test_filters_select_exactly_the_matching_alerts(kafka_bootstrap: str,
                                                    filled_topic: tuple[str, list[tuple[int, int]]]) -> None:
    topic, _ = filled_topic
    env = _env(kafka_bootstrap, topic)
    # All at once: each spends most of its time waiting for its group join.
    runs = [(Running(env, "--json", "--from-beginning", "--limit", str(len(want)), *args), args, want)
            for args, want in FILTERS]
    for run, args, want in runs:
        code, out = run.finish()
        assert code == 0, run.stderr
        assert sorted(a.tx_id for a in _lines(out)) == sorted(want), args


@pytest.mark.integration
def test_without_from_beginning_only_alerts_sent_after_the_start_are_shown(kafka_bootstrap: str) -> None:
    topic = _new_topic(kafka_bootstrap)
    # Several records per partition batch: Tansu reports the start of the last batch as the end offset.
    _produce(kafka_bootstrap, topic, [_alert(i) for i in range(1, 41)])
    run = Running(_env(kafka_bootstrap, topic), "--json", "--limit", "3")
    run.wait_for("following")
    assert "from the latest offsets" in run.stderr
    new = [_alert(i, "final", final=0.9) for i in (101, 102, 103)]
    _produce(kafka_bootstrap, topic, new)
    code, out = run.finish()
    assert code == 0, run.stderr
    assert sorted(a.alert_id for a in _lines(out)) == sorted(a.alert_id for a in new)


@pytest.mark.integration
def test_alerts_of_an_aborted_transaction_are_never_shown(broker: object, kafka_bootstrap: str) -> None:
    """What a worker that died before its commit leaves on the topic: the tail reads committed records only."""
    if isinstance(broker, TansuBroker):
        pytest.skip("Tansu has no transactions (docs/tansu.md)")
    topic = _new_topic(kafka_bootstrap)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"tail-{uuid.uuid4().hex[:8]}")
    try:
        producer.init_transactions()
        for ids, commit in (((1, 2, 3, 4), False), ((5, 6), True)):
            producer.begin_transaction()
            for i in ids:  # one partition: the aborted records come first in it
                a = _alert(i)
                producer.send(topic, key=b"k", value=a.model_dump_json().encode(), partition=0)
            if commit:
                producer.commit_transaction()
            else:
                producer.flush()
                producer.abort_transaction()
    finally:
        producer.close()
    run = Running(_env(kafka_bootstrap, topic), "--json", "--from-beginning", "--limit", "2")
    code, out = run.finish()
    assert code == 0, run.stderr
    assert [a.tx_id for a in _lines(out)] == [5, 6]


def test_since_starts_at_the_first_alert_stamped_then(kafka_bootstrap: str) -> None:
    """--since finds each partition's first record at or after the time with offsets_for_times (Apache Kafka's
    time index; Tansu answers 0, docs/tansu.md)."""
    topic = _new_topic(kafka_bootstrap)
    now_ms = int(time.time() * 1000)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=5)
    try:
        for i, age_s in enumerate((7200, 5400, 3600, 600, 300, 0)):  # two hours ago .. now, over the partitions
            a = _alert(200 + i)
            producer.send(topic, key=str(a.tx_id).encode(), value=a.model_dump_json().encode(), partition=i % 4,
                          timestamp_ms=now_ms - age_s * 1000)
        producer.flush()
    finally:
        producer.close()
    for since, expected in (("45m", {203, 204, 205}),
                            (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now_ms / 1000 - 6000)),
                             {201, 202, 203, 204, 205})):
        run = Running(_env(kafka_bootstrap, topic), "--json", "--since", since, "--limit", str(len(expected)))
        code, out = run.finish()
        assert code == 0, run.stderr
        assert "from records stamped" in run.stderr
        assert {a.tx_id for a in _lines(out)} == expected, since


def test_since_is_checked_before_anything_starts() -> None:
    for args, message in ((["--since", "yesterday"], "neither an ISO 8601 time"),
                          (["--since", "5m", "--from-beginning"], "mutually exclusive")):
        result = subprocess.run(_tail_cmd(*args), env=_env("127.0.0.1:1", "alerts"), capture_output=True, text=True,
                                timeout=RUN_TIMEOUT)
        assert result.returncode == 2 and message in result.stderr, result.stderr


@pytest.mark.integration
@pytest.mark.slow
def test_a_named_group_resumes_after_what_it_printed(kafka_bootstrap: str) -> None:
    topic = _new_topic(kafka_bootstrap)
    _produce(kafka_bootstrap, topic, [_alert(i) for i in range(1, 9)])
    env, group = _env(kafka_bootstrap, topic), f"tail-test-{uuid.uuid4().hex[:8]}"
    seen = []
    for _ in range(2):
        run = Running(env, "--json", "--from-beginning", "--limit", "4", "--group", group)
        code, out = run.finish()
        assert code == 0, run.stderr
        seen.append({a.tx_id for a in _lines(out)})
    assert "from the group's committed offsets" in run.stderr
    assert not seen[0] & seen[1] and seen[0] | seen[1] == set(range(1, 9))


@pytest.mark.integration
@pytest.mark.slow
def test_ctrl_c_and_a_closed_pipe_end_tail_cleanly(kafka_bootstrap: str) -> None:
    topic = _new_topic(kafka_bootstrap)
    env = _env(kafka_bootstrap, topic)
    _produce(kafka_bootstrap, topic, [_alert(1), _alert(2)])

    run = Running(env)  # readable lines, from the latest offsets
    run.wait_for("following")
    run.proc.send_signal(signal.SIGINT)
    code, _ = run.finish(timeout=15)
    assert code == 130 and "Traceback" not in run.stderr, run.stderr

    run = Running(env, "--from-beginning")
    assert run.proc.stdout is not None
    assert "tx" in run.proc.stdout.readline()  # like `| head -n 1`: read one line, then go away
    run.proc.stdout.close()
    _produce(kafka_bootstrap, topic, [_alert(3)])  # the next write finds the pipe closed
    code, _ = run.finish()
    assert code == 0 and "Traceback" not in run.stderr and "Exception" not in run.stderr, run.stderr


@pytest.mark.slow  # the silent listener takes the 5 s bootstrap timeout
@pytest.mark.parametrize("listening", [False, True], ids=["closed port", "silent listener"])
def test_an_unreachable_broker_is_a_clear_error(listening: bool) -> None:
    import socket

    with socket.socket() as silent:
        if listening:  # accepts connections (the kernel completes them) but never answers
            silent.bind(("127.0.0.1", 0))
            silent.listen(8)
            port = silent.getsockname()[1]
        else:
            port = free_port()
        started = time.monotonic()
        result = subprocess.run(_tail_cmd(), env=_env(f"127.0.0.1:{port}", "alerts"), capture_output=True,
                                text=True, timeout=RUN_TIMEOUT)
    assert result.returncode == 1, result.stderr
    assert f"cannot reach Kafka at 127.0.0.1:{port}" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""
    assert time.monotonic() - started < 15
