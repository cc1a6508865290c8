"""Every Redis key txmon's worker uses, named in one place.

Keys of one (replay, step) share the hash tag ``{<replay_id>:<step>}`` so that Redis Cluster keeps a
step on one slot: the Lua scripts that write a batch or count triangles touch only that slot. Keys
that concern the whole replay (alert claims, step bookkeeping, history) share ``{<replay_id>}``.
Replays are namespaced by their id, so nothing needs a TTL to stay correct.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StepKeys:
    """Keys of one step's graph."""

    replay_id: str
    step: int

    @property
    def prefix(self) -> str:
        return f"txm:{{{self.replay_id}:{self.step}}}:"

    def node(self, chunk: int) -> str:
        """Chunk ``chunk`` of the node records (tx id, event time, features) of seqs chunk*K .. chunk*K+K-1."""
        return f"{self.prefix}node:{chunk}"

    def nb(self, seq: int) -> str:
        """Undirected neighbour seqs of ``seq`` (a set; intset-encoded while small)."""
        return f"{self.prefix}nb:{seq}"

    @property
    def seen(self) -> str:
        """Bitmap: bit s set once the record of seq s is written (the node has arrived)."""
        return self.prefix + "seen"

    @property
    def scored(self) -> str:
        """Bitmap: bit s set once seq s has its arrival score (the event is fully processed)."""
        return self.prefix + "scored"

    @property
    def tmp(self) -> str:
        """Scratch key for the scripts' BITOPs; deleted by the script that sets it."""
        return self.prefix + "tmp"

    @property
    def edges(self) -> str:
        """Append-only log of directed edges (int32 src seq, int32 dst seq), each node pair once."""
        return self.prefix + "edges"

    @property
    def ids(self) -> str:
        """Append-only log of (int64 tx id, int32 seq) of the step's nodes, each once: lookups by tx id."""
        return self.prefix + "ids"

    @property
    def tri(self) -> str:
        """Triangles of the step, counted as their last edge arrives."""
        return self.prefix + "tri"

    @property
    def arr(self) -> str:
        """Arrival scores, float32 at s*4."""
        return self.prefix + "arr"

    @property
    def fin(self) -> str:
        """Final scores, float32 at s*4, written at step close."""
        return self.prefix + "fin"

    @property
    def windows(self) -> str:
        """Hash: arrival window -> the cause (``partition:offset``) of the input record whose processing scores
        and publishes it (stream_app.claims)."""
        return self.prefix + "win"

    @property
    def handed(self) -> str:
        """Hash: arrival window -> the cause of the input record whose processing hands it over to the step's
        owning partition (stream_app.placement): a retry of that record hands it over again."""
        return self.prefix + "handed"


@dataclass(frozen=True)
class ReplayKeys:
    """Keys that concern a whole replay."""

    replay_id: str

    @property
    def prefix(self) -> str:
        return f"txm:{{{self.replay_id}}}:"

    def alert(self, tx_id: int, kind: str) -> str:
        """Claim of an alert id: the cause of the record whose processing publishes it."""
        return f"{self.prefix}alert:{tx_id}:{kind}"

    def stepend(self, step: int) -> str:
        """Set of the partitions that have passed step_end for ``step``."""
        return f"{self.prefix}stepend:{step}"

    def final(self, step: int) -> str:
        """Finalisation claim of ``step``: its cause with a lease while running, 'done:<cause>' afterwards."""
        return f"{self.prefix}final:{step}"

    @property
    def replay_end(self) -> str:
        """Set of the partitions whose replay_end the worker has processed (a replay is done when all have)."""
        return self.prefix + "replay_end"

    @property
    def pruned(self) -> str:
        """Set once the replay's graph (node records, neighbour sets) is deleted (stream_app.retention)."""
        return self.prefix + "pruned"

    @property
    def markers(self) -> str:
        """Hash: '<step>:<partition>' -> the offset of that partition's first step_end for the step (what came
        after it there, for the step, is late)."""
        return self.prefix + "markers"

    @property
    def declared(self) -> str:
        """Hash: what the replay's first markers declared — 'partitions', 'count:<step>' — which later markers
        must repeat; and 'last_step', from its first replay_end."""
        return self.prefix + "declared"

    @property
    def hist(self) -> str:
        """Hash: step -> 'nodes,edges' of each finalised step (densification history)."""
        return self.prefix + "hist"

    @property
    def stats(self) -> str:
        """Hash: step -> the step's StepStats JSON, as published."""
        return self.prefix + "stats"

    @property
    def published(self) -> str:
        """Hash: alert id -> kind, of the replay's alerts on the alert topic (each batch's, written with it:
        a retried batch writes the same ids)."""
        return self.prefix + "published"


SEQ_BITS = 20  # seqs are below 2**20: bounds a step's bitmaps (128 KiB)
INSTANCE = "txm:instance"  # a random token: written by the first worker, gone when Redis loses its data
WRITES = "txm:writes"  # incremented by every worker before each batch: goes back when Redis loses recent writes
# sorted set: replay id -> when the replay was done: every partition had passed its replay_end and every step
# was closed (Unix seconds)
ENDED = "txm:ended"
REPLAYS = "txm:replays"  # sorted set: replay id -> when a worker first saw it (Unix seconds)
LATEST_ALERTS = "txm:latest:alerts"  # list: the newest alerts' JSON, any replay, newest first
LATEST_N = 1000
