"""Local services for the demo, tests and benchmarks: a broker (Apache Kafka, or Tansu where Java is missing) and a
redis-server, on loopback, stopped for sure."""

from txmon.embedded.kafka_broker import KAFKA_VERSION, KafkaBroker
from txmon.embedded.redis_server import RedisServer
from txmon.embedded.service import HOST, ServiceError, free_port, log_tail, signal_session, stop_session
from txmon.embedded.stack import Stack, embedded_broker, embedded_stack
from txmon.embedded.tansu_broker import TansuBroker

__all__ = [
    "HOST", "KAFKA_VERSION", "KafkaBroker", "RedisServer", "ServiceError", "Stack", "TansuBroker",
    "embedded_broker", "embedded_stack", "free_port", "log_tail", "signal_session", "stop_session",
]
