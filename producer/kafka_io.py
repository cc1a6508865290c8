"""Thin kafka-python plumbing for the producer: reachability, topics, the producer itself.

Tested against the embedded Apache Kafka and the Tansu fallback. Tansu cannot do idempotent
producers or transactions, so ``enable_idempotence`` stays off (kafka-python 3 turns it on by
default). Ordering that matters (a step's markers after its transactions) is
enforced by flushing, not by producer settings.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from txmon.core.errors import TxmonError

BOOTSTRAP_TIMEOUT_MS = 5_000
REQUEST_TIMEOUT_MS = 15_000
PROBE_TIMEOUT_S = 3.0
CLIENT_ID = "txmon-producer"


class ProducerError(TxmonError, RuntimeError):
    """Kafka could not be used (unreachable broker, topic trouble, undelivered records)."""


def parse_bootstrap(bootstrap: str) -> list[tuple[str, int]]:
    """``host:port[,host:port]`` → [(host, port)]; the port defaults to 9092."""
    out = []
    for part in (p.strip() for p in bootstrap.split(",")):
        if not part:
            continue
        host, sep, port = part.rpartition(":")
        if not sep:
            host, port = part, "9092"
        host = host.strip("[]")  # [::1]:9092
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ProducerError(f"bad Kafka bootstrap address {part!r}: expected host:port")
        out.append((host, int(port)))
    if not out:
        raise ProducerError("no Kafka bootstrap address given: expected host:port")
    return out


def check_reachable(bootstrap: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Raise ProducerError naming the OS's reason unless some bootstrap address accepts TCP.

    kafka-python only says "Unable to bootstrap" after its timeout; this says *why*, at once.
    """
    addresses = parse_bootstrap(bootstrap)
    reasons = []
    for host, port in addresses:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return
        except TimeoutError:
            reasons.append((host, port, f"no answer within {timeout:g} s"))
        except OSError as e:
            reasons.append((host, port, e.strerror or str(e)))
    if len(reasons) == 1:
        raise ProducerError(f"cannot reach Kafka at {bootstrap}: {reasons[0][2]}")
    raise ProducerError(f"cannot reach Kafka at {bootstrap}: " + "; ".join(f"{h}:{p}: {r}" for h, p, r in reasons))


def _common(bootstrap: str) -> dict[str, object]:
    return dict(bootstrap_servers=bootstrap, client_id=CLIENT_ID, bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
                request_timeout_ms=REQUEST_TIMEOUT_MS)


def _unreachable(bootstrap: str, e: Exception) -> ProducerError:
    return ProducerError(f"cannot reach Kafka at {bootstrap}: {e} (is a broker running there?)")


def make_admin(bootstrap: str) -> KafkaAdminClient:
    check_reachable(bootstrap)
    try:
        return KafkaAdminClient(**_common(bootstrap))
    except KafkaError as e:
        raise _unreachable(bootstrap, e) from None


def ensure_topics(bootstrap: str, names: Iterable[str], partitions: int) -> dict[str, int]:
    """Create the topics that are missing (``partitions`` each); return every topic's partition count.

    Existing topics are left as they are, whatever their partition count: the caller decides
    whether a difference matters (the replay sends its markers to the partitions that exist).
    """
    names = list(dict.fromkeys(names))
    if partitions < 1:
        raise ProducerError(f"partitions must be at least 1, got {partitions}")
    admin = make_admin(bootstrap)
    try:
        existing = set(admin.list_topics())
        missing = [n for n in names if n not in existing]
        if missing:
            # replication_factor -1: the broker's default (1 on a single broker, 3 on a typical cluster).
            result = admin.create_topics([NewTopic(n, partitions, -1) for n in missing], raise_errors=False)
            for t in result.get("topics", []):
                code = t.get("error_code", 0)
                if code and code != TopicAlreadyExistsError.errno:  # a concurrent creator is fine
                    raise ProducerError(f"cannot create topic {t.get('name')}: "
                                        f"{t.get('error_message') or f'error code {code}'}")
        counts = _partition_counts(admin, names)
    except KafkaError as e:
        raise ProducerError(f"Kafka at {bootstrap} refused the topic set-up: {e}") from None
    finally:
        admin.close()
    return counts


def _partition_counts(admin: KafkaAdminClient, names: list[str], wait_s: float = 10.0) -> dict[str, int]:
    """Partition counts from metadata; a just-created topic may take a moment to show up."""
    deadline = time.monotonic() + wait_s
    while True:
        described = {t["name"]: t for t in admin.describe_topics(names)}
        counts = {n: len(described[n]["partitions"]) for n in names
                  if n in described and not described[n].get("error_code") and described[n]["partitions"]}
        if len(counts) == len(names):
            return counts
        if time.monotonic() > deadline:
            raise ProducerError(f"topics {', '.join(n for n in names if n not in counts)} did not appear "
                                f"in the broker's metadata within {wait_s:g} s")
        time.sleep(0.2)


def make_producer(bootstrap: str, acks: int | str = "all", linger_ms: int = 10, batch_size: int = 256 * 1024,
                  **overrides: object) -> KafkaProducer:
    """A KafkaProducer for bytes keys and values; ProducerError (quickly) when Kafka is unreachable."""
    check_reachable(bootstrap)
    config: dict[str, object] = dict(
        _common(bootstrap),
        acks=acks,
        enable_idempotence=False,  # Tansu: idempotent producers fail
        linger_ms=linger_ms,
        batch_size=batch_size,
        max_request_size=4 * 1024 * 1024,
        max_block_ms=REQUEST_TIMEOUT_MS,  # send() blocks at most this long for metadata
        delivery_timeout_ms=60_000,
        retries=5,
    )
    config.update(overrides)
    try:
        return KafkaProducer(**config)
    except KafkaError as e:
        raise _unreachable(bootstrap, e) from None
