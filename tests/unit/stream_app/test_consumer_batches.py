"""``TransactionsConsumer.batches`` sizes micro-batches in transactions, whether a record holds one (JSON) or many
(``tx_batch``), and starts or stops where the broker has no position for it: a fake consumer stands in for
aiokafka's."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from aiokafka import TopicPartition
from aiokafka.errors import NoOffsetForPartitionError, OffsetOutOfRangeError

from stream_app.consumer import PARTITION_FETCH_BYTES, PositionLost, TransactionsConsumer
from stream_app.routing import Consumed
from txmon.core.contracts import TxEvent
from txmon.core.settings import Settings
from txmon.core.tx_batch import encode_events, transactions_in
from txmon.testing.records import TOPIC, tx


def _batch(n: int) -> bytes:
    return encode_events([TxEvent.model_validate_json(json.dumps(tx(seq=i))) for i in range(n)])


class FakeConsumer:
    """A backlog on one partition, served ``max_records`` at a time, with a count of the fetches."""

    def __init__(self, values: list[bytes], consumer: TransactionsConsumer) -> None:
        self.backlog = [Consumed(TOPIC, 0, i, None, v) for i, v in enumerate(values)]
        self.fetches = 0
        self.owner = consumer

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Consumed]]:
        self.fetches += 1
        if not self.backlog:  # as aiokafka's: nothing within the timeout
            self.owner._stopping = True  # the test's end: the backlog is consumed
            await asyncio.sleep(timeout_ms / 1000)
            return {}
        out, self.backlog = self.backlog[:max_records], self.backlog[max_records:]
        return {TopicPartition(TOPIC, 0): out}


def _micro_batches(values: list[bytes], batch_max: int) -> tuple[list[int], int]:
    consumer = TransactionsConsumer(Settings(batch_max=batch_max, batch_wait_s=0.1), on_revoked=None)  # type: ignore[arg-type]
    fake = FakeConsumer(values, consumer)
    consumer._consumer = fake  # type: ignore[assignment]

    async def collect() -> list[int]:
        return [sum(transactions_in(m.value) for m in msgs) async for b in consumer.batches() for msgs in b.values()]

    return asyncio.run(collect()), fake.fetches


def test_one_partition_fetch_holds_a_whole_micro_batch_of_batch_records() -> None:
    """On a backlog a micro-batch is not left waiting for a second fetch round trip of one partition."""
    settings = Settings()
    record = _batch(settings.producer_batch)
    per_tx = len(record) / settings.producer_batch
    assert settings.batch_max * per_tx + len(record) <= PARTITION_FETCH_BYTES


def test_a_record_counts_its_transactions() -> None:
    assert transactions_in(_batch(5)) == 5
    assert transactions_in(json.dumps(tx()).encode()) == 1
    assert transactions_in(None) == 1 and transactions_in(b"TXMB\xff\xff\xff\xff{") == 1


@pytest.mark.parametrize(("per_record", "batch_max"), [(1, 1000), (64, 1000), (64, 64)])
def test_micro_batches_hold_about_batch_max_transactions_whatever_the_records(per_record: int,
                                                                              batch_max: int) -> None:
    value = _batch(per_record) if per_record > 1 else json.dumps(tx()).encode()
    sizes, fetches = _micro_batches([value] * (20_000 // per_record), batch_max=batch_max)
    assert sum(sizes) == 20_000 // per_record * per_record  # nothing lost
    assert all(s <= batch_max + per_record - 1 for s in sizes)
    assert np.median(sizes) >= batch_max - per_record + 1
    assert fetches <= 3 * len(sizes) + 2  # a full micro-batch in a few fetches


class RaisingConsumer:
    """getmany raises ``error`` once, then serves one record of partition 0 per call; records the seeks."""

    def __init__(self, error: Exception) -> None:
        self.error: Exception | None = error
        self.seeks: list[TopicPartition] = []

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Consumed]]:
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        return {TopicPartition(TOPIC, 0): [Consumed(TOPIC, 0, 0, None, json.dumps(tx()).encode())]}

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        self.seeks += partitions


def _first_batch(error: Exception, progressed: set[int]) -> tuple[dict, list[TopicPartition]]:
    consumer = TransactionsConsumer(Settings(batch_max=1, batch_wait_s=0.01), on_revoked=None)  # type: ignore[arg-type]
    fake = RaisingConsumer(error)
    consumer._consumer = fake  # type: ignore[assignment]
    consumer._progressed = progressed

    async def first() -> dict:
        async for batch in consumer.batches():
            return batch
        return {}

    return asyncio.run(first()), fake.seeks


def test_a_partition_without_a_committed_offset_starts_at_its_beginning() -> None:
    tp = TopicPartition(TOPIC, 3)
    batch, seeks = _first_batch(NoOffsetForPartitionError(tp), set())
    assert seeks == [tp] and list(batch) == [0]


def test_an_offset_gone_from_the_broker_stops_the_worker_only_where_it_had_read() -> None:
    tp = TopicPartition(TOPIC, 2)
    with pytest.raises(PositionLost, match="lost its data"):
        _first_batch(OffsetOutOfRangeError({tp: 71}), {2})
    batch, seeks = _first_batch(OffsetOutOfRangeError({tp: 71}), {0, 1})  # a committed offset before the log start
    assert seeks == [tp] and list(batch) == [0]


def test_records_fetched_before_a_rebalance_are_dropped_from_the_micro_batch() -> None:
    """A rebalance revokes every partition and reads them again from their committed offsets: a micro-batch
    that was filling keeps only what came after it, and the epoch says a rebalance came."""
    consumer = TransactionsConsumer(Settings(batch_max=1000, batch_wait_s=0.2), on_revoked=_ignore)
    calls = 0

    class Rebalancing:
        async def getmany(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Consumed]]:
            nonlocal calls
            calls += 1
            if calls == 2:  # the rebalance happens inside the second fetch, as aiokafka's does
                await consumer._revoked({0})
            if calls > 3:
                consumer._stopping = True
                return {}
            value = json.dumps(tx(seq=calls)).encode()
            return {TopicPartition(TOPIC, 0): [Consumed(TOPIC, 0, 10 * calls, None, value)]}

    consumer._consumer = Rebalancing()  # type: ignore[assignment]

    async def first() -> dict:
        async for batch in consumer.batches():
            return batch
        return {}

    batch = asyncio.run(first())
    assert consumer.epoch == 1
    assert [m.offset for m in batch[0]] == [20, 30]  # offset 10, fetched before the rebalance, is gone


async def _ignore(partitions: set[int]) -> None:
    return None
