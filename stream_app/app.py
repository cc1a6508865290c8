"""The Faust worker, built by ``create_app(settings)``: ``txmon worker``, or ``faust -A stream_app.app worker``.

A thin loop: consume the transactions topic in micro-batches; per input partition, hand the batch's records
to ``stream_app.routing.route`` (plain code over Redis), record in Redis what it publishes, then publish it
with the partition's offset (``stream_app.delivery``: one Kafka transaction on Apache Kafka). A failing step
is retried with backoff, never skipped; if it keeps failing the worker exits (code 70) without committing
past the batch. No Faust tables: all state lives in Redis, so workers can be restarted or added at any time.
The web server (``web_port``) serves the views of ``stream_app.views`` and /metrics.
Nothing is read or built at import: ``create_app`` takes explicit settings (``txmon worker`` builds them
from the environment and its options); only ``faust -A`` reads the module's ``app``, made on first access.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import defaultdict
from functools import partial
from typing import Any, NoReturn

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST

from stream_app import metrics, views
from stream_app.delivery import AtLeastOnce, Delivery, DeliveryError, ExactlyOnce, OutputTopics
from stream_app.processor import Processor
from stream_app.redis_client import connect
from stream_app.retention import prune_ended
from stream_app.retries import BatchFailed, retrying
from stream_app.routing import Consumed, Outputs, record_published, route
from stream_app.scorer import LoadedModel
from stream_app.state import StateLost
from txmon.core.settings import Settings

log = logging.getLogger(__name__)
STARTED_AT = time.time()
EXIT_BATCH_FAILED = 70  # EX_SOFTWARE: a batch could not be processed and published; its offsets stay uncommitted


def _patch_fetch_wait(wait_ms: int) -> None:
    """Faust creates its aiokafka consumer with a fixed ``fetch_max_wait_ms=1500`` and no setting for it;
    Tansu holds fetches for that long although data waits, which made p99 event→alert latency > 1 s
    (docs/tansu.md). Set it on the consumer Faust creates, before it starts."""
    thread = faust_aiokafka.AIOKafkaConsumerThread
    original = getattr(thread._create_worker_consumer, "_txmon_original", thread._create_worker_consumer)

    def create(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        consumer._fetch_max_wait_ms = wait_ms  # read by AIOKafkaConsumer.start() when it builds its Fetcher
        return consumer

    create._txmon_original = original  # type: ignore[attr-defined]
    thread._create_worker_consumer = create  # type: ignore[method-assign]  # the patch is the point


class _Served:
    """The Processor (Redis client + model), built on first use, so making the app (e.g. for ``--help``)
    needs no Redis or model. The agent and the web views all run on the one event loop: no race."""

    def __init__(self, settings: Settings, model: LoadedModel | None = None) -> None:
        self.settings = settings
        self.model = model  # verified before the worker joins its group (txmon worker), else loaded on first use
        self._processor: Processor | None = None

    def __call__(self) -> Processor:
        if self._processor is None:
            self._processor = self._build()
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
        return Processor(connect(s.redis_url), model)


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
    """The worker's Faust app for these settings: its agent over the transactions topic and its web views.
    ``model``: the GCN to serve, already loaded and verified (default: loaded from the store on first use)."""
    if settings.fetch_wait_ms is not None:
        _patch_fetch_wait(settings.fetch_wait_ms)
    app = faust.App(
        settings.worker_app_id,
        broker=f"kafka://{settings.kafka_bootstrap or '127.0.0.1:9092'}",
        store="memory://",
        web_enabled=settings.web_port > 0,
        web_port=settings.web_port or 6066,
        web_bind=settings.web_bind,
        topic_partitions=settings.topic_partitions,
        # Offsets are committed by stream_app.delivery, not by acks: rebalances need not wait for them.
        stream_wait_empty=False,
        # No leader-only features (timers, tables) are used: no leader topic to create and assign.
        # A short session: a killed worker's partitions move within seconds (and Tansu joins take session / 2).
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
        key_serializer="raw",
        value_serializer="raw",
    )
    transactions = app.topic(settings.topic_transactions, key_type=bytes, value_type=bytes)
    alerts_topic = app.topic(settings.topic_alerts, key_type=bytes, value_type=bytes)
    stats_topic = app.topic(settings.topic_stats, key_type=bytes, value_type=bytes)
    dead_letter_topic = app.topic(settings.topic_dead_letter, key_type=bytes, value_type=bytes)
    processor = _Served(settings, model)
    topics = OutputTopics(settings.topic_alerts, settings.topic_stats, settings.topic_dead_letter)
    delivery: Delivery
    if settings.processing_guarantee in (None, "exactly_once"):
        delivery = ExactlyOnce(
            settings.kafka_bootstrap or "127.0.0.1:9092", settings.worker_app_id, settings.topic_transactions, topics,
            assigned=lambda p: faust.types.TP(settings.topic_transactions, p) in app.consumer.assignment())
    else:
        by_name = {t.get_topic_name(): t for t in (alerts_topic, stats_topic, dead_letter_topic)}

        async def send(topic: str, key: bytes | None, value: bytes) -> None:
            await by_name[topic].send(key=key, value=value)

        delivery = AtLeastOnce(topics, send, app.producer.flush)
    # route() runs on the event loop, not on a thread of its own: measured on the full replay, a route thread
    # fighting Faust's loop for the GIL made batches 40% slower and p99 event→alert 5x worse (docs/tansu.md).

    async def process(msgs: list[Consumed]) -> Outputs:
        proc = processor()
        proc.check_state()
        out = route(proc, msgs, settings.max_record_bytes, settings.worker_app_id)
        for end in record_published(proc, out):
            log.info("replay %s: every partition has passed replay_end", end.replay_id)
        return out

    async def handle(batch: list[Any], stream: Any) -> None:
        by_partition: dict[int, list[Any]] = defaultdict(list)
        for e in batch:
            by_partition[e.message.partition].append(e)
        work = []
        for partition, events in by_partition.items():
            start = await retrying(partial(delivery.admit, partition),
                                   f"partition {partition}: taking it over", settings.batch_retry_s)
            events = [e for e in events if e.message.offset >= start] if start >= 0 else []
            if not events:
                continue  # not ours, or committed by its previous owner before we fenced it
            msgs = [Consumed(e.message.topic, e.message.partition, e.message.offset, e.message.key, e.message.value)
                    for e in events]
            span = f"partition {partition}, offsets {msgs[0].offset}-{msgs[-1].offset}"
            out = await retrying(partial(process, msgs), f"{span}: processing", settings.batch_retry_s,
                                 fatal=(StateLost,))
            work.append((partition, events, msgs, out, span))
        delivered = await asyncio.gather(*(
            retrying(partial(delivery.deliver, p, out, msgs[0].offset, msgs[-1].offset + 1), f"{span}: publishing",
                     settings.batch_retry_s, fatal=(DeliveryError,))
            for p, _, msgs, out, span in work))
        for (_, events, msgs, out, _), ok in zip(work, delivered, strict=True):
            if not ok:
                continue
            if not delivery.transactional:
                for e in events:
                    await stream.ack(e)  # Faust commits acked offsets
            observe(out, len(msgs), processor().model.version)
            if out.dead_letters:
                log.warning("%d record(s) sent to %s", len(out.dead_letters), settings.topic_dead_letter)

    @app.agent(transactions, name="stream_app.app.score")
    async def score(stream: Any) -> None:
        # noack_take: Faust commits no offset by itself (take_events acks a batch even when its body raised).
        async for batch in stream.noack_take(settings.batch_max, within=settings.batch_wait_s):
            t0 = time.perf_counter()
            try:
                await handle(batch, stream)
            except BatchFailed as e:
                fail(str(e))
            metrics.BATCH_SECONDS.observe(time.perf_counter() - t0)

    if settings.replay_graph_ttl_s is not None:
        ttl, retention = settings.replay_graph_ttl_s, settings.replay_retention_s

        @app.timer(interval=min(60.0, max(1.0, ttl / 10)), on_leader=False)
        async def prune() -> None:
            # A thread: deleting a full-size replay's graph scans ~200k keys, which must not stall the loop.
            try:
                await asyncio.to_thread(prune_ended, processor().redis, ttl, retention)
            except Exception as e:  # noqa: BLE001 - pruning is housekeeping: retried at the next tick
                log.warning("pruning ended replays failed: %s: %s", type(e).__name__, e)

    @app.on_partitions_revoked.connect
    async def on_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        revoked: set[Any] = args[0]  # Faust sends the revoked TPs as the one argument
        await delivery.revoke({tp.partition for tp in revoked if tp.topic == settings.topic_transactions})

    @app.on_before_shutdown.connect
    async def on_shutdown(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
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
