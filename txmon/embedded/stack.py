"""The embedded stack: Kafka and Redis for whatever the settings leave unset."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from txmon.core.settings import Settings
from txmon.embedded.kafka_broker import KafkaBroker, kafka_home, unavailable_reason
from txmon.embedded.redis_server import RedisServer
from txmon.embedded.tansu_broker import TansuBroker


def embedded_broker(settings: Settings) -> KafkaBroker | TansuBroker:
    """The broker to start for ``settings`` (not started): Apache Kafka by default where it can run, Tansu where
    Java or the jars are missing or when TXMON_EMBEDDED_BROKER=tansu."""
    choice = settings.embedded_broker
    if choice == "auto":
        choice = "kafka" if unavailable_reason(kafka_home(settings)) is None else "tansu"
    return KafkaBroker(home=kafka_home(settings)) if choice == "kafka" else TansuBroker()


@dataclass(frozen=True)
class Stack:
    """Where Kafka and Redis are, and what of them was started here (None: configured, used as it is)."""

    bootstrap: str
    redis_url: str
    broker: KafkaBroker | TansuBroker | None = None
    redis: RedisServer | None = None

    @property
    def broker_name(self) -> str:
        """'Apache Kafka 4.x.y' or 'Tansu' for an embedded broker, 'Kafka' for a configured one."""
        return self.broker.label if self.broker is not None else "Kafka"

    @property
    def worker_settings(self) -> dict[str, object]:
        """Settings workers on this embedded broker need where they are left unset (none on a configured Kafka)."""
        return dict(self.broker.worker_settings) if self.broker is not None else {}

    def describe(self) -> str:
        """One line: each service, embedded (with its pid) or configured."""
        kafka = (f"embedded {self.broker_name} broker {self.bootstrap} (pid {self.broker.pid})" if self.broker
                 else f"Kafka {self.bootstrap} (configured)")
        redis = (f"embedded redis-server {self.redis_url} (pid {self.redis.pid})" if self.redis
                 else f"Redis {self.redis_url} (configured)")
        return f"{kafka}, {redis}"


@contextmanager
def embedded_stack(settings: Settings) -> Iterator[Stack]:
    """Yield the :class:`Stack`, starting only what ``settings`` leave unset: the broker of
    :func:`embedded_broker` and a redis-server. A configured Kafka or Redis is used as it is and never stopped here.
    """
    with ExitStack() as stack:
        broker: KafkaBroker | TansuBroker | None = None
        redis: RedisServer | None = None
        bootstrap = settings.kafka_bootstrap
        if not bootstrap:
            broker = embedded_broker(settings)
            stack.enter_context(broker)
            bootstrap = broker.bootstrap
        redis_url = settings.redis_url
        if not redis_url:
            redis = RedisServer()
            stack.enter_context(redis)
            redis_url = redis.url
        yield Stack(bootstrap, redis_url, broker, redis)
