"""stream_app.delivery: a rebalance never waits on a producer that cannot stop (fakes, no broker)."""

from __future__ import annotations

import asyncio
import time

from stream_app import delivery
from stream_app.delivery import ExactlyOnce, OutputTopics, _Owner


class _Stuck:
    """A producer whose stop() flushes against a broker that never accepts: it does not return."""

    def __init__(self) -> None:
        self.stopping = False

    async def stop(self) -> None:
        self.stopping = True
        await asyncio.sleep(3600)


def test_revoke_goes_on_without_a_producer_that_does_not_stop(monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(delivery, "STOP_WAIT_S", 0.2)

    async def run() -> tuple[float, _Stuck, ExactlyOnce]:
        eos = ExactlyOnce("127.0.0.1:1", "g", "t", OutputTopics("a", "s", "d", "t"), assigned=lambda p: True)
        stuck = _Stuck()
        eos._owners[0] = _Owner(stuck, in_txn=True, last_commit=0.0)  # type: ignore[arg-type]
        t0 = time.monotonic()
        await eos.revoke({0})
        waited = time.monotonic() - t0
        assert len(eos._stopping) == 1  # still stopping, in the background
        for f in eos._stopping:
            f.cancel()
        return waited, stuck, eos

    waited, stuck, eos = asyncio.run(run())
    assert stuck.stopping and waited < 5 and 0 not in eos._owners


class _Recording:
    """A transactional producer that records what it is asked to do and never talks to a broker."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def begin_transaction(self) -> None:
        self.calls.append("begin")

    async def send_offsets_to_transaction(self, offsets: dict, group_id: str) -> None:
        self.calls.append("offsets")

    async def commit_transaction(self) -> None:
        self.calls.append("commit")


def test_a_batch_read_before_a_rebalance_is_not_published_after_it() -> None:
    """With publishing overlapping the next batch, a batch can reach deliver after a rebalance gave its partition
    back: its records are read again from the committed offset, so publishing it would publish them twice."""
    from stream_app.routing import Outputs

    async def run() -> tuple[bool, bool, list[str]]:
        eos = ExactlyOnce("127.0.0.1:1", "g", "t", OutputTopics("a", "s", "d", "t"), assigned=lambda p: True,
                          commit_interval_s=0.0)
        producer = _Recording()
        eos._owners[0] = _Owner(producer, in_txn=False, last_commit=0.0)  # type: ignore[arg-type]
        stale = await eos.deliver(0, Outputs(), 0, 10, current=lambda: False)
        fresh = await eos.deliver(0, Outputs(), 0, 10, current=lambda: True)
        return stale, fresh, producer.calls

    stale, fresh, calls = asyncio.run(run())
    assert (stale, fresh) == (False, True)
    assert calls == ["begin", "offsets", "commit"]  # one transaction: the fresh batch's
