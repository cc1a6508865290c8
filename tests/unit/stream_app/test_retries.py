"""stream_app.retries: a batch's step is retried with backoff, never skipped, and never hangs the worker."""

from __future__ import annotations

import asyncio
import time

import pytest

from stream_app.retries import BatchFailed, retrying


def test_a_failing_step_is_retried_until_it_succeeds() -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError("redis went away")
        return "done"

    assert asyncio.run(retrying(flaky, "step", 5.0, first_delay_s=0.01)) == "done"
    assert calls == 3


def test_a_step_that_keeps_failing_stops_the_batch_with_its_last_error() -> None:
    async def broken() -> None:
        raise ConnectionError("redis went away")

    with pytest.raises(BatchFailed, match="still failing .* ConnectionError: redis went away"):
        asyncio.run(retrying(broken, "step", 0.2, first_delay_s=0.01))


def test_a_fatal_error_is_not_retried() -> None:
    calls = 0

    async def fatal() -> None:
        nonlocal calls
        calls += 1
        raise LookupError("state lost")

    with pytest.raises(BatchFailed, match="LookupError: state lost"):
        asyncio.run(retrying(fatal, "step", 5.0, fatal=(LookupError,)))
    assert calls == 1


def test_an_attempt_that_never_returns_is_cancelled_when_the_budget_is_spent() -> None:
    cancelled = False

    async def hangs() -> None:  # like an aiokafka send retried inside the client without end
        nonlocal cancelled
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled = True
            raise

    t0 = time.monotonic()
    with pytest.raises(BatchFailed, match="did not finish within the 0.3 s retry budget"):
        asyncio.run(retrying(hangs, "publishing", 0.3))
    assert cancelled and time.monotonic() - t0 < 30


def test_a_timeout_of_the_step_itself_is_retried_like_any_failure() -> None:
    calls = 0

    async def times_out_once() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise TimeoutError("read timed out")
        return calls

    assert asyncio.run(retrying(times_out_once, "step", 5.0, first_delay_s=0.01)) == 2
