"""Knowing when the workers are done with a replay, and collecting what they published (used by the runner).

"Done" is never read from consumer lag (Tansu's end offsets are wrong, docs/tansu.md): the worker
records in Redis each partition whose ``replay_end`` marker it has processed, and the replay as done
(``txm:ended``) once every partition has and every step is closed — a step's close is handed over to the
partition owning it, so it can come after the last replay_end (``stream_app.routing.record_published``).
Then the alerts are read back from the alert topic until there are as many as the worker counted as
published.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import cast

import redis
from pydantic import ValidationError

from stream_app.keys import ENDED, REPLAYS, ReplayKeys
from txmon.core.contracts import Alert, StepStats
from txmon.core.errors import TxmonError


class ReplayRunError(TxmonError, RuntimeError):
    pass


def replay_exists(client: redis.Redis, replay_id: str) -> bool:
    """Whether any worker has seen this replay id (its namespace in Redis is in use)."""
    rk = ReplayKeys(replay_id)
    return client.zscore(REPLAYS, replay_id) is not None or bool(client.exists(rk.replay_end, rk.hist))


def partitions_ended(client: redis.Redis, replay_id: str) -> int:
    return int(client.scard(ReplayKeys(replay_id).replay_end))


def replay_done(client: redis.Redis, replay_id: str) -> bool:
    """Whether a worker recorded the replay as done: every partition passed replay_end, every step closed."""
    return client.zscore(ENDED, replay_id) is not None


def steps_finalised(client: redis.Redis, replay_id: str) -> int:
    return int(client.hlen(ReplayKeys(replay_id).stats))


def published_alerts(client: redis.Redis, replay_id: str) -> dict[str, int]:
    """Alerts of the replay the workers published, by kind (each id once, however often a batch was retried)."""
    kinds = Counter(cast(bytes, k).decode() for k in client.hvals(ReplayKeys(replay_id).published))
    return dict(kinds)  # a binary client: values are bytes


def stored_stats(client: redis.Redis, replay_id: str) -> list[StepStats]:
    """The replay's step statistics records, as published, by step."""
    raw = client.hgetall(ReplayKeys(replay_id).stats)
    return [StepStats.model_validate_json(raw[k]) for k in sorted(raw, key=int)]


def wait_for_replay_end(client: redis.Redis, replay_id: str, partitions: int, timeout: float,
                        check: Callable[[], None] = lambda: None,
                        progress: Callable[[int, int], None] = lambda ended, steps: None) -> float:
    """Block until the replay is done — every partition has passed its replay_end and every step is closed;
    return the seconds waited.

    ``check`` raises to abort (e.g. the embedded worker died); ``progress(partitions ended, steps finalised)``.
    """
    t0 = time.monotonic()
    while True:
        ended = partitions_ended(client, replay_id)
        progress(ended, steps_finalised(client, replay_id))
        if replay_done(client, replay_id):  # recorded once every partition has passed replay_end
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise ReplayRunError(
                f"the worker has not finished replay {replay_id} after {timeout:g} s: {ended} of {partitions} "
                f"partitions passed replay_end, {steps_finalised(client, replay_id)} steps finalised; not done "
                "(is a worker running against this Kafka and Redis?)")
        check()
        time.sleep(0.1)


class AlertCollector(threading.Thread):
    """Reads the alert topic from where it ends at construction and keeps the alerts of one replay.

    Assigns every partition itself (no consumer group: nothing to join, nothing to steal); reads committed
    records only. Duplicates (at-least-once delivery, on brokers without transactions) are kept once, by alert
    id, and counted in ``duplicates``; malformed records are counted, not fatal.
    """

    def __init__(self, bootstrap: str, topic: str, replay_id: str) -> None:
        from kafka import KafkaConsumer, TopicPartition
        from kafka.errors import KafkaError

        super().__init__(name="txmon-replay-alerts", daemon=True)
        self.replay_id = replay_id
        self.alerts: dict[str, Alert] = {}
        self.malformed = 0
        self.duplicates = 0  # records of an alert id already read
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        try:
            self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                          client_id="txmon-replay", fetch_max_wait_ms=200,
                                          isolation_level="read_committed",  # the workers' committed alerts
                                          bootstrap_timeout_ms=10_000)
            parts = self.consumer.partitions_for_topic(topic)
            if not parts:
                raise ReplayRunError(f"topic {topic} does not exist at {bootstrap}")
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            self.consumer.assign(tps)
            # From the current end: alerts of earlier replays are skipped. Tansu places the end a batch
            # early (docs/tansu.md); the few earlier records this re-reads belong to other replays.
            self.consumer.seek_to_end(*tps)
            for tp in tps:
                self.consumer.position(tp)  # resolve the seek now, before the replay is sent
        except KafkaError as e:
            raise ReplayRunError(f"cannot read {topic} at {bootstrap}: {e}") from None

    def run(self) -> None:
        try:
            while not self._stopping.is_set():
                for records in self.consumer.poll(timeout_ms=200).values():
                    for r in records:
                        self._take(r.value)
        except BaseException as e:  # noqa: BLE001 - reported to the caller by check()
            self.error = e
        finally:
            self.consumer.close()

    def _take(self, value: bytes | None) -> None:
        try:
            a = Alert.model_validate_json(value or b"")
        except ValidationError:
            with self._lock:
                self.malformed += 1
            return
        if a.replay_id == self.replay_id:
            with self._lock:
                if a.alert_id in self.alerts:
                    self.duplicates += 1
                else:
                    self.alerts[a.alert_id] = a

    def check(self) -> None:
        if self.error is not None:
            raise ReplayRunError(f"reading the alert topic failed: {self.error}")

    def count(self) -> int:
        with self._lock:
            return len(self.alerts)

    def wait_for(self, n: int, timeout: float) -> list[Alert]:
        """All the replay's alerts once ``n`` distinct ones have arrived (ReplayRunError after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while self.count() < n:
            self.check()
            if time.monotonic() > deadline:
                raise ReplayRunError(f"only {self.count():,} of the {n:,} alerts the worker published for replay "
                                     f"{self.replay_id} arrived on the alert topic within {timeout:g} s")
            time.sleep(0.05)
        with self._lock:
            return sorted(self.alerts.values(), key=lambda a: a.alert_id)

    def stop(self) -> None:
        self._stopping.set()
        if self.is_alive():
            self.join(5)
        elif self.ident is None:  # never started: run() would have closed it
            self.consumer.close()
