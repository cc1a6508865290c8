"""The embedded services (Apache Kafka, Tansu, redis-server), and the Kafka clients and Faust against the suite's
broker (Apache Kafka where it can run). What they pin down about Tansu is written up in docs/tansu.md.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaTimeoutError

from txmon.core.settings import Settings
from txmon.embedded import (
    KafkaBroker,
    RedisServer,
    ServiceError,
    TansuBroker,
    embedded_broker,
    embedded_stack,
    free_port,
)
from txmon.embedded.kafka_broker import java_version, kafka_home, unavailable_reason

REPO = Path(__file__).resolve().parents[2]


def _children() -> set[int]:
    """Pids whose parent is this process (zombies included: they are not reaped yet)."""
    me, pids = os.getpid(), set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me:
            pids.add(int(stat.parent.name))
    return pids


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _gone(pid: int, timeout: float = 0.0) -> bool:
    """Whether ``pid`` has exited (a zombie counts as exited), waiting up to ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        if state == "Z":
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _new_topic(bootstrap: str, partitions: int = 4, name: str | None = None) -> str:
    """Create a topic (a fresh name unless given): the embedded Kafka auto-creates none."""
    name = name or f"t-{uuid.uuid4().hex[:10]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        admin.close()
    return name


def _produce(bootstrap: str, topic: str, n: int, start: int = 0, size: int = 100) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=5)
    try:
        for i in range(start, start + n):
            producer.send(topic, key=f"tx{i}".encode(), value=f"{i}:".encode().ljust(size, b"x"))
        producer.flush()
    finally:
        producer.close()


# -- the services themselves -------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("cls", [RedisServer, TansuBroker, KafkaBroker])
def test_start_stop_leaves_no_process_and_frees_the_port(cls: type[RedisServer | TansuBroker | KafkaBroker]) -> None:
    service = cls().start()
    pid, port = service.pid, service.port
    assert pid is not None and service.log_path is not None
    tmp = service.log_path.parent
    assert service.running and _listening(port) and pid in _children()

    service.stop()
    service.stop()  # idempotent

    assert not service.running
    assert pid not in _children() and _gone(pid)
    assert not tmp.exists()
    with socket.socket() as s:  # nobody listens there any more
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))


@pytest.mark.integration
def test_atexit_stops_services_left_running_by_a_crash() -> None:
    script = textwrap.dedent(
        """
        from txmon.core.settings import Settings
        from txmon.embedded import RedisServer, embedded_broker
        r, k = RedisServer().start(), embedded_broker(Settings()).start()
        print(r.pid, k.pid, flush=True)
        raise RuntimeError("crash with both services running")
        """
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "crash with both services running" in proc.stderr
    pids = [int(p) for p in proc.stdout.split()]
    assert len(pids) == 2 and all(_gone(p) for p in pids)


@pytest.mark.integration
def test_services_die_with_a_parent_killed_by_sigkill() -> None:
    script = textwrap.dedent(
        """
        import time
        from txmon.core.settings import Settings
        from txmon.embedded import RedisServer, embedded_broker
        r, k = RedisServer().start(), embedded_broker(Settings()).start()
        print(r.pid, k.pid, flush=True)
        time.sleep(600)
        """
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    parent = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 2 and not any(_gone(p, timeout=0.1) for p in pids)
    finally:
        parent.kill()  # no atexit, no finally: only the parent-death signal can stop the services
        parent.wait(10)
    assert all(_gone(p, timeout=30) for p in pids)


def test_the_embedded_broker_is_apache_kafka_where_java_17_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """setup.sh installs Kafka wherever Java 17+ and Maven are, so the suite runs on it there; Tansu only
    where Java is missing or when asked for."""
    monkeypatch.delenv("TXMON_EMBEDDED_BROKER", raising=False)
    version = java_version()
    if version is not None and version >= 17:
        assert unavailable_reason(kafka_home()) is None, "Java 17+ is here but the Kafka jars are not installed"
        assert isinstance(embedded_broker(Settings()), KafkaBroker)
        assert embedded_broker(Settings()).label.startswith("Apache Kafka 4.")
    assert isinstance(embedded_broker(Settings(embedded_broker="tansu")), TansuBroker)


def test_kafka_asked_for_but_missing_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ServiceError, match=r"not installed in .*setup\.sh.*TXMON_EMBEDDED_BROKER=tansu"):
        KafkaBroker(home=tmp_path / "no-kafka").start()


def test_missing_redis_server_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ServiceError, match="apt-get install redis-server"):
        RedisServer().start()


