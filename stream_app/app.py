"""The Faust worker: ``faust -A stream_app.app worker --without-web`` or ``txmon worker``.

A thin loop: consume the transactions topic in micro-batches, hand each batch to
``stream_app.routing.route`` (plain code over Redis), publish what it returns. No Faust tables:
all state lives in Redis, so workers can be restarted or added at any time.
"""

from __future__ import annotations

import logging

import faust
import redis

from stream_app.processor import Processor
from stream_app.routing import Consumed, route
from stream_app.scorer import LoadedModel
from txmon.settings import Settings

log = logging.getLogger(__name__)
settings = Settings()

app = faust.App(
    settings.worker_app_id,
    broker=f"kafka://{settings.kafka_bootstrap or '127.0.0.1:9092'}",
    store="memory://",
    web_enabled=False,
    topic_partitions=settings.topic_partitions,
    # Tansu (the embedded broker) has no use for Faust's leader topic and restores tables wrongly;
    # a short session makes group joins take seconds instead of half a minute (docs/tansu.md).
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

_processor: Processor | None = None


def processor() -> Processor:
    """Built on first use, so importing the app (e.g. for ``--help``) needs no Redis or model."""
    global _processor
    if _processor is None:
        if not settings.redis_url:
            raise RuntimeError("TXMON_REDIS_URL is not set: the worker keeps its graph in Redis")
        client = redis.Redis.from_url(settings.redis_url, decode_responses=False)
        model = LoadedModel.from_store(settings.model_dir, settings.model_version)
        log.info("serving %s (threshold %.3f) from %s", model.version, model.threshold, settings.model_dir)
        _processor = Processor(client, model)
    return _processor


@app.agent(transactions)
async def score(stream) -> None:  # noqa: ANN001
    async for batch in stream.take_events(settings.batch_max, within=settings.batch_wait_s):
        consumed = [Consumed(e.message.topic, e.message.partition, e.message.offset, e.message.key, e.message.value)
                    for e in batch]
        proc = processor()
        out = route(proc, consumed, settings.max_record_bytes)
        for key, value in out.alerts:
            await alerts_topic.send(key=key, value=value)
        for key, value in out.stats:
            await stats_topic.send(key=key, value=value)
        for key, value in out.dead_letters:
            await dead_letter_topic.send(key=key, value=value)
        if out.dead_letters:
            log.warning("%d record(s) sent to %s", len(out.dead_letters), settings.topic_dead_letter)
        for end in out.replays_done:
            log.info("replay %s: every partition has passed replay_end", end.replay_id)


def main() -> None:
    app.main()


if __name__ == "__main__":
    main()
