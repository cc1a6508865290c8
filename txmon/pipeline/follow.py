"""Following a replay live: its alerts and step statistics read from the topics as they arrive.

A plain kafka-python consumer in a background thread that assigns every partition itself and seeks to the
beginning: no consumer group, because group joins take seconds on Tansu (docs/tansu.md). What it reads goes
into a ``DemoState`` (under its lock), which ``txmon demo``'s live view and summary read. Nothing here reads
labels.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import ValidationError

from txmon.core.contracts import Alert, StepStats
from txmon.core.errors import TxmonError
from txmon.core.settings import Settings


class FollowerError(TxmonError, RuntimeError):
    """The alert/stats follower could not read its topics."""


@dataclass
class DemoState:
    """Everything the follower and the replay report, read by the live view and the summary (under ``lock``)."""

    replay_id: str
    total_events: int
    first_step: int
    last_step: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    sent: int = 0
    replay_started: float | None = None
    worker_ready_after: float | None = None
    stats: dict[int, StepStats] = field(default_factory=dict)
    alerts: dict[str, Alert] = field(default_factory=dict)  # by alert id: a re-read record counts once
    alerts_by_step: dict[int, Counter] = field(default_factory=lambda: defaultdict(Counter))
    recent: deque = field(default_factory=lambda: deque(maxlen=6))
    done_at: float | None = None  # monotonic time the last step's statistics arrived
    done: threading.Event = field(default_factory=threading.Event)
    bad_records: int = 0
    other_replays: int = 0  # records of earlier replays on a reused (external) broker, skipped

    def add_alert(self, alert: Alert) -> None:
        with self.lock:
            if alert.alert_id in self.alerts:
                return
            self.alerts[alert.alert_id] = alert
            self.alerts_by_step[alert.step][alert.kind] += 1
            self.recent.append(alert)

    def add_stats(self, stats: StepStats) -> None:
        with self.lock:
            self.stats[stats.step] = stats
            if stats.step == self.last_step and self.done_at is None:
                self.done_at = time.monotonic()
                self.done.set()

    def kind_counts(self) -> Counter:
        with self.lock:
            return Counter(a.kind for a in self.alerts.values())


class Follower(threading.Thread):
    """Reads the alert and stats topics from the beginning in a background thread.

    A plain kafka-python consumer that assigns every partition itself and seeks to the beginning:
    no consumer group, because group joins take seconds on Tansu (docs/tansu.md). Records of other
    replays (a reused external broker) are skipped; malformed ones are counted.
    """

    def __init__(self, bootstrap: str, settings: Settings, state: DemoState) -> None:
        super().__init__(name="txmon-demo-follower", daemon=True)
        self.bootstrap = bootstrap
        self.alerts_topic = settings.topic_alerts
        self.stats_topic = settings.topic_stats
        self.state = state
        self.error: BaseException | None = None
        self._stopping = threading.Event()
        self._assigned = threading.Event()

    def run(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        try:
            consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                                     client_id="txmon-demo-follower", fetch_max_wait_ms=200,
                                     isolation_level="read_committed",  # only committed transactions
                                     max_partition_fetch_bytes=4 * 1024 * 1024, bootstrap_timeout_ms=10_000)
        except BaseException as e:  # noqa: BLE001 - reported to the main thread
            self.error = e
            self._assigned.set()
            return
        try:
            tps = []
            for topic in (self.alerts_topic, self.stats_topic):
                parts = consumer.partitions_for_topic(topic)
                if not parts:
                    raise FollowerError(f"topic {topic} does not exist at {self.bootstrap}")
                tps += [TopicPartition(topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            self._assigned.set()
            while not self._stopping.is_set():
                for tp, records in consumer.poll(timeout_ms=200).items():
                    for r in records:
                        self._handle(tp.topic, r.value)
        except BaseException as e:  # noqa: BLE001
            self.error = e
        finally:
            self._assigned.set()
            consumer.close()

    def _handle(self, topic: str, value: bytes | None) -> None:
        record: StepStats | Alert
        try:
            if topic == self.stats_topic:
                record = StepStats.model_validate_json(value or b"")
            else:
                record = Alert.model_validate_json(value or b"")
        except ValidationError:
            with self.state.lock:
                self.state.bad_records += 1
            return
        if record.replay_id != self.state.replay_id:
            with self.state.lock:
                self.state.other_replays += 1
            return
        if isinstance(record, StepStats):
            self.state.add_stats(record)
        else:
            self.state.add_alert(record)

    def wait_assigned(self, timeout: float = 30.0) -> None:
        if not self._assigned.wait(timeout):
            raise FollowerError(f"the alert/stats follower could not reach {self.bootstrap} within {timeout:g} s")
        self.check()

    def check(self) -> None:
        if self.error is not None:
            raise FollowerError(f"following {self.alerts_topic} / {self.stats_topic} failed: {self.error}")

    def wait_caught_up(self, alerts: int, timeout: float, check: Callable[[], None] = lambda: None) -> None:
        """Wait until the last step's statistics and ``alerts`` distinct alerts have arrived (FollowerError after
        ``timeout``). Called once the workers are past the replay's replay_end, when everything they published
        for it is on the topics: ``alerts`` is the count they published."""
        deadline = time.monotonic() + timeout
        while not (self.state.done.is_set() and len(self.state.alerts) >= alerts):
            self.check()
            check()
            if time.monotonic() > deadline:
                raise FollowerError(
                    f"the follower has {len(self.state.alerts):,} of the {alerts:,} alerts and "
                    f"{len(self.state.stats)} of {self.state.last_step - self.state.first_step + 1} steps' "
                    f"statistics of replay {self.state.replay_id} {timeout:g} s after the workers finished it")
            time.sleep(0.05)

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self.is_alive():
            self.join(timeout)

    def __enter__(self) -> Follower:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
