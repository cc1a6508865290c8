"""Send a planned replay to Kafka: events in order, markers on every partition, optional pacing.

For each step: every transaction — by default as binary ``tx_batch`` records of up to
``producer_batch`` consecutive transactions (txmon.core.tx_batch), to the partitions in turn; with
``record_format`` json, one TxEvent JSON record per transaction, keyed by tx id — then a flush, so
that on every partition the step's ``step_end`` marker lands after all of its transactions; then
``step_end`` to each partition explicitly. After the last step, ``replay_end`` to each partition.
Labels are never read, let alone sent.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
from kafka import KafkaProducer
from kafka.errors import KafkaError

from producer.kafka_io import ProducerError, ensure_topics, make_producer
from producer.plan import ReplayPlan, SkippedEdges, StepPlan, plan_replay, stamp
from replay.data.dataset import EllipticDataset
from txmon.core.settings import Settings

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (events sent, events in the replay)
PROGRESS_EVERY_S = 0.1


def new_replay_id(clock: Callable[[], float] = time.time) -> str:
    """Short, readable, unique enough: UTC time to the second plus 4 random hex digits."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime(clock())) + "-" + secrets.token_hex(2)


class Pacer:
    """Holds a sender to ``rate`` events per second on a fixed schedule (no drift).

    Event i is due at ``t0 + i / rate``; ``wait()`` sleeps until the next event is due. A sender
    that falls behind (a slow flush, a busy broker) catches up, but by at most ``max_burst``
    seconds' worth of events, so a long stall does not turn into a flood. ``rate=None``: no pacing.
    """

    def __init__(self, rate: float | None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, max_burst: float = 1.0) -> None:
        if rate is not None and not rate > 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.rate = rate
        self._clock, self._sleep, self._max_burst = clock, sleep, max_burst
        self._t0: float | None = None
        self._n = 0

    def wait(self) -> None:
        if self.rate is None:
            return
        now = self._clock()
        if self._t0 is None:
            self._t0 = now
        due = self._t0 + self._n / self.rate
        if due > now:
            self._sleep(due - now)
        elif now - due > self._max_burst:  # too far behind: forget the debt beyond max_burst
            self._t0 = now - self._max_burst - self._n / self.rate
        self._n += 1

    def now(self) -> float:
        return self._clock()

    def due_in(self) -> float:
        """Seconds until the next event is due (0 when it is due now, or with no pacing)."""
        if self.rate is None or self._t0 is None:
            return 0.0
        return max(0.0, self._t0 + self._n / self.rate - self._clock())


@dataclass(frozen=True)
class ReplaySummary:
    replay_id: str
    topic: str
    partitions: int
    first_step: int
    last_step: int
    events: int  # transaction events
    markers: int  # step_end + replay_end records (one per partition each)
    edges: int  # edges carried by the events
    bytes: int  # keys + values of every record sent
    seconds: float
    target_rate: float | None
    step_counts: dict[int, int]
    skipped: SkippedEdges
    empty_steps: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Transaction events per second, flushes included."""
        return self.events / self.seconds if self.seconds > 0 else 0.0

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0

    @property
    def steps(self) -> int:
        return len(self.step_counts)


def run_replay(ds: EllipticDataset, bootstrap: str, settings: Settings, first_step: int | None = None,
               last_step: int | None = None, rate: float | None = None, replay_id: str | None = None,
               progress: Progress | None = None, partitions: int | None = None) -> ReplaySummary:
    """Plan and send steps ``first_step..last_step`` of ``ds`` (PlanError, ProducerError on failure)."""
    plan = plan_replay(ds, first_step, last_step, replay_id or new_replay_id())
    return send_replay(plan, bootstrap, settings, rate=rate, progress=progress, partitions=partitions)


@dataclass(frozen=True)
class TopicSetup:
    partitions: int  # of the transactions topic: markers go to each
    notes: list[str] = field(default_factory=list)


def prepare_topics(bootstrap: str, settings: Settings, partitions: int | None = None) -> TopicSetup:
    """Create txmon's topics when missing (``partitions`` each, default ``settings.topic_partitions``)."""
    wanted = partitions or settings.topic_partitions
    topic = settings.topic_transactions
    counts = ensure_topics(bootstrap, settings.topics, wanted)
    notes = []
    if counts[topic] != wanted:
        notes.append(f"topic {topic} already exists with {counts[topic]} partitions (not {wanted}); "
                     f"markers go to all {counts[topic]}")
    return TopicSetup(counts[topic], notes)


