"""Publishing one input partition's outputs together with its consumer offset.

``ExactlyOnce`` (Apache Kafka): a transactional producer per input partition, ``transactional.id`` =
``<group>-<topic>-<partition>``. Each batch's alerts, statistics and dead letters are sent and its next offset
committed (``send_offsets_to_transaction``) in one transaction, so a read-committed consumer sees them once,
or — when the worker dies first — never, and the partition's next owner processes the records again and
publishes the same outputs (stream_app.claims). The id per *input* partition is the fencing: whoever takes
the partition over initialises the same id, which aborts the old owner's open transaction and refuses its
later commits; only then does it read the committed offset, and drops records below it (a commit the old
owner made between the rebalance and the fencing). Faust's own ``exactly_once`` is not used: it picks a
send's producer by the *output* partition it writes to, so a batch's outputs and its input offsets land in
different transactions; and aiokafka's TxnOffsetCommit carries no group generation (KIP-447), so one
producer per worker could not fence a zombie.

``AtLeastOnce`` (brokers without transactions, such as Tansu): send, flush, then commit the offsets. A batch
retried after a crash publishes its outputs again: consumers de-duplicate by alert id.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    InvalidProducerEpoch,
    KafkaError,
    ProducerClosed,
    ProducerFenced,
    TransactionalIdAuthorizationFailed,
)

from stream_app.routing import Outputs

log = logging.getLogger(__name__)

FENCED = (ProducerFenced, InvalidProducerEpoch, TransactionalIdAuthorizationFailed)
# A failpoint for the fault tests: the worker exits at once (as kill -9 would) before committing its Kth
# transaction that carries alerts, with the alerts already on the broker, uncommitted.
CRASH_BEFORE_COMMIT = "TXMON_TEST_CRASH_BEFORE_COMMIT"
STOP_WAIT_S = 3.0  # how long a producer may take to stop before a rebalance goes on without it
# aiokafka retries AddOffsetsToTxn and EndTxn refused with CONCURRENT_TRANSACTIONS — the broker still writing the
# previous commit's markers (KAFKA-5477), when a batch's commit follows the last one closely — after
# retry_backoff_ms: 100 ms by default, the loop idle meanwhile. Java's client retries this case after 20 ms.
# Four partitions' deliveries back to back: 113 → 34 ms a round (benchmarks/bench_delivery.py).
TXN_RETRY_BACKOFF_MS = 20


class DeliveryError(RuntimeError):
    """Publishing a batch failed in a way a retry cannot fix."""


@dataclass(frozen=True)
class OutputTopics:
    alerts: str
    stats: str
    dead_letter: str
    transactions: str  # hand-overs go to the input topic, to the partition owning their step

    def records(self, out: Outputs) -> list[tuple[str, bytes | None, bytes, int | None]]:
        """(topic, key, value, partition: None for the producer's choice by key)."""
        return ([(self.alerts, k, v, None) for k, v in out.alerts] + [(self.stats, k, v, None) for k, v in out.stats]
                + [(self.dead_letter, k, v, None) for k, v in out.dead_letters]
                + [(self.transactions, k, v, p) for p, k, v in out.handovers])


class Delivery(Protocol):
    async def admit(self, partition: int) -> int:
        """The lowest offset of ``partition`` still to process (records below it are done), -1: not ours now."""
        ...

    async def deliver(self, partition: int, out: Outputs, first_offset: int, next_offset: int,
                      current: Callable[[], bool] = lambda: True) -> bool:
        """Publish ``out``, the outputs of the records ``first_offset`` .. ``next_offset`` - 1, and commit
        ``next_offset``; False when the partition is no longer ours (drop the batch: its next owner does it), or
        ``current()`` says a rebalance came since the records were read (they are read again)."""
        ...

    async def revoke(self, partitions: set[int]) -> None: ...

    async def close(self) -> None: ...


@dataclass
class _Owner:
    producer: AIOKafkaProducer
    in_txn: bool
    last_commit: float
    # Set when a rebalance takes the partition: wakes a publish in flight, which is then abandoned.
    revoked: asyncio.Event = field(default_factory=asyncio.Event)


class ExactlyOnce:
    def __init__(self, bootstrap: str, group_id: str, input_topic: str, topics: OutputTopics,
                 assigned: Callable[[int], bool], commit_interval_s: float = 1.0,
                 transaction_timeout_ms: int = 30_000, retry_backoff_ms: int = TXN_RETRY_BACKOFF_MS) -> None:
        self.bootstrap = bootstrap
        self.group_id = group_id
        self.input_topic = input_topic
        self.topics = topics
        self.assigned = assigned  # the consumer's current assignment: never open a producer for another's partition
        self.commit_interval_s = commit_interval_s
        self.transaction_timeout_ms = transaction_timeout_ms
        self.retry_backoff_ms = retry_backoff_ms
        self._owners: dict[int, _Owner] = {}
        self._admin: AIOKafkaAdminClient | None = None
        self._committed_by_us: dict[int, int] = {}  # partition -> the offset this worker last committed
        self._stopping: set[asyncio.Future[None]] = set()  # producer stops that outlived STOP_WAIT_S
        self._crash_at = int(os.environ.get(CRASH_BEFORE_COMMIT, "0"))
        self._with_alerts = 0

    def transactional_id(self, partition: int) -> str:
        return f"{self.group_id}-{self.input_topic}-{partition}"

    async def admit(self, partition: int) -> int:
        if not self.assigned(partition):
            return -1
        if partition in self._owners:
            return 0
        await self._open(partition)
        return await self._committed(partition)

    async def _open(self, partition: int) -> _Owner:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, transactional_id=self.transactional_id(partition),
                                    transaction_timeout_ms=self.transaction_timeout_ms, linger_ms=2,
                                    retry_backoff_ms=self.retry_backoff_ms,
                                    client_id=f"{self.group_id}-txn-{partition}")
        try:
            await producer.start()
            await producer.begin_transaction()  # waits for the producer id: the old owner is fenced from here on
        except BaseException:
            await producer.stop()
            raise
        owner = _Owner(producer, in_txn=True, last_commit=time.monotonic())
        self._owners[partition] = owner
        log.info("partition %d: transactional producer %s ready", partition, self.transactional_id(partition))
        return owner

    async def _committed(self, partition: int) -> int:
        if self._admin is None:
            self._admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, client_id=f"{self.group_id}-offsets")
            await self._admin.start()
        tp = TopicPartition(self.input_topic, partition)
        found = await self._admin.list_consumer_group_offsets(self.group_id, partitions=[tp])
        meta = found.get(tp)
        return meta.offset if meta is not None and meta.offset >= 0 else 0

    async def deliver(self, partition: int, out: Outputs, first_offset: int, next_offset: int,
                      current: Callable[[], bool] = lambda: True) -> bool:
        owner = self._owners.get(partition)
        if owner is None:
            if not self.assigned(partition) or not current():
                return False
            owner = await self._open(partition)  # a retry after a failed transaction (the old one was dropped)
            committed = await self._committed(partition)
            if committed == 0 and self._committed_by_us.get(partition, 0) > 0:
                raise DeliveryError(f"partition {partition}: the broker has no committed offset for the group, but "
                                    f"this worker committed {self._committed_by_us[partition]}: it lost its data "
                                    f"(restarted empty?). The worker stops rather than guess where to resume")
            if committed > first_offset:
                raise DeliveryError(f"partition {partition}: offset {committed} was committed by another worker "
                                    f"while this one held records from {first_offset}")
        if not current():  # checked after the awaits above: a revocation from here on abandons the publish
            return False
        if out.empty and time.monotonic() - owner.last_commit < self.commit_interval_s:
            return True  # nothing to publish: the offset rides along with the partition's next transaction
        # The transaction runs as a task of its own, abandoned when a rebalance takes the partition: a producer
        # stopped mid-transaction (the broker was down) can leave its awaits unresolved for good.
        publish = asyncio.ensure_future(self._transact(owner, partition, out, next_offset))
        revoked = asyncio.ensure_future(owner.revoked.wait())
        try:
            done, _ = await asyncio.wait({publish, revoked}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            revoked.cancel()
            if not publish.done():
                publish.cancel()
        if publish not in done or publish.cancelled():
            log.warning("partition %d: revoked while its batch was being published; its next owner publishes it",
                        partition)
            return False
        try:
            publish.result()
            return True
        except (*FENCED, ProducerClosed) as e:
            await self._drop(partition)
            if isinstance(e, ProducerClosed) and not owner.revoked.is_set():
                raise DeliveryError(f"partition {partition}: producer closed mid-transaction") from e
            log.warning("partition %d: no longer ours (%s); its next owner publishes this batch", partition,
                        type(e).__name__)
            return False
        except KafkaError:
            await self._drop(partition)  # its transaction is aborted when the id is initialised again
            raise

    async def _transact(self, owner: _Owner, partition: int, out: Outputs, next_offset: int) -> None:
        if not owner.in_txn:
            await owner.producer.begin_transaction()
            owner.in_txn = True
        sent = [await owner.producer.send(topic, value=value, key=key, partition=to)
                for topic, key, value, to in self.topics.records(out)]
        await owner.producer.send_offsets_to_transaction(
            {TopicPartition(self.input_topic, partition): next_offset}, self.group_id)
        if self._crash_at and out.alerts:
            await self._failpoint(owner)
        await owner.producer.commit_transaction()
        await asyncio.gather(*sent)  # acknowledged: commit_transaction flushed them
        self._committed_by_us[partition] = next_offset
        owner.in_txn = False
        owner.last_commit = time.monotonic()

    async def _failpoint(self, owner: _Owner) -> None:
        self._with_alerts += 1
        if self._with_alerts == self._crash_at:
            await owner.producer.flush()
            log.critical("%s=%d: exiting before the commit", CRASH_BEFORE_COMMIT, self._crash_at)
            logging.shutdown()
            os._exit(137)

    async def _drop(self, partition: int) -> None:
        """Stop the partition's producer, waiting at most ``STOP_WAIT_S``: stop() flushes what the producer holds,
        and a broker that answers NotEnoughReplicas (restarted, recovering) makes aiokafka retry that without end,
        which would hang a rebalance. A stop that takes longer goes on in the background; it ends when the next
        owner's producer fences this one (its sends then fail) or the broker recovers."""
        owner = self._owners.pop(partition, None)
        if owner is None:
            return
        stopping = asyncio.ensure_future(owner.producer.stop())
        try:
            await asyncio.wait_for(asyncio.shield(stopping), STOP_WAIT_S)
        except TimeoutError:
            log.warning("partition %d: its producer did not stop within %g s; left to finish in the background",
                        partition, STOP_WAIT_S)
            self._stopping.add(stopping)
            stopping.add_done_callback(self._stopped)
        except KafkaError as e:  # stopping is best effort: the broker aborts an open transaction itself
            log.debug("partition %d: stopping its producer: %s", partition, e)

    def _stopped(self, stopping: asyncio.Future[None]) -> None:
        self._stopping.discard(stopping)
        if not stopping.cancelled() and (e := stopping.exception()) is not None:
            log.debug("a producer stopped in the background: %s", e)

    async def revoke(self, partitions: set[int]) -> None:
        for p in partitions:
            if (owner := self._owners.get(p)) is not None:
                owner.revoked.set()
            await self._drop(p)

    async def close(self) -> None:
        await self.revoke(set(self._owners))
        if self._admin is not None:
            await self._admin.close()
            self._admin = None


class AtLeastOnce:
    """Send through the worker's own producer, flush, then commit the batch's offsets (``commit``: False when
    the partition moved meanwhile)."""

    def __init__(self, topics: OutputTopics, send: Callable[[str, bytes | None, bytes, int | None], Awaitable[object]],
                 flush: Callable[[], Awaitable[object]], commit: Callable[[int, int], Awaitable[bool]]) -> None:
        self.topics = topics
        self._send = send
        self._flush = flush
        self._commit = commit

    async def admit(self, partition: int) -> int:
        return 0

    async def deliver(self, partition: int, out: Outputs, first_offset: int, next_offset: int,
                      current: Callable[[], bool] = lambda: True) -> bool:
        if not current():
            return False
        for topic, key, value, to in self.topics.records(out):
            await self._send(topic, key, value, to)
        if not out.empty:
            await self._flush()  # on the broker before the offsets are committed
        return await self._commit(partition, next_offset)

    async def revoke(self, partitions: set[int]) -> None:
        pass

    async def close(self) -> None:
        pass
