"""One micro-batch's publishing overlapped with the next one's fetch and processing, in order per partition.

A batch's Kafka transactions (a few round trips to the broker, ~35 ms for four partitions) used to hold the
consuming loop; now the loop fetches the next batch meanwhile — the micro-batch wait above all. Processing a
batch before the last one is published is safe: the Redis writes are idempotent and claimed by cause, as for
a batch retried after a crash. What must not happen is publishing a partition's batch when the one before it
was not published (the partition was taken away meanwhile): its offsets would skip the unpublished records.
So each publish starts after the previous one has finished and drops the partitions that one could not publish.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

W = TypeVar("W")  # a batch's work: what publish gets

# publish(work, skip): publish the work but skip the partitions in ``skip``; the partitions it could not publish.
Publish = Callable[[W, frozenset[int]], Awaitable[frozenset[int]]]


class Publishing(Generic[W]):
    """At most one batch being published at a time; ``on_error`` is called as soon as a publish raises (the
    worker stops: no later batch may be published after a failed one)."""

    def __init__(self, publish: Publish[W], on_error: Callable[[BaseException], None]) -> None:
        self._publish = publish
        self._on_error = on_error
        self._pending: asyncio.Future[frozenset[int]] | None = None

    async def submit(self, work: W) -> None:
        """Wait for the previous batch's publish, then start this one's (in the background)."""
        unpublished = await self.drain()
        self._pending = asyncio.ensure_future(self._publish(work, unpublished))
        self._pending.add_done_callback(self._done)

    async def drain(self) -> frozenset[int]:
        """Wait for the publish in flight; the partitions it could not publish."""
        pending, self._pending = self._pending, None
        return await pending if pending is not None else frozenset()

    def _done(self, pending: asyncio.Future[frozenset[int]]) -> None:
        if not pending.cancelled() and (e := pending.exception()) is not None:
            self._on_error(e)