def send_replay(plan: ReplayPlan, bootstrap: str, settings: Settings, rate: float | None = None,
                progress: Progress | None = None, partitions: int | None = None, setup: TopicSetup | None = None,
                producer: KafkaProducer | None = None, pacer: Pacer | None = None) -> ReplaySummary:
    """Send a planned replay (ProducerError on failure).

    ``setup``: the result of ``prepare_topics`` when the caller already ran it (else it runs here,
    with ``partitions``); ``producer``: default ``make_producer(bootstrap)``, closed at the end.
    """
    topic = settings.topic_transactions
    setup = setup or prepare_topics(bootstrap, settings, partitions)
    n_partitions = setup.partitions
    notes = plan.warnings() + setup.notes
    for note in notes:
        log.warning("%s", note)
    own = producer is None
    producer = producer or make_producer(bootstrap)
    pacer = pacer or Pacer(rate)
    total, sent, n_bytes, markers, batches = plan.count, 0, 0, 0, 0
    step_counts: dict[int, int] = {}
    next_progress = 0.0
    t0 = time.perf_counter()
    try:
        known = producer.partitions_for(topic)
        if known is not None and len(known) != n_partitions:
            raise ProducerError(f"topic {topic}: the admin API reports {n_partitions} partitions, "
                                f"the producer's metadata {len(known)}")
        for sp in plan:
            futures = []
            if settings.record_format == "json":
                for tx_id, head in zip(sp.tx_ids.tolist(), sp.wire_heads(), strict=True):
                    pacer.wait()
                    key = str(tx_id).encode()
                    value = head + stamp(sp.clock())  # = the TxEvent's JSON, stamped with the send time
                    futures.append(producer.send(topic, value=value, key=key))
                    n_bytes += len(key) + len(value)
                    sent += 1
                    if progress is not None and (now := time.monotonic()) >= next_progress:
                        progress(sent, total)
                        next_progress = now + PROGRESS_EVERY_S
            else:
                for start, stop, value in _batches(sp, settings, pacer):
                    # round robin: the partitions get equal shares whatever the keys
                    key = f"{sp.replay_id}:{sp.step}:{start}".encode()
                    futures.append(producer.send(topic, value=value, key=key, partition=batches % n_partitions))
                    batches += 1
                    n_bytes += len(key) + len(value)
                    sent += stop - start
                    if progress is not None and (now := time.monotonic()) >= next_progress:
                        progress(sent, total)
                        next_progress = now + PROGRESS_EVERY_S
            _flush(producer, futures, f"step {sp.step}")
            end = sp.end(n_partitions).model_dump_json().encode()
            n_bytes += _to_every_partition(producer, topic, end, n_partitions, f"step {sp.step}'s step_end")
            markers += n_partitions
            step_counts[sp.step] = sp.count
            if progress is not None:
                progress(sent, total)
        end = plan.end(n_partitions).model_dump_json().encode()
        n_bytes += _to_every_partition(producer, topic, end, n_partitions, "replay_end")
        markers += n_partitions
    except KafkaError as e:
        raise ProducerError(f"sending to {topic} at {bootstrap} failed after {sent:,} events: {e}") from None
    finally:
        if own:
            producer.close(timeout=10)
    return ReplaySummary(
        replay_id=plan.replay_id, topic=topic, partitions=n_partitions, first_step=plan.first_step,
        last_step=plan.last_step, events=sent, markers=markers, edges=plan.n_edges, bytes=n_bytes,
        seconds=time.perf_counter() - t0, target_rate=rate, step_counts=step_counts, skipped=plan.skipped,
        empty_steps=list(plan.empty_steps), warnings=notes,
    )


def _batches(sp: StepPlan, settings: Settings, pacer: Pacer) -> Iterator[tuple[int, int, bytes]]:
    """The step as ``tx_batch`` records (start seq, stop seq, value), each transaction stamped when the pacer lets
    it go; a record goes out when full, or before its first transaction would wait past the linger time."""
    sp.check_features()
    header = 512  # room for the header, whose replay id is at most 100 characters
    ends = sp.batch_ends(settings.producer_batch, settings.max_record_bytes - header)
    linger = settings.producer_linger_ms / 1000
    times = np.empty(sp.count, dtype=np.float64)
    start, opened = 0, 0.0
    for stop in ends:
        for seq in range(start, stop):
            if seq > start and pacer.now() + pacer.due_in() - opened > linger:
                yield start, seq, sp.columns(start, seq, times[start:seq]).encode()
                start = seq
            pacer.wait()
            if seq == start:
                opened = pacer.now()
            times[seq] = sp.clock()
        yield start, stop, sp.columns(start, stop, times[start:stop]).encode()
        start = stop


def _to_every_partition(producer: KafkaProducer, topic: str, value: bytes, n_partitions: int, what: str) -> int:
    futures = [producer.send(topic, value=value, partition=p) for p in range(n_partitions)]
    _flush(producer, futures, what)
    return len(value) * n_partitions


def _flush(producer: KafkaProducer, futures: list, what: str) -> None:
    producer.flush(timeout=120)
    failed = [f for f in futures if f.failed()]
    pending = sum(not f.is_done for f in futures)
    if failed or pending:
        cause = failed[0].exception if failed else "no answer in time"
        raise ProducerError(f"{len(failed) + pending:,} of {len(futures):,} records of {what} were not delivered: "
                            f"{cause}")
