"""One micro-batch's publishing overlapped with the next one's fetch and processing, in order per partition.

A batch's Kafka transactions (a few round trips to the broker, ~35 ms for four partitions) used to hold the
consuming loop; now the loop fetches the next batch meanwhile — the micro-batch wait above all. Processing a
batch before the last one is published is safe: the Redis writes are idempotent and claimed by cause, as for
a batch retried after a crash. What must not happen is publishing records of a partition past records of it
that were not published, as their offsets would be committed with nobody's outputs. So a partition's batch is
published only

- after the partition's previous batch was (each publish starts once the one before it has finished);
- if no rebalance came since it was processed (the *epoch*, counted up at each revocation): a partition taken
  away and given back is read again from its committed offset, so what was processed before is read again;
- if no earlier batch of the partition failed to publish in the same epoch (not ours any more: the
  rebalance that follows gives its records to their next owner).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Part(Generic[T]):
    """One partition's share of a processed micro-batch."""

    partition: int
    epoch: int  # the consumer's epoch when it was processed
    work: T


# publish(parts): publish them; the partitions it could not publish (no longer ours).
Publish = Callable[[list[Part[T]]], Awaitable[frozenset[int]]]


class Publishing(Generic[T]):
    """At most one batch being published at a time; ``epoch()``: the consumer's epoch now; ``on_error`` is called as
    soon as a publish raises (the worker stops: no later batch may be published after a failed one)."""

    def __init__(self, publish: Publish[T], epoch: Callable[[], int],
                 on_error: Callable[[BaseException], None]) -> None:
        self._publish = publish
        self._epoch = epoch
        self._on_error = on_error
        self._pending: asyncio.Future[None] | None = None
        self._lost: dict[int, int] = {}  # partition -> the epoch in which a batch of it was not published

    async def submit(self, parts: list[Part[T]]) -> None:
        """Wait for the previous batch's publish, then start this one's (in the background)."""
        await self.drain()
        self._pending = asyncio.ensure_future(self._run(parts))
        self._pending.add_done_callback(self._done)

    async def drain(self) -> None:
        """Wait for the publish in flight."""
        pending, self._pending = self._pending, None
        if pending is not None:
            await pending

    def current(self, part: Part[T]) -> bool:
        """Whether no rebalance came since ``part`` was read (publish checks it again before each attempt)."""
        return part.epoch == self._epoch()

    def publishable(self, part: Part[T]) -> bool:
        return self.current(part) and self._lost.get(part.partition) != part.epoch

    async def _run(self, parts: list[Part[T]]) -> None:
        todo = [p for p in parts if self.publishable(p)]
        lost = await self._publish(todo)
        for p in todo:
            if p.partition in lost:
                self._lost[p.partition] = p.epoch

    def _done(self, pending: asyncio.Future[None]) -> None:
        if not pending.cancelled() and (e := pending.exception()) is not None:
            self._on_error(e)
