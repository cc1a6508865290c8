"""Publishing overlapped with the next batch: in order per partition, never past an unpublished batch."""

from __future__ import annotations

import asyncio

import pytest

from stream_app.publishing import Publishing

Work = list[int]  # the partitions a batch has records of


class FakeBroker:
    """Publishes a batch's partitions after ``delay`` seconds; refuses those ``lose`` names for the batch (taken
    away)."""

    def __init__(self, delay: float = 0.01) -> None:
        self.delay = delay
        self.lose: dict[int, set[int]] = {}  # batch -> partitions
        self.log: list[tuple[str, int, tuple[int, ...]]] = []  # ("start" | "end", batch, partitions)
        self.batches = 0

    async def publish(self, work: Work, skip: frozenset[int]) -> frozenset[int]:
        batch = self.batches
        self.batches += 1
        todo = tuple(p for p in work if p not in skip)
        self.log.append(("start", batch, todo))
        await asyncio.sleep(self.delay)
        self.log.append(("end", batch, todo))
        return frozenset(p for p in todo if p in self.lose.get(batch, set()))


def test_each_publish_starts_after_the_one_before_ended_and_overlaps_what_follows_it() -> None:
    broker = FakeBroker(delay=0.05)
    steps: list[str] = []

    async def run() -> None:
        publishing = Publishing(broker.publish, on_error=pytest.fail)
        for batch in ([0, 1], [0, 1], [1]):
            await publishing.submit(batch)
            # submit returned once the previous publish ended, this one scheduled, not yet run
            steps.append(f"submitted, {len(broker.log)} log entries")
        await publishing.drain()

    asyncio.run(run())
    assert [(kind, batch) for kind, batch, _ in broker.log] == [
        ("start", 0), ("end", 0), ("start", 1), ("end", 1), ("start", 2), ("end", 2)]
    assert steps == ["submitted, 0 log entries", "submitted, 2 log entries", "submitted, 4 log entries"]


def test_a_partition_the_last_publish_lost_is_dropped_from_the_batch_processed_meanwhile_only() -> None:
    broker = FakeBroker()

    async def run() -> None:
        publishing = Publishing(broker.publish, on_error=pytest.fail)
        broker.lose = {0: {1}}
        await publishing.submit([0, 1, 2])  # batch 0 loses partition 1
        await publishing.submit([0, 1, 2])  # processed before batch 0's outcome was known: partition 1 skipped
        await publishing.submit([1, 2])  # processed after it: partition 1 again, as the current code would
        await publishing.drain()

    asyncio.run(run())
    started = [todo for kind, _, todo in broker.log if kind == "start"]
    assert started == [(0, 1, 2), (0, 2), (1, 2)]


def test_a_failed_publish_is_reported_at_once_not_at_the_next_batch() -> None:
    errors: list[BaseException] = []

    async def failing(work: Work, skip: frozenset[int]) -> frozenset[int]:
        await asyncio.sleep(0.01)
        raise RuntimeError("broker gone")

    async def run() -> None:
        publishing = Publishing(failing, on_error=errors.append)
        await publishing.submit([0])
        for _ in range(100):  # bounded: 1 s at most
            if errors:
                break
            await asyncio.sleep(0.01)
        assert [str(e) for e in errors] == ["broker gone"]  # no second batch was submitted
        with pytest.raises(RuntimeError, match="broker gone"):
            await publishing.drain()

    asyncio.run(run())
