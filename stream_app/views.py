"""What the worker's web views answer, as plain functions over Redis (``stream_app.app`` mounts them).

Every answer comes from Redis, not from the worker's memory, so any worker of a group answers the
same for any transaction or replay.
"""

from __future__ import annotations

import json
from typing import Any, cast

import numpy as np
import redis

from stream_app.graph_store import GraphStore
from stream_app.keys import LATEST_ALERTS, LATEST_N, REPLAYS, ReplayKeys, StepKeys
from stream_app.state import StateLost, check_token
from stream_app.step_close import DONE
from txmon.core.contracts import ALERT_KINDS, check_replay_id
from txmon.core.errors import TxmonError


class ViewError(TxmonError):
    """An answer other than 200: the status and a message for the caller."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def health(client: redis.Redis, model_version: str, started_at: float, now: float,
           instance: bytes | None = None) -> dict[str, Any]:
    """ok, or 503 when Redis is unreachable or lost the state whose token is ``instance`` (stream_app.state)."""
    try:
        if instance is None:
            client.ping()
        else:
            check_token(client, instance)
    except redis.RedisError as e:
        raise ViewError(503, f"Redis is unreachable: {e}") from None
    except StateLost as e:
        raise ViewError(503, str(e)) from None
    return {"status": "ok", "redis": "ok", "model_version": model_version, "uptime_s": round(now - started_at, 3)}


def parse_limit(raw: str | None, default: int = 50) -> int:
    if raw is None:
        return default
    try:
        n = int(raw)
    except ValueError:
        raise ViewError(400, f"limit must be an integer, got {raw!r}") from None
    if not 1 <= n <= LATEST_N:
        raise ViewError(400, f"limit must be 1..{LATEST_N}, got {n}")
    return n


def latest_alerts(client: redis.Redis, limit: int, kind: str | None = None,
                  replay_id: str | None = None) -> list[dict[str, Any]]:
    """The newest alerts published by any worker, newest first, optionally of one kind / replay."""
    if kind is not None and kind not in ALERT_KINDS:
        raise ViewError(400, f"kind must be one of {', '.join(ALERT_KINDS)}, got {kind!r}")
    out = []
    for raw in client.lrange(LATEST_ALERTS, 0, LATEST_N - 1):
        a = json.loads(raw)
        if (kind is None or a["kind"] == kind) and (replay_id is None or a["replay_id"] == replay_id):
            out.append(a)
            if len(out) == limit:
                break
    return out


def resolve_replay(client: redis.Redis, replay_id: str | None) -> str:
    """The replay asked for (it must exist), or the newest one."""
    if replay_id is not None:
        try:
            check_replay_id(replay_id)
        except ValueError as e:
            raise ViewError(400, str(e)) from None
        if client.zscore(REPLAYS, replay_id) is None:
            raise ViewError(404, f"no replay {replay_id!r} in Redis")
        return replay_id
    newest = client.zrange(REPLAYS, -1, -1)
    if not newest:
        raise ViewError(404, "no replay has been processed yet")
    return cast(bytes, newest[0]).decode()  # a binary client, no scores: members are bytes


def parse_tx_id(raw: str) -> int:
    try:
        tx_id = int(raw)
    except ValueError:
        raise ViewError(400, f"a transaction id is a positive integer, got {raw!r}") from None
    if not 0 < tx_id < 1 << 63:
        raise ViewError(400, f"a transaction id is a positive 64-bit integer, got {raw}")
    return tx_id


def _score(raw: bytes | None, seq: int) -> float | None:
    """float32 at seq*4 of a scores string, None where nothing is stored yet."""
    if raw is None or len(raw) < 4 * (seq + 1):
        return None
    return round(float(np.frombuffer(raw, dtype="<f4", count=1, offset=4 * seq)[0]), 6)


def transaction(client: redis.Redis, tx_id: int, replay_id: str | None, threshold: float,
                arrival_threshold: float | None = None) -> dict[str, Any]:
    """A transaction's scores, alerts and undirected neighbourhood (with the neighbours' scores); ``threshold``:
    the GCN's (for the final score), ``arrival_threshold``: the arrival model's (default: the same)."""
    rid = resolve_replay(client, replay_id)
    store = GraphStore(client)
    where = store.locate(rid, tx_id)
    if where is None:
        raise ViewError(404, f"transaction {tx_id} is not in replay {rid!r}")
    step, seq = where
    keys, rk = StepKeys(rid, step), ReplayKeys(rid)
    pipe = client.pipeline(transaction=False)
    pipe.get(keys.arr)
    pipe.get(keys.fin)
    pipe.get(rk.final(step))
    for k in ALERT_KINDS:
        pipe.exists(rk.alert(tx_id, k))
    arr, fin, final_state, *claimed = pipe.execute()
    closed = (final_state or b"").startswith(DONE)
    nbs, ids = store.neighbours(keys, seq)  # from what a pruned replay keeps
    return {
        "tx_id": tx_id, "replay_id": rid, "step": step, "seq": seq,
        "arrival_score": _score(arr, seq), "final_score": _score(fin, seq) if closed else None,
        "step_closed": closed, "threshold": threshold,
        "arrival_threshold": threshold if arrival_threshold is None else arrival_threshold,
        "alerts": [k for k, c in zip(ALERT_KINDS, claimed, strict=True) if c],
        "neighbours": [{"tx_id": int(t), "arrival_score": _score(arr, int(s)),
                        "final_score": _score(fin, int(s)) if closed else None}
                       for s, t in zip(nbs.tolist(), ids.tolist(), strict=True)],
    }


def latest_stats(client: redis.Redis, replay_id: str | None, step: int | None = None) -> dict[str, Any]:
    """The statistics record of the replay's latest finalised step (or of ``step``)."""
    rid = resolve_replay(client, replay_id)
    stats = client.hgetall(ReplayKeys(rid).stats)
    if not stats:
        raise ViewError(404, f"replay {rid!r} has no finalised step yet")
    by_step = {int(k): v for k, v in stats.items()}
    if step is None:
        step = max(by_step)
    elif step not in by_step:
        raise ViewError(404, f"replay {rid!r} has no statistics for step {step}")
    return json.loads(by_step[step])
