"""``txmon worker``: the stream worker (Faust) on the configured Kafka and Redis."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from txmon.cli.common import fail
from txmon.settings import Settings


def worker(
    loglevel: Annotated[str, typer.Option("--loglevel", "-l", help="debug, info, warning or error")] = "info",
) -> None:
    """Run the stream worker: score transactions, publish alerts and per-step statistics.

    Reads TXMON_KAFKA_BOOTSTRAP, TXMON_REDIS_URL and TXMON_MODEL_DIR / TXMON_MODEL_VERSION; start as
    many as the transactions topic has partitions (`txmon demo` runs one on embedded services).
    """
    from model_store.registry import ModelStore, ModelStoreError

    s = Settings()
    if not s.kafka_bootstrap or not s.redis_url:
        fail("the worker needs TXMON_KAFKA_BOOTSTRAP (host:port) and TXMON_REDIS_URL (redis://host:port/0); "
             "`txmon demo` starts embedded ones")
    try:
        ModelStore(s.model_dir).manifest(s.model_version, model_type="gcn")
    except ModelStoreError as e:
        fail(f"{e} (train one with `txmon train gcn --data DIR`)")
    from stream_app.app import app

    sys.argv = ["txmon worker", "worker", "--loglevel", loglevel, "--without-web"]
    app.main()