@pytest.mark.integration
@pytest.mark.parametrize("cls", [RedisServer, TansuBroker, KafkaBroker])
def test_a_taken_port_is_a_clear_error_with_the_log_tail(cls: type[RedisServer | TansuBroker | KafkaBroker]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        before = _children()
        with pytest.raises(ServiceError, match=r"(?s)exited with code.*log tail") as e:
            cls(port=port).start()
        assert "in use" in str(e.value)  # the cause, not only the broker's shutdown noise
        assert _children() <= before


@pytest.mark.integration
def test_embedded_stack_starts_only_what_is_not_configured(kafka_bootstrap: str, redis_url: str) -> None:
    with embedded_stack(Settings(kafka_bootstrap=None, redis_url=None)) as st:
        bootstrap, url = st.bootstrap, st.redis_url
        assert bootstrap != kafka_bootstrap and url != redis_url
        assert st.broker is not None and st.redis is not None
        assert f"(pid {st.broker.pid})" in st.describe() and st.broker_name in st.describe()
        assert redis.Redis.from_url(url).ping()
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        assert admin.list_topics() is not None
        admin.close()
        started = [int(u.rsplit(":", 1)[1].split("/")[0]) for u in (bootstrap, url)]
    assert not any(_listening(p) for p in started)

    before = _children()
    with embedded_stack(Settings(kafka_bootstrap=kafka_bootstrap, redis_url=redis_url)) as st:
        assert (st.bootstrap, st.redis_url) == (kafka_bootstrap, redis_url)
        assert st.broker is None and st.redis is None and "(configured)" in st.describe()
        assert _children() == before
    assert redis.Redis.from_url(redis_url).ping()  # external services are left running


# -- Redis ---------------------------------------------------------------------------------------


@pytest.mark.integration
def test_redis_ping_set_get(redis_client: redis.Redis) -> None:
    assert redis_client.ping()
    assert redis_client.set("k", "v")
    assert redis_client.get("k") == b"v"
    assert redis_client.dbsize() == 1  # the fixture emptied the database


# -- Kafka clients on the suite's broker -----------------------------------------------------------


@pytest.mark.integration
def test_kafka_python_topic_produce_and_read_back(kafka_bootstrap: str) -> None:
    topic = _new_topic(kafka_bootstrap, partitions=4)
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        (described,) = admin.describe_topics([topic])
    finally:
        admin.close()
    assert len(described["partitions"]) == 4

    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=False, linger_ms=5)
    assert producer.partitions_for(topic) == {0, 1, 2, 3}
    futures, wanted_partition = {}, {}
    for i in range(1000):
        key = f"tx{i}".encode()
        if i % 5 == 0:  # some with an explicit partition, the rest by the key hash
            wanted_partition[key] = i % 4
            futures[key] = producer.send(topic, key=key, value=f"v{i}".encode(), partition=i % 4)
        else:
            futures[key] = producer.send(topic, key=key, value=f"v{i}".encode())
    producer.flush()
    sent = {key: future.get(timeout=10) for key, future in futures.items()}
    producer.close()
    assert all(sent[key].partition == p for key, p in wanted_partition.items())

    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False, consumer_timeout_ms=5000)
    partitions = [TopicPartition(topic, p) for p in range(4)]
    consumer.assign(partitions)
    consumer.seek_to_beginning()
    got = {}
    for record in consumer:
        got[record.key] = record
        if len(got) == 1000:
            break
    consumer.close()

    assert len(got) == 1000
    for key, record in got.items():
        assert (record.partition, record.offset) == (sent[key].partition, sent[key].offset)
        assert record.value == b"v" + key[2:]
    per_partition = [sorted(r.offset for r in got.values() if r.partition == p) for p in range(4)]
    assert all(offsets == list(range(len(offsets))) for offsets in per_partition)  # no gaps, no repeats


