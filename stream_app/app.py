"""The Faust worker, built by ``create_app(settings)``: ``txmon worker``, or ``faust -A stream_app.app worker``.

A thin loop: consume the transactions topic in micro-batches (stream_app.consumer); per input partition,
hand the batch's records to ``stream_app.routing.route`` (plain code over Redis), record in Redis what it
publishes, then publish it with the partition's offset (``stream_app.delivery``: one Kafka transaction on Apache
Kafka). A failing step is retried with backoff, never skipped; if it keeps failing the worker exits (code 70)
without committing past the batch. No Faust agents or tables: all state lives in Redis, so workers can be
restarted or added at any time; Faust runs the web server (``web_port``: the views of ``stream_app.views`` and
/metrics), the timers and the process's lifecycle.
Nothing is read or built at import: ``create_app`` takes explicit settings (``txmon worker`` builds them
from the environment and its options); only ``faust -A`` reads the module's ``app``, made on first access.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from functools import partial
from typing import Any, NoReturn

import faust
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST

from stream_app import metrics, views
from stream_app.consumer import TransactionsConsumer
from stream_app.delivery import AtLeastOnce, Delivery, DeliveryError, ExactlyOnce, OutputTopics
from stream_app.fit_pool import FitPool
from stream_app.processor import Processor
from stream_app.publishing import Part, Publishing
from stream_app.redis_client import connect
from stream_app.retention import prune_ended
from stream_app.retries import BatchFailed, retrying
from stream_app.routing import Outputs, Record, record_published, route
from stream_app.scorer import LoadedModel
from stream_app.state import StateLost
from txmon.core.settings import Settings

log = logging.getLogger(__name__)
STARTED_AT = time.time()
EXIT_BATCH_FAILED = 70  # EX_SOFTWARE: a batch could not be processed and published; its offsets stay uncommitted


class _Served:
    """The Processor (Redis client + model), built on first use, so making the app (e.g. for ``--help``)
    needs no Redis or model. The consuming loop and the web views all run on the one event loop: no race."""

    def __init__(self, settings: Settings, model: LoadedModel | None = None) -> None:
        self.settings = settings
        self.model = model  # verified before the worker joins its group (txmon worker), else loaded on first use
        self._processor: Processor | None = None
        self.fit_pool = FitPool()  # the step closes' degree fits run there, beside the close's scoring

    def __call__(self) -> Processor:
        if self._processor is None:
            self._processor = self._build()
            # What start-up made (modules, the model, the clients: most of the heap) lives as long as the worker.
            # Frozen, it is no longer scanned by full collections, which took ~190 ms each on the loop (four in a
            # full replay, each a stall that every alert in flight waited out).
            gc.freeze()
        return self._processor

    def _build(self) -> Processor:
        s = self.settings
        if not s.redis_url:
            raise RuntimeError("TXMON_REDIS_URL is not set: the worker keeps its graph in Redis")
        model = self.model or LoadedModel.from_store(s.model_dir, s.model_version)
        log.info("serving %s (threshold %.3f; on arrival %s) from %s", model.version, model.threshold,
                 f"its arrival model, threshold {model.arrival.threshold:.3f}" if model.arrival
                 else "the same GCN: the version has no arrival model", s.model_dir)
        metrics.MODEL_INFO.labels(model.version).set(1)
        self.fit_pool.start()
        return Processor(connect(s.redis_url), model, fit_pool=self.fit_pool)


def fail(reason: str) -> NoReturn:
    """Stop the worker now, committing nothing more: its partitions' next owner starts from the failed batch."""
    log.critical("stopping the worker: %s", reason)
    logging.shutdown()
    os._exit(EXIT_BATCH_FAILED)


def observe(out: Outputs, n_records: int, version: str) -> None:
    """Count what a published batch did (after its delivery: the counters count what the broker acknowledged)."""
    metrics.RECORDS.inc(n_records)
    metrics.BATCH_SIZE.observe(n_records)
    metrics.EVENTS.labels(version).inc(out.processed)
    now = time.time()
    for a in out.alert_records:
        metrics.ALERTS.labels(a.kind, version).inc()
        metrics.EVENT_TO_ALERT.labels(a.kind).observe(max(0.0, now - a.event_time))
    metrics.DEAD_LETTERS.inc(len(out.dead_letters))
    for s in out.close_seconds:
        metrics.STEP_CLOSE.observe(s)
    metrics.STEPS_FINALISED.inc(len(out.close_seconds))
    if out.last_step is not None:
        metrics.CURRENT_STEP.set(out.last_step)


