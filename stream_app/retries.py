"""Retrying a batch's steps: every step is idempotent, so a failure is retried with backoff, never skipped."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class BatchFailed(RuntimeError):
    """A batch's step kept failing for the whole retry budget: the worker must stop, not move past it."""


async def retrying(step: Callable[[], Awaitable[T]], what: str, budget_s: float, *,
                   fatal: tuple[type[BaseException], ...] = (), first_delay_s: float = 0.1,
                   max_delay_s: float = 5.0) -> T:
    """``await step()``, again after 0.1, 0.2, 0.4 ... (at most ``max_delay_s``) seconds while it raises, as long as
    ``budget_s`` leaves time for another attempt; then BatchFailed. Exceptions of ``fatal`` types are not
    retried. An attempt still running when the budget is spent is cancelled: a client that retries inside
    itself without end (aiokafka does, for a broker that answers NotEnoughReplicas) must not hang the worker.
    The waits are ``asyncio.sleep``: the event loop (heartbeats, the web views) keeps running."""
    deadline = time.monotonic() + budget_s
    delay = first_delay_s
    attempt = 1
    while True:
        try:
            return await asyncio.wait_for(step(), timeout=max(deadline - time.monotonic(), 0.0))
        except fatal as e:
            raise BatchFailed(f"{what}: {type(e).__name__}: {e}") from e
        except Exception as e:  # noqa: BLE001 - any failure of an idempotent step is worth a retry
            left = deadline - time.monotonic()
            if left <= 0 and isinstance(e, TimeoutError):
                raise BatchFailed(f"{what}: attempt {attempt} did not finish within the {budget_s:g} s retry "
                                  f"budget (TXMON_BATCH_RETRY_S)") from e
            if left <= delay:  # no time for another attempt after the wait
                raise BatchFailed(f"{what}: still failing after {attempt} attempts over {budget_s:g} s: "
                                  f"{type(e).__name__}: {e}") from e
            log.warning("%s failed (attempt %d, retrying in %.1f s): %s: %s", what, attempt, delay,
                        type(e).__name__, e)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay_s)
            attempt += 1
