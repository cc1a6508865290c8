"""Noticing that Redis lost txmon's state (restarted without persistence, flushed, failed over to an empty replica).

The first worker to use a Redis writes a random token under ``txm:instance``; every worker remembers the token
it found and checks it before each batch. If it is gone or changed, the graph, the scores and the claims the
workers rely on are gone too: scoring on would publish wrong final scores and verdicts without any error
(measured before this check: 8,301 of 12,300 transactions' state lost, ~700 wrong final scores, /health OK).
Each check also increments ``txm:writes``: a Redis restarted from a persistence file that misses its latest
writes (AOF with ``appendfsync everysec`` loses up to a second) gives a count lower than one a worker saw
before, and is refused the same way. So the worker stops and /health answers 503. Recovery is an operator's
call: restore Redis, or replay the affected period into a fresh replay id.
"""

from __future__ import annotations

import uuid
from typing import cast

import redis

from stream_app.keys import INSTANCE, WRITES
from txmon.core.errors import TxmonError


class StateLost(TxmonError, RuntimeError):
    pass


def instance_token(client: redis.Redis) -> bytes:
    """The token of this Redis's txmon state, written now if there is none (a new Redis)."""
    pipe = client.pipeline(transaction=False)
    pipe.set(INSTANCE, uuid.uuid4().hex.encode(), nx=True)
    pipe.get(INSTANCE)
    return cast(bytes, pipe.execute()[1])


def check_instance(client: redis.Redis, token: bytes, last_count: int | None = None) -> int:
    """StateLost unless Redis still holds the state whose token is ``token`` and, given the write count this
    caller saw last, has not gone back in time; returns the new write count (one round trip)."""
    pipe = client.pipeline(transaction=False)
    pipe.get(INSTANCE)
    pipe.incr(WRITES)
    now, count = pipe.execute()
    _check_token(now, token)
    if last_count is not None and count <= last_count:
        raise StateLost(f"Redis lost its latest writes: {WRITES} is {count}, this worker saw {last_count} (a "
                        f"restart from a persistence file older than the last writes); the worker stops rather than "
                        f"score against a partial graph. Replay the period under a new replay id")
    return int(count)


def check_token(client: redis.Redis, token: bytes) -> None:
    """StateLost unless Redis still holds the state whose token is ``token`` (a read: for /health)."""
    _check_token(cast("bytes | None", client.get(INSTANCE)), token)  # a binary client


def _check_token(now: bytes | None, token: bytes) -> None:
    if now != token:
        what = "is gone" if now is None else "was replaced"
        raise StateLost(f"Redis lost txmon's state: its token {INSTANCE} {what} (the server restarted without "
                        f"persistence, or was flushed); the worker stops rather than score against a partial graph. "
                        f"Restore Redis, or replay the period under a new replay id")