@pytest.mark.integration
def test_aiokafka_consumer_group_reads_everything(kafka_bootstrap: str) -> None:
    topic = _new_topic(kafka_bootstrap, partitions=4)
    _produce(kafka_bootstrap, topic, 1000)

    async def consume() -> tuple[dict[bytes, int], float]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=kafka_bootstrap,
            group_id=f"g-{topic}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            # Tansu answers a fresh JoinGroup after about session_timeout / 2.
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
        )
        started = time.monotonic()
        await consumer.start()
        joined, got = 0.0, {}
        try:
            while len(got) < 1000 and time.monotonic() - started < 60:
                batch = await consumer.getmany(timeout_ms=500)
                if not joined and consumer.assignment():
                    joined = time.monotonic() - started
                for records in batch.values():
                    got.update((r.key, r.partition) for r in records)
            await consumer.commit()
        finally:
            await consumer.stop()
        return got, joined

    got, join_seconds = asyncio.run(consume())
    assert len(got) == 1000 and set(got.values()) == {0, 1, 2, 3}
    assert 0 < join_seconds < 15, f"group join took {join_seconds:.1f} s"


@pytest.mark.integration
def test_clients_fail_clearly_when_the_broker_port_is_closed() -> None:
    closed = f"127.0.0.1:{free_port()}"
    with pytest.raises(KafkaTimeoutError, match="Unable to bootstrap"):
        KafkaAdminClient(bootstrap_servers=closed, bootstrap_timeout_ms=1000)
    with pytest.raises(KafkaTimeoutError, match="Unable to bootstrap"):
        KafkaProducer(bootstrap_servers=closed, bootstrap_timeout_ms=1000)

    async def start_aiokafka() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=closed, request_timeout_ms=1000)
        try:
            await producer.start()
        finally:
            await producer.stop()

    with pytest.raises(KafkaConnectionError, match="Unable to bootstrap"):
        asyncio.run(start_aiokafka())


# -- Faust on the suite's broker -------------------------------------------------------------------

# A minimal worker: batches of up to 500 events, what it saw goes to Redis, one record per batch
# goes back to Kafka. The settings are the ones docs/tansu.md recommends.
PROBE_APP = """
import collections
import os
import time

import faust
import redis.asyncio as aioredis

app = faust.App(
    os.environ["PROBE_ID"],
    broker="kafka://" + os.environ["PROBE_BROKER"],
    store="memory://",
    web_enabled=False,  # the worker command overrides this: it also needs --without-web
    topic_partitions=4,
    topic_disable_leader=True,
    consumer_auto_offset_reset="earliest",
    broker_session_timeout=6.0,
    broker_heartbeat_interval=1.0,
)
source = app.topic(os.environ["PROBE_TOPIC"], key_serializer="raw", value_serializer="raw")
# Faust does not declare a topic it only sends to: the first metadata request for it makes Tansu
# create it with its default partition count. Real code creates its topics with the admin client.
sink = app.topic(os.environ["PROBE_TOPIC"] + ".out", key_serializer="raw", value_serializer="json")
store = aioredis.from_url(os.environ["PROBE_REDIS"])


@app.agent(source)
async def process(stream):
    async for events in stream.take_events(500, within=0.2):
        pipe = store.pipeline(transaction=False)
        pipe.set("probe:first", time.time(), nx=True)
        pipe.incrby("probe:count", len(events))
        pipe.sadd("probe:keys", *[event.key for event in events])
        for partition, n in collections.Counter(e.message.partition for e in events).items():
            pipe.hincrby("probe:partitions", str(partition), n)
        await pipe.execute()
        await sink.send(key=b"batch", value={"n": len(events)})


if __name__ == "__main__":
    app.main()
"""


