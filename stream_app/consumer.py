"""The worker's consumer of the transactions topic: micro-batches straight from aiokafka's ``getmany``.

Faust's agent stream is not used for it: measured on the full replay, Faust's per-message path (an Event, a
Message and a queue hop per record, its own offset bookkeeping) cost about half the worker's CPU, and the worker
needs none of it — its offsets are committed by stream_app.delivery, its state lives in Redis. The Faust app
keeps the web views, the timers and the process's lifecycle; it runs no consumer of its own.

The group is ``worker_app_id``, as before; a rebalance hands the revoked partitions to ``on_revoked`` before
the group moves on (stream_app.delivery abandons their publishes in flight).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, ConsumerStoppedError, NoOffsetForPartitionError, OffsetOutOfRangeError

from stream_app.placement import Placement
from stream_app.routing import Record
from txmon.core.settings import Settings
from txmon.core.tx_batch import transactions_in

log = logging.getLogger(__name__)
DEFAULT_FETCH_WAIT_MS = 500  # aiokafka's: Apache Kafka answers a fetch as soon as data arrives
# aiokafka's default is 1 MiB a partition, ~1,500 transactions of tx_batch records: on a backlog a micro-batch
# (TXMON_BATCH_MAX 4,000) then waited for fetch round trips the consuming loop could only start between route()
# calls. 8 MiB holds a whole micro-batch of one partition: a full replay's median 15,558 → 16,834 tx/s (ten
# alternating pairs, benchmarks/bench_pipeline.py); at most 8 MiB buffered a partition.
PARTITION_FETCH_BYTES = 8 << 20
READY = "ready: joined consumer group"  # logged at each assignment: txmon.pipeline waits for the first


class _Listener(ConsumerRebalanceListener):
    def __init__(self, topic: str, group: str, on_revoked: Callable[[set[int]], Awaitable[None]]) -> None:
        self.topic = topic
        self.group = group
        self.on_revoked = on_revoked

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.on_revoked({tp.partition for tp in revoked if tp.topic == self.topic})

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("%s %s: partitions %s of %s", READY, self.group, sorted(tp.partition for tp in assigned), self.topic)


class PositionLost(RuntimeError):
    """The broker no longer holds the offset this worker had reached on a partition: it lost its data."""


class TransactionsConsumer:
    """Micro-batches of the transactions topic, by partition, in offset order; commits for at-least-once."""

    def __init__(self, settings: Settings, on_revoked: Callable[[set[int]], Awaitable[None]]) -> None:
        self.topic = settings.topic_transactions
        self.settings = settings
        self.batch_max = settings.batch_max
        self._per_record: int | None = None  # the most transactions a record has held; None before any
        self.wait_ms = max(1, int(settings.batch_wait_s * 1000))
        self._listener = _Listener(self.topic, settings.worker_app_id, self._revoked)
        self._on_revoked = on_revoked
        self._progressed: set[int] = set()  # partitions this worker has read records of since they were assigned
        # Counted up at each revocation: aiokafka's rebalances revoke every partition and read the ones assigned
        # again from their committed offsets, so records fetched in an earlier epoch are fetched again.
        self.epoch = 0
        self._consumer: AIOKafkaConsumer | None = None  # made on the event loop, at start
        self._stopping = False

    async def start(self) -> None:
        settings = self.settings
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap or "127.0.0.1:9092",
            group_id=settings.worker_app_id,
            client_id=f"{settings.worker_app_id}-consumer",
            enable_auto_commit=False,  # offsets are committed with each batch's outputs (stream_app.delivery)
            # "none": an offset the broker no longer holds is an error to look at (_fetch), not a silent reset:
            # records read after a silent reset, before the rebalance that follows, could be published twice.
            auto_offset_reset="none",
            # A short session: a killed worker's partitions move within seconds (a Tansu join takes session / 2).
            session_timeout_ms=6_000,
            heartbeat_interval_ms=1_000,
            fetch_max_wait_ms=settings.fetch_wait_ms or DEFAULT_FETCH_WAIT_MS,
            max_partition_fetch_bytes=max(PARTITION_FETCH_BYTES, settings.max_record_bytes),
            # Workers hand work over to each other on this topic inside their transactions (stream_app.placement):
            # an aborted hand-over is never seen. Tansu has no transactions (and at-least-once sends none).
            isolation_level="read_committed" if settings.processing_guarantee in (None, "exactly_once")
            else "read_uncommitted",
        )
        self._consumer.subscribe([self.topic], listener=self._listener)
        await self._consumer.start()

    def assigned(self, partition: int) -> bool:
        """Whether ``partition`` is this worker's now (never once it is stopping)."""
        return (not self._stopping and self._consumer is not None
                and TopicPartition(self.topic, partition) in self._consumer.assignment())

    def placement(self) -> Placement:
        """The topic's partition count and this worker's partitions now (stream_app.placement)."""
        assert self._consumer is not None, "start() first"
        partitions = self._consumer.partitions_for_topic(self.topic)
        if not partitions:  # it has fetched records of the topic, so this is not expected: the batch is retried
            raise RuntimeError(f"no metadata for topic {self.topic} yet")
        held = frozenset(tp.partition for tp in self._consumer.assignment() if tp.topic == self.topic)
        return Placement(len(partitions), held)

    async def batches(self) -> AsyncIterator[dict[int, list[Record]]]:
        """Micro-batches by partition, until the consumer stops: what arrives within ``batch_wait_s`` of a
        batch's first record, ``batch_max`` transactions at most, give or take one record (a ``tx_batch`` record
        counts its transactions; Faust's ``take``, without a stream per record)."""
        assert self._consumer is not None, "start() first"
        while not self._stopping:
            try:
                fetched = await self._fetch(self.wait_ms, self._want(0))
                if not fetched:
                    continue
                deadline = time.monotonic() + self.wait_ms / 1000
                n = self._count(fetched.values())
                epoch = self.epoch
                while n < self.batch_max and (left := deadline - time.monotonic()) > 0:
                    more = await self._fetch(int(left * 1000) + 1, self._want(n))
                    if self.epoch != epoch:  # a rebalance: what was fetched before it is fetched again
                        fetched, n, epoch = {}, 0, self.epoch
                    for tp, msgs in more.items():
                        fetched.setdefault(tp, []).extend(msgs)
                    n += self._count(more.values())
            except ConsumerStoppedError:
                return
            batch = {tp.partition: msgs for tp, msgs in fetched.items() if msgs}
            self._progressed.update(batch)
            yield batch

    async def _fetch(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Record]]:
        """``getmany``, starting a partition without a committed offset at its beginning (as "earliest" would);
        PositionLost when a partition this worker has read from no longer holds its position."""
        assert self._consumer is not None, "start() first"
        try:
            return await self._consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        except NoOffsetForPartitionError as e:  # the group's first start on this partition
            await self._consumer.seek_to_beginning(*e.args)
        except OffsetOutOfRangeError as e:
            at: dict[TopicPartition, int] = e.args[0]
            if lost := sorted(tp.partition for tp in at if tp.partition in self._progressed):
                raise PositionLost(f"partitions {lost}: the broker no longer holds the offsets this worker had "
                                   f"reached ({', '.join(f'{tp.partition}: {o}' for tp, o in at.items())}): it lost "
                                   f"its data (restarted empty?). The worker stops rather than guess where to "
                                   f"resume") from None
            # A committed offset before the log's start: retention deleted records before any worker read them.
            log.warning("offsets %s are no longer on the broker (retention?): reading those partitions from their "
                        "beginning", {tp.partition: o for tp, o in at.items()})
            await self._consumer.seek_to_beginning(*at)
        return {}

    async def _revoked(self, partitions: set[int]) -> None:
        self.epoch += 1
        self._progressed -= partitions
        await self._on_revoked(partitions)

    def _want(self, n: int) -> int:
        """Records to fetch when the micro-batch holds ``n`` transactions: as many as it lacks if every record held
        the most transactions a record has held so far (``producer_batch`` before the first fetch): one fetch for
        one-transaction records; once batch records have come, never more than one record beyond ``batch_max``."""
        return max(1, (self.batch_max - n) // (self._per_record or self.settings.producer_batch))

    def _count(self, fetched: Iterable[list[Record]]) -> int:
        counts = [transactions_in(m.value) for msgs in fetched for m in msgs]
        self._per_record = max(self._per_record or 1, 1, *counts)
        return sum(counts)

    async def commit(self, partition: int, next_offset: int) -> bool:
        """Commit ``next_offset`` for the group (at-least-once); False when the partition moved meanwhile."""
        assert self._consumer is not None, "start() first"
        try:
            await self._consumer.commit({TopicPartition(self.topic, partition): next_offset})
        except CommitFailedError as e:
            log.warning("partition %d: offset %d not committed (%s); its next owner processes it again",
                        partition, next_offset, e)
            return False
        return True

    async def stop(self) -> None:
        """Leave the group: the partitions move to the other workers at once, not after the session timeout."""
        self._stopping = True
        if self._consumer is not None:
            await self._consumer.stop()
