"""``txmon worker``: the stream worker (Faust) on the configured Kafka and Redis."""

from __future__ import annotations

from typing import Annotated

import typer

from txmon.cli.common import fail, read_settings


def worker(
    loglevel: Annotated[str, typer.Option("--loglevel", "-l", help="debug, info, warning or error")] = "info",
    web_port: Annotated[int | None, typer.Option(min=0, max=65535, help="port of the web views and /metrics "
                                                 "[default: TXMON_WEB_PORT or 6066]; 0 turns the web server off")]
    = None,
    web_bind: Annotated[str | None, typer.Option(help="address the web server binds [default: TXMON_WEB_BIND or "
                                                     "127.0.0.1]; 0.0.0.0 in a container")] = None,
) -> None:
    """Run the stream worker: score transactions, publish alerts and per-step statistics.

    Reads TXMON_KAFKA_BOOTSTRAP, TXMON_REDIS_URL and TXMON_MODEL_DIR / TXMON_MODEL_VERSION; creates txmon's
    topics when missing (as `txmon topics create`); start up to as many as the transactions topic has partitions
    (`txmon demo` runs one on embedded services).

    Web views on --web-port: /health, /alerts, /tx/{tx_id}, /stats, /metrics (Prometheus).
    """
    from model_store.registry import ModelStoreError
    from producer.kafka_io import ProducerError
    from producer.send import prepare_topics
    from stream_app.scorer import LoadedModel

    overrides = {k: v for k, v in (("web_port", web_port), ("web_bind", web_bind)) if v is not None}
    s = read_settings(**overrides)  # the environment's TXMON_* settings, with these options over them
    if not s.kafka_bootstrap or not s.redis_url:
        fail("the worker needs TXMON_KAFKA_BOOTSTRAP (host:port) and TXMON_REDIS_URL (redis://host:port/0); "
             "`txmon demo` starts embedded ones")
    try:  # weights verified and the GCN built before the worker joins its group: a broken model takes no partition
        model = LoadedModel.from_store(s.model_dir, s.model_version)
    except ModelStoreError as e:
        fail(f"{e} (train one with `txmon train gcn --data DIR`)")
    try:  # as Faust's consumer did for its topic: a worker started first must not wait for a producer to make them
        prepare_topics(s.kafka_bootstrap, s)
    except ProducerError as e:
        fail(str(e))
    from stream_app.app import create_app, run_worker

    run_worker(create_app(s, model), s, loglevel)