class _Worker:
    def __init__(self, tmp_path: Path, env: dict[str, str], tag: str) -> None:
        self.log = tmp_path / f"worker-{tag}.log"
        self.started = time.time()
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "probe_app", "worker", "-l", "info", "--without-web"],
                cwd=tmp_path,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _wait_for_count(client: redis.Redis, target: int, worker: _Worker, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if int(client.get("probe:count") or 0) >= target:
            return
        assert worker.proc.poll() is None, f"worker exited early:\n{worker.tail()}"
        time.sleep(0.1)
    pytest.fail(f"worker processed {client.get('probe:count')} of {target} in {timeout} s:\n{worker.tail()}")


@pytest.mark.integration
@pytest.mark.slow
def test_faust_worker_on_tansu_processes_stops_cleanly_and_resumes(
    kafka_bootstrap: str, redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    topic = _new_topic(kafka_bootstrap, partitions=4)
    _new_topic(kafka_bootstrap, partitions=4, name=f"{topic}.out")
    (tmp_path / "probe_app.py").write_text(PROBE_APP)
    env = dict(
        os.environ,
        PYTHONPATH=str(tmp_path),
        PROBE_ID=f"probe-{topic}",
        PROBE_BROKER=kafka_bootstrap,
        PROBE_REDIS=redis_url,
        PROBE_TOPIC=topic,
    )
    workers: list[_Worker] = []
    try:
        worker = _Worker(tmp_path, env, "1")
        workers.append(worker)
        _produce(kafka_bootstrap, topic, 2000, size=1000)
        _wait_for_count(redis_client, 2000, worker)
        first_seconds = float(redis_client.get("probe:first") or 0) - worker.started
        assert first_seconds < 30, f"first message processed {first_seconds:.1f} s after the worker started"
        assert redis_client.scard("probe:keys") == 2000
        assert set(redis_client.hkeys("probe:partitions")) == {b"0", b"1", b"2", b"3"}
        assert worker.stop() == 0, worker.tail()

        # What the agent sent came through (Faust's producer, without idempotence).
        consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, consumer_timeout_ms=5000)
        out_partitions = consumer.partitions_for_topic(f"{topic}.out") or set()
        consumer.assign([TopicPartition(f"{topic}.out", p) for p in out_partitions])
        consumer.seek_to_beginning()
        sent = 0
        for record in consumer:
            sent += json.loads(record.value)["n"]
            if sent >= 2000:
                break
        consumer.close()
        assert sent == 2000

        # A restart resumes from the offsets committed at the clean stop: nothing is seen twice.
        _produce(kafka_bootstrap, topic, 500, start=2000, size=1000)
        worker = _Worker(tmp_path, env, "2")
        workers.append(worker)
        _wait_for_count(redis_client, 2500, worker)
        time.sleep(0.5)  # a duplicate, if any, would arrive right behind
        assert int(redis_client.get("probe:count") or 0) == 2500
        assert redis_client.scard("probe:keys") == 2500
        assert worker.stop() == 0, worker.tail()
    finally:
        for w in workers:
            w.kill()


def test_kafka_starts_with_a_cluster_id_that_begins_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    """One in 64 random ids base64-encodes to a leading '-', which StorageTool read as an option."""
    import txmon.embedded.kafka_broker as kb

    monkeypatch.setattr(kb.uuid, "uuid4", lambda: uuid.UUID(bytes=b"\xf8" + bytes(15)))
    assert kb.base64.urlsafe_b64encode(kb.uuid.uuid4().bytes).decode().startswith("-")
    with KafkaBroker() as broker:
        assert broker.running
