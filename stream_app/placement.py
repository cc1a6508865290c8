"""Which worker does a step's arrival scoring and its close: the holder of the step's owning partition.

A window of a step can be scored once its last transaction has arrived, and a step closed once every
partition has passed its step_end. The worker whose batch completes them is the one furthest behind, so
doing the work there loads the slowest worker most (two workers measured 15 % / 85 % of the CPU over a full
replay). Instead, each step of a replay is owned by one partition of the transactions topic. A worker that
completes windows of a step whose partition it does not hold writes a ``windows_ready`` record there, and
the last step_end of such a step becomes a ``step_ready`` record there. The partition's holder processes them in
offset order as its own input: the claims (stream_app.claims) and the Kafka transaction (stream_app.delivery) of
the work are those of the hand-over record. A worker that holds the owning partition scores the windows and
closes the step where they complete, without a round trip through Kafka — unless a window of the step is
claimed but not scored by another record (a worker died in between): then the close goes through the owning
partition too, after that record's retry.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

from txmon.core.contracts import StepReady, WindowsReady


@dataclass(frozen=True)
class Placement:
    """The transactions topic's partition count and the partitions this worker holds now."""

    partitions: int
    held: frozenset[int]

    def owner(self, replay_id: str, step: int) -> int:
        """The partition that owns the step: consecutive steps on consecutive partitions; the replay id
        shifts the start, so concurrent replays do not load the same partitions at the same steps."""
        return (zlib.crc32(replay_id.encode()) + step) % self.partitions

    def holds(self, replay_id: str, step: int) -> bool:
        return self.owner(replay_id, step) in self.held


@dataclass
class Handover:
    """Where a route call's hand-over records go: ``placement``, and the records written so far."""

    placement: Placement
    records: list[WindowsReady | StepReady] = field(default_factory=list)
