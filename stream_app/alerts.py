"""Alerts: deterministic ids, claimed with their cause before they are returned (stream_app.claims): a retry of the
same records gets them again, any other call never."""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis

from stream_app.claims import Origin
from stream_app.keys import ReplayKeys
from txmon.core.contracts import Alert, AlertKind, Influence


@dataclass(frozen=True)
class Candidate:
    """What an alert says, before its id is claimed."""

    kind: AlertKind  # arrival | confirmed | retracted | final
    tx_id: int
    step: int
    arrival_score: float
    final_score: float | None
    event_time: float
    neighbours: list[tuple[int, float]]  # (tx id, contribution to the illicit logit margin)


def alert_id(replay_id: str, tx_id: int, kind: str) -> str:
    return f"{replay_id}:{tx_id}:{kind}"


def claim(client: redis.Redis, replay_id: str, candidates: list[Candidate], threshold: float,
          model_version: str, origin: Origin, cause: bytes) -> list[Alert]:
    """The alerts whose id ``origin`` owns: new ids, claimed here for ``cause``, and ids an earlier try of its
    records claimed (one round trip). Ids claimed by other records are dropped."""
    if not candidates:
        return []
    rk = ReplayKeys(replay_id)
    pipe = client.pipeline(transaction=False)
    for c in candidates:
        # SET key cause NX GET: the claim before, None if there was none. As redis-py's set(nx=True, get=True)
        # sends it, without that method's check of its experimental arguments (introspection, costlier than
        # queueing the command).
        pipe.execute_command("SET", rk.alert(c.tx_id, c.kind), cause, "NX", "GET", get=True)
    now = time.time()
    return [
        Alert(alert_id=alert_id(replay_id, c.tx_id, c.kind), kind=c.kind, replay_id=replay_id, tx_id=c.tx_id,
              step=c.step, arrival_score=_prob(c.arrival_score),
              final_score=None if c.final_score is None else _prob(c.final_score), threshold=threshold,
              model_version=model_version, neighbours=[Influence(tx_id=t, weight=w) for t, w in c.neighbours],
              event_time=c.event_time, processing_time=now)
        for c, before in zip(candidates, pipe.execute(), strict=True) if origin.owns(before)
    ]


def _prob(p: float) -> float:
    return min(1.0, max(0.0, float(p)))  # float32 rounding must not step outside [0, 1]

