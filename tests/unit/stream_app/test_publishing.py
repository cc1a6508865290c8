"""Publishing overlapped with the next batch: in order per partition, never past an unpublished batch, never what
was processed before a rebalance."""

from __future__ import annotations

import asyncio

import pytest

from stream_app.publishing import Part, Publishing


class FakeBroker:
    """Publishes a batch's parts after ``delay`` seconds; refuses the partitions ``lose`` names for the batch (taken
    away)."""

    def __init__(self, delay: float = 0.01) -> None:
        self.delay = delay
        self.lose: dict[int, set[int]] = {}  # batch -> partitions
        self.log: list[tuple[str, int, tuple[int, ...]]] = []  # ("start" | "end", batch, partitions)
        self.batches = 0

    async def publish(self, parts: list[Part[str]]) -> frozenset[int]:
        batch = self.batches
        self.batches += 1
        todo = tuple(p.partition for p in parts)
        self.log.append(("start", batch, todo))
        await asyncio.sleep(self.delay)
        self.log.append(("end", batch, todo))
        return frozenset(p for p in todo if p in self.lose.get(batch, set()))

    def started(self) -> list[tuple[int, ...]]:
        return [todo for kind, _, todo in self.log if kind == "start"]


def _parts(partitions: list[int], epoch: int = 0) -> list[Part[str]]:
    return [Part(p, epoch, f"records of {p}") for p in partitions]


def test_each_publish_starts_after_the_one_before_ended_and_overlaps_what_follows_it() -> None:
    broker = FakeBroker(delay=0.05)
    steps: list[str] = []

    async def run() -> None:
        publishing = Publishing(broker.publish, epoch=lambda: 0, on_error=pytest.fail)
        for batch in ([0, 1], [0, 1], [1]):
            await publishing.submit(_parts(batch))
            # submit returned once the previous publish ended, this one scheduled, not yet run
            steps.append(f"submitted, {len(broker.log)} log entries")
        await publishing.drain()

    asyncio.run(run())
    assert [(kind, batch) for kind, batch, _ in broker.log] == [
        ("start", 0), ("end", 0), ("start", 1), ("end", 1), ("start", 2), ("end", 2)]
    assert steps == ["submitted, 0 log entries", "submitted, 2 log entries", "submitted, 4 log entries"]


def test_a_partition_not_published_is_not_published_again_until_a_rebalance() -> None:
    broker = FakeBroker()
    epoch = 0

    async def run() -> None:
        nonlocal epoch
        publishing = Publishing(broker.publish, epoch=lambda: epoch, on_error=pytest.fail)
        broker.lose = {0: {1}}
        await publishing.submit(_parts([0, 1, 2]))  # batch 0 loses partition 1
        await publishing.submit(_parts([0, 1, 2]))  # processed before that was known: partition 1 skipped
        await publishing.submit(_parts([1, 2]))  # same epoch: its records come after the lost ones, skipped
        await publishing.drain()
        epoch = 1  # the rebalance: partition 1 is read again from its committed offset
        await publishing.submit(_parts([1, 2], epoch=1))
        await publishing.drain()

    asyncio.run(run())
    assert broker.started() == [(0, 1, 2), (0, 2), (2,), (1, 2)]


def test_what_was_processed_before_a_rebalance_is_not_published_after_it() -> None:
    broker = FakeBroker(delay=0.05)
    epoch = 0

    async def run() -> None:
        nonlocal epoch
        publishing = Publishing(broker.publish, epoch=lambda: epoch, on_error=pytest.fail)
        await publishing.submit(_parts([0, 1]))  # published in epoch 0
        await publishing.submit(_parts([0, 1]))  # processed in epoch 0, waits for the first publish
        epoch = 1  # a rebalance meanwhile: every partition is read again from its committed offset
        await publishing.submit(_parts([0, 1], epoch=1))  # those records again, in the new epoch
        await publishing.drain()

    asyncio.run(run())
    # the second batch, processed in epoch 0, would be published in epoch 1: nothing of it goes out
    assert broker.started() == [(0, 1), (), (0, 1)]


def test_a_failed_publish_is_reported_at_once_not_at_the_next_batch() -> None:
    errors: list[BaseException] = []

    async def failing(parts: list[Part[str]]) -> frozenset[int]:
        await asyncio.sleep(0.01)
        raise RuntimeError("broker gone")

    async def run() -> None:
        publishing = Publishing(failing, epoch=lambda: 0, on_error=errors.append)
        await publishing.submit(_parts([0]))
        for _ in range(100):  # bounded: 1 s at most
            if errors:
                break
            await asyncio.sleep(0.01)
        assert [str(e) for e in errors] == ["broker gone"]  # no second batch was submitted
        with pytest.raises(RuntimeError, match="broker gone"):
            await publishing.drain()

    asyncio.run(run())
