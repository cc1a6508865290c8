"""The worker's Prometheus metrics, defined once: the worker records them, ``/metrics`` serves them,
``txmon top`` and the Grafana dashboard (ops/grafana/) read them by these names.

Buckets are in seconds and sized for what the monitor does: a micro-batch takes milliseconds, an
alert arrives within a second or two of its event, a step close takes up to a few hundred ms.
"""

from __future__ import annotations

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

disable_created_metrics()  # the *_created series only double what a scrape exposes

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
FAST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
BATCH_SIZE_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2000, 5000)

EVENTS = Counter("txmon_events_processed", "Transactions written to the graph and scored at arrival",
                 ["model_version"])
RECORDS = Counter("txmon_records_consumed",
                  "Records read from the transactions topic (tx_batch records, tx events, markers, bad ones)")
BATCH_SIZE = Histogram("txmon_batch_size", "Records per consumed micro-batch", buckets=BATCH_SIZE_BUCKETS)
BATCH_SECONDS = Histogram("txmon_batch_seconds", "Time to process one micro-batch, step closes included, and to "
                          "wait for the previous one's publish",
                          buckets=LATENCY_BUCKETS)
EVENT_TO_ALERT = Histogram("txmon_event_to_alert_seconds",
                           "From a transaction's event time (when the producer sent it) to its alert being published",
                           ["kind"], buckets=LATENCY_BUCKETS)
ALERTS = Counter("txmon_alerts", "Alerts published", ["kind", "model_version"])
DEAD_LETTERS = Counter("txmon_dead_letters", "Records sent to the dead-letter topic")
REDIS_ROUNDTRIP = Histogram("txmon_redis_roundtrip_seconds", "One Redis round trip (a command or a pipeline)",
                            buckets=FAST_BUCKETS)
STEP_CLOSE = Histogram("txmon_step_close_seconds", "Finalising one step: re-score, alerts, statistics",
                       buckets=LATENCY_BUCKETS)
STEPS_FINALISED = Counter("txmon_steps_finalised", "Steps this worker finalised")
CURRENT_STEP = Gauge("txmon_current_step", "Time step of the latest transaction this worker processed")
MODEL_INFO = Gauge("txmon_model_info", "1 for the model version the worker serves", ["model_version"])

# Names as Prometheus exposes them (counters gain _total, histograms _bucket/_sum/_count): what a
# dashboard or `txmon top` may query.
EXPORTED: dict[str, str] = {
    "txmon_events_processed_total": "counter",
    "txmon_records_consumed_total": "counter",
    "txmon_batch_size": "histogram",
    "txmon_batch_seconds": "histogram",
    "txmon_event_to_alert_seconds": "histogram",
    "txmon_alerts_total": "counter",
    "txmon_dead_letters_total": "counter",
    "txmon_redis_roundtrip_seconds": "histogram",
    "txmon_step_close_seconds": "histogram",
    "txmon_steps_finalised_total": "counter",
    "txmon_current_step": "gauge",
    "txmon_model_info": "gauge",
}


def exported_series() -> set[str]:
    """Every series name a scrape can return for txmon's metrics (histograms' _bucket/_sum/_count included)."""
    names = set()
    for name, kind in EXPORTED.items():
        names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"} if kind == "histogram" else {name}
    return names


def exposition(registry: CollectorRegistry = REGISTRY) -> bytes:
    return generate_latest(registry)

