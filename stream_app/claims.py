"""Who publishes what: every output belongs to the input record whose processing caused it.

A window's arrival scores, a step close, an alert id: each is claimed in Redis with its *cause*, the
``<group>/<topic>/<partition>:<offset>`` of the consumed record that completed it (the last event of its step in
the micro-batch, or the completing ``step_end``). A call owns a claim it makes and any claim whose cause
is one of the records it is processing (its ``Origin``). So when a batch is retried — the worker crashed
before its Kafka transaction committed, or before its offsets were committed — the retry finds the
claims of its own records and publishes their outputs again, instead of skipping work that never
reached Kafka; outputs caused by other records (other partitions, earlier committed batches) are left to
them, and a consumer group reading the topic again from the start (another lineage) publishes nothing twice.
With a transactional producer per input partition (stream_app.delivery), each output is then committed
exactly once, in the transaction that commits its cause's offset.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import redis

from stream_app.keys import StepKeys


@dataclass(frozen=True)
class Origin:
    """The input records a call works for: the ``offsets`` of a micro-batch's records in one ``source``,
    ``<consumer group>/<topic>/<partition>``.

    ``Origin.direct()`` is for calls outside a consumer (tests, benchmarks): its one cause is unique, so it
    owns only the claims it makes itself.

    ``scored``, ``closed``: the windows of each step this try has scored already and the steps it has closed,
    which a later call of the same try (a hand-over after the step's events, the close after both, a second
    step_ready of a step) does not do again. A retry is a new Origin.
    """

    source: str
    offsets: frozenset[int]
    scored: dict[StepKeys, set[int]] = field(default_factory=dict, compare=False, hash=False, repr=False)
    closed: set[tuple[str, int]] = field(default_factory=set, compare=False, hash=False, repr=False)

    @classmethod
    def of(cls, partition: int, offsets: list[int], topic: str = "", group: str = "") -> Origin:
        return cls(f"{group}/{topic}/{partition}", frozenset(offsets))

    @classmethod
    def direct(cls) -> Origin:
        return cls(f"direct-{uuid.uuid4().hex}", frozenset({0}))

    def cause(self, offset: int) -> bytes:
        """The cause written into claims made for the record at ``offset``."""
        return f"{self.source}:{offset}".encode()

    @property
    def last(self) -> int:
        return max(self.offsets)

    def owns(self, claimed: bytes | None) -> bool:
        """True for no claim, or one whose cause is among this origin's records ('done:' prefix allowed)."""
        if claimed is None:
            return True
        source, _, offset = claimed.removeprefix(b"done:").decode().rpartition(":")
        return source == self.source and offset.isdigit() and int(offset) in self.offsets


def claim_windows(client: redis.Redis, keys: StepKeys, new: list[int], cause: bytes,
                  origin: Origin, key: str | None = None) -> set[int]:
    """Claim the arrival windows ``new`` for ``cause`` (HSETNX) and return every window of the step this
    origin owns: the ones it just claimed and the ones an earlier try of its records claimed. One round trip.
    ``key``: the claims' hash, ``keys.windows`` (who scores) by default, or ``keys.handed`` (who hands over)."""
    key = key or keys.windows
    pipe = client.pipeline(transaction=False)
    for w in new:
        pipe.hsetnx(key, str(w), cause)
    pipe.hgetall(key)
    claims: dict[bytes, bytes] = pipe.execute()[-1]
    return {int(w) for w, c in claims.items() if origin.owns(c)}
