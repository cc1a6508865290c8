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
    """``await step()``, again after 0.1, 0.2, 0.4 ... (at most ``max_delay_s``) seconds while it raises, for up to
    ``budget_s`` seconds; then BatchFailed. Exceptions of ``fatal`` types are not retried. The waits are
    ``asyncio.sleep``: the event loop (heartbeats, the web views) keeps running."""
    deadline = time.monotonic() + budget_s
    delay = first_delay_s
    attempt = 1
    while True:
        try:
            return await step()
        except fatal as e:
            raise BatchFailed(f"{what}: {type(e).__name__}: {e}") from e
        except Exception as e:  # noqa: BLE001 - any failure of an idempotent step is worth a retry
            left = deadline - time.monotonic()
            if left <= 0:
                raise BatchFailed(f"{what}: still failing after {attempt} attempts over {budget_s:g} s: "
                                  f"{type(e).__name__}: {e}") from e
            log.warning("%s failed (attempt %d, retrying in %.1f s): %s: %s", what, attempt, min(delay, left),
                        type(e).__name__, e)
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, max_delay_s)
            attempt += 1
