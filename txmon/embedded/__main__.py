"""``python -m txmon.embedded install-kafka``: what scripts/setup.sh runs to install the embedded broker;
``check-kafka`` says whether it can run here."""

from __future__ import annotations

import sys

from txmon.embedded.kafka_broker import KAFKA_VERSION, install, installed, kafka_home, unavailable_reason
from txmon.embedded.service import ServiceError


def main(argv: list[str]) -> int:
    """``python -m txmon.embedded install-kafka|check-kafka``."""
    if argv[1:] == ["install-kafka"]:
        home = kafka_home()
        if installed(home):
            print(f"Apache Kafka {KAFKA_VERSION}: installed in {home}")
            return 0
        print(f"installing Apache Kafka {KAFKA_VERSION} from Maven Central into {home} ...", flush=True)
        try:
            install(home)
        except ServiceError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(f"Apache Kafka {KAFKA_VERSION}: installed in {home}")
        return 0
    if argv[1:] == ["check-kafka"]:
        why = unavailable_reason()
        print(why or f"Apache Kafka {KAFKA_VERSION} can run here ({kafka_home()})")
        return 0 if why is None else 1
    print("usage: python -m txmon.embedded install-kafka|check-kafka", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