def create_app(settings: Settings, model: LoadedModel | None = None) -> faust.App:
    """The worker's Faust app for these settings: its loop over the transactions topic and its web views.
    ``model``: the GCN to serve, already loaded and verified (default: loaded from the store on first use)."""
    app = faust.App(
        settings.worker_app_id,
        broker=f"kafka://{settings.kafka_bootstrap or '127.0.0.1:9092'}",
        store="memory://",
        web_enabled=settings.web_port > 0,
        web_port=settings.web_port or 6066,
        web_bind=settings.web_bind,
        topic_partitions=settings.topic_partitions,
        # No leader-only features (timers, tables) are used: no leader topic to create and assign.
        topic_disable_leader=True,
        key_serializer="raw",
        value_serializer="raw",
    )
    # Faust's consumer (and its group) is not started: stream_app.consumer reads the transactions topic.
    app.boot_strategy = faust.app.base.BootStrategy(app, enable_kafka_consumer=False)
    alerts_topic = app.topic(settings.topic_alerts, key_type=bytes, value_type=bytes)
    stats_topic = app.topic(settings.topic_stats, key_type=bytes, value_type=bytes)
    dead_letter_topic = app.topic(settings.topic_dead_letter, key_type=bytes, value_type=bytes)
    processor = _Served(settings, model)
    consumer = TransactionsConsumer(settings, on_revoked=lambda partitions: delivery.revoke(partitions))
    topics = OutputTopics(settings.topic_alerts, settings.topic_stats, settings.topic_dead_letter,
                          settings.topic_transactions)
    delivery: Delivery
    if settings.processing_guarantee in (None, "exactly_once"):
        delivery = ExactlyOnce(
            settings.kafka_bootstrap or "127.0.0.1:9092", settings.worker_app_id, settings.topic_transactions, topics,
            assigned=consumer.assigned)
    else:
        transactions_topic = app.topic(settings.topic_transactions, key_type=bytes, value_type=bytes)
        by_name = {t.get_topic_name(): t for t in (alerts_topic, stats_topic, dead_letter_topic, transactions_topic)}

        async def send(topic: str, key: bytes | None, value: bytes, partition: int | None) -> None:
            await by_name[topic].send(key=key, value=value, partition=partition)

        delivery = AtLeastOnce(topics, send, app.producer.flush, consumer.commit)
    # route() runs on the event loop, not on a thread of its own: measured on the full replay, a route thread
    # fighting Faust's loop for the GIL made batches 40% slower and p99 event→alert 5x worse (docs/tansu.md).

    async def process(msgs: list[Record]) -> Outputs:
        proc = processor()
        proc.check_state()
        out = route(proc, msgs, settings.max_record_bytes, settings.worker_app_id, consumer.placement())
        for replay_id in record_published(proc, out):
            log.info("replay %s: done (every partition has passed replay_end, every step is closed)", replay_id)
        return out

    Work = tuple[list[Record], Outputs, str]  # a partition's records, their outputs, its span (for logs)

    async def process_all(by_partition: dict[int, list[Record]], epoch: int) -> list[Part[Work]]:
        parts: list[Part[Work]] = []
        for partition, fetched in by_partition.items():
            start = await retrying(partial(delivery.admit, partition),
                                   f"partition {partition}: taking it over", settings.batch_retry_s)
            msgs = [m for m in fetched if m.offset >= start] if start >= 0 else []
            if not msgs:
                continue  # not ours, or committed by its previous owner before we fenced it
            span = f"partition {partition}, offsets {msgs[0].offset}-{msgs[-1].offset}"
            out = await retrying(partial(process, msgs), f"{span}: processing", settings.batch_retry_s,
                                 fatal=(StateLost,))
            parts.append(Part(partition, epoch, (msgs, out, span)))
        return parts

    async def publish_part(part: Part[Work]) -> bool:
        msgs, out, span = part.work
        return await retrying(
            partial(delivery.deliver, part.partition, out, msgs[0].offset, msgs[-1].offset + 1,
                    partial(publishing.current, part)),
            f"{span}: publishing", settings.batch_retry_s, fatal=(DeliveryError,))

    async def publish(parts: list[Part[Work]]) -> frozenset[int]:
        """Publish each partition's outputs with its offsets (stream_app.publishing says which may be); the
        partitions it could not publish, no longer ours."""
        lost = set()
        for p, ok in zip(parts, await asyncio.gather(*(publish_part(p) for p in parts)), strict=True):
            msgs, out, _ = p.work
            if not ok:
                lost.add(p.partition)
                continue
            observe(out, len(msgs), processor().model.version)
            if out.dead_letters:
                log.warning("%d record(s) sent to %s", len(out.dead_letters), settings.topic_dead_letter)
        return frozenset(lost)

    def publish_failed(e: BaseException) -> None:
        if not isinstance(e, BatchFailed):
            log.error("publishing a batch failed", exc_info=e)
        fail(str(e) if isinstance(e, BatchFailed) else f"publishing a batch failed: {type(e).__name__}: {e}")

    publishing = Publishing(publish, lambda: consumer.epoch, publish_failed)

    @app.task
    async def score() -> None:
        try:
            await consumer.start()
            async for batch in consumer.batches():
                t0 = time.perf_counter()
                epoch = consumer.epoch  # the batch's: nothing is awaited between its fetch and here
                await publishing.submit(await process_all(batch, epoch))
                metrics.BATCH_SECONDS.observe(time.perf_counter() - t0)
            await publishing.drain()
        except BatchFailed as e:
            fail(str(e))
        except Exception as e:  # noqa: BLE001 - a worker whose consumer died must not live on serving web views
            log.exception("the consuming loop failed")
            fail(f"the consuming loop failed: {type(e).__name__}: {e}")

    if settings.replay_graph_ttl_s is not None:
        ttl, retention = settings.replay_graph_ttl_s, settings.replay_retention_s

        @app.timer(interval=min(60.0, max(1.0, ttl / 10)), on_leader=False)
        async def prune() -> None:
            # A thread: deleting a full-size replay's graph scans ~200k keys, which must not stall the loop.
            try:
                await asyncio.to_thread(prune_ended, processor().redis, ttl, retention)
            except Exception as e:  # noqa: BLE001 - pruning is housekeeping: retried at the next tick
                log.warning("pruning ended replays failed: %s: %s", type(e).__name__, e)

    @app.on_before_shutdown.connect
    async def on_shutdown(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        processor.fit_pool.close(wait=True)  # no process of the worker's outlives it; later closes fit here
        await consumer.stop()  # no batch is admitted after this
        await delivery.close()

    _add_views(app, processor)
    return app


# -- web views: thin wrappers over stream_app.views ---------------------------------------------------------------


def _answer(view: View, fn: Any, *args: Any) -> Response:
    try:
        return view.json(fn(*args))
    except views.ViewError as e:
        return view.error(e.status, e.message)


def _add_views(app: faust.App, processor: _Served) -> None:
    @app.page("/health")
    async def health(web: View, request: Request) -> Response:
        proc = processor()
        return _answer(web, views.health, proc.redis, proc.model.version, STARTED_AT, time.time(), proc.instance)

    @app.page("/alerts")
    async def latest_alerts(web: View, request: Request) -> Response:
        q = request.query
        return _answer(web, lambda: views.latest_alerts(processor().redis, views.parse_limit(q.get("limit")),
                                                         q.get("kind"), q.get("replay")))

    @app.page("/tx/{tx_id}")
    async def transaction(web: View, request: Request, tx_id: str) -> Response:
        model = processor().model
        return _answer(web, lambda: views.transaction(processor().redis, views.parse_tx_id(tx_id),
                                                       request.query.get("replay"), model.threshold,
                                                       model.on_arrival.threshold))

    @app.page("/stats")
    async def latest_stats(web: View, request: Request) -> Response:
        q = request.query

        def answer() -> dict:
            step = q.get("step")
            if step is not None and not step.isdigit():
                raise views.ViewError(400, f"step must be a positive integer, got {step!r}")
            return views.latest_stats(processor().redis, q.get("replay"), int(step) if step else None)

        return _answer(web, answer)

    @app.page("/metrics")
    async def prometheus_metrics(web: View, request: Request) -> Response:
        # aiohttp refuses parameters in content_type=; the exposition format's full type goes in as a header
        return web.bytes(metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def run_worker(app: faust.App, settings: Settings, loglevel: str = "info") -> NoReturn:
    """Run Faust's worker command for ``app`` with explicit arguments (what ``app.main()`` does with sys.argv).

    Faust's worker command sets the web server on or off from its own flags, so ours are passed on."""
    from faust.cli.faust import cli

    app.finalize()
    app.worker_init()
    app.worker_init_post_autodiscover()
    web = ["--web-port", str(settings.web_port), "--web-bind", settings.web_bind] if settings.web_port else \
        ["--without-web"]
    cli.main(args=["worker", "--loglevel", loglevel, *web], prog_name="txmon worker", app=app)
    raise SystemExit(3451)  # cli.main exits itself; for the type checker


def __getattr__(name: str) -> Any:
    """``faust -A stream_app.app worker`` looks up ``app`` here: made on first access, from TXMON_* variables."""
    if name == "app":
        made = create_app(Settings())
        globals()["app"] = made
        return made
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    """``python -m stream_app.app``: the worker on the settings in the environment."""
    settings = Settings()
    run_worker(create_app(settings), settings)


if __name__ == "__main__":
    main()
