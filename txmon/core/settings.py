"""The one settings class: every knob is read from ``TXMON_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "txmon"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TXMON_", extra="ignore")

    # None means "embedded": txmon starts a local broker / redis-server itself.
    kafka_bootstrap: str | None = Field(None, description="Kafka bootstrap servers, host:port[,host:port]")
    embedded_broker: Literal["auto", "kafka", "tansu"] = Field(
        "auto", description="the broker txmon starts when kafka_bootstrap is unset: Apache Kafka (needs Java 17+ "
                            "and the jars scripts/setup.sh installs), Tansu, or auto (Kafka when it can run here)")
    redis_url: str | None = Field(None, description="Redis URL, e.g. redis://127.0.0.1:6379/0")

    topic_transactions: str = "txmon.transactions"
    topic_alerts: str = "txmon.alerts"
    topic_stats: str = "txmon.stats"
    topic_dead_letter: str = "txmon.dead-letter"
    topic_partitions: int = Field(4, ge=1)

    # The producer.
    record_format: Literal["batch", "json"] = Field(
        "batch", description="how the producer sends transactions: batch, binary tx_batch records of up to "
                             "producer_batch consecutive transactions of a step (txmon.core.tx_batch); json, one tx "
                             "record each. The worker takes both")
    producer_batch: int = Field(64, ge=1, description="transactions per tx_batch record at most (and their columns "
                                                      "within max_record_bytes)")
    producer_linger_ms: float = Field(20.0, ge=0, description="longest a paced replay holds a transaction to fill "
                                                              "its tx_batch record")

    # The stream worker.
    worker_app_id: str = Field("txmon-worker", description="Faust app id = the Kafka consumer group")
    model_version: str = Field("latest", description="GCN version the worker serves, or latest")
    # 4000, not 1000: with a batch's publishing overlapping the next batch, a backlog went 4-8 % faster and cost
    # the broker 15 % less CPU a transaction (fewer Kafka transactions); a paced stream never fills either.
    batch_max: int = Field(4000, ge=1, description="transactions per micro-batch, about (a tx_batch record is "
                                                   "not split: its transactions may go beyond it)")
    batch_wait_s: float = Field(0.05, gt=0, description="how long a micro-batch waits to fill")
    max_record_bytes: int = Field(64 * 1024, ge=1024, description="larger records are dead-lettered")
    processing_guarantee: Literal["exactly_once", "at_least_once"] | None = Field(
        None, description="exactly_once (the default when unset): each batch's outputs and input offsets in one Kafka "
                          "transaction (needs a broker with transactions, as Apache Kafka); at_least_once: a retried "
                          "batch publishes again, consumers de-duplicate by alert id (txmon sets it for workers on "
                          "the embedded Tansu, which has no transactions)")
    batch_retry_s: float = Field(30.0, ge=0, description="how long a failing batch (Redis or Kafka unreachable, a "
                                                         "bug) is retried, with backoff, before the worker stops "
                                                         "rather than move past it")
    fetch_wait_ms: int | None = Field(None, ge=1, le=1500, description="longest a consumer fetch waits for data; "
                                      "unset: aiokafka's 500 ms, right on Apache Kafka, which answers a fetch as "
                                      "soon as data arrives; txmon sets 100 for workers on the embedded Tansu, which "
                                      "holds fetches although data waits")
    replay_graph_ttl_s: float | None = Field(
        3600.0, ge=0, description="how long after a replay ends its graph (node records, neighbour sets: most of "
                                  "its Redis memory) is kept for batches processed again after a crash; alerts, "
                                  "statistics, scores, the edge log and the id index stay. None keeps it forever")
    replay_retention_s: float | None = Field(
        7 * 86400.0, ge=0, description="how long after a replay ends anything of it is kept in Redis (its alerts and "
                                       "statistics stay on their topics); None keeps replays forever")
    web_port: int = Field(6066, ge=0, le=65535, description="the worker's web views and /metrics; 0 turns them off")
    web_bind: str = Field("127.0.0.1", description="address the web server binds (0.0.0.0 in containers)")

    data_dir: Path = Field(Path("data"), description="where data sets live (synthetic ones are written here)")
    model_dir: Path = Field(Path("models"), description="the versioned model store")
    cache_dir: Path = Field(default_factory=_default_cache_dir, description="binary copies of loaded data sets")
    kafka_home: Path | None = Field(None, description="where the embedded Apache Kafka's jars are installed; default "
                                                      "~/.cache/txmon/kafka/<version>")


    @property
    def topics(self) -> list[str]:
        """txmon's four topics: transactions, alerts, statistics, dead letters."""
        return [self.topic_transactions, self.topic_alerts, self.topic_stats, self.topic_dead_letter]

    def to_env(self) -> dict[str, str]:
        """These settings as ``TXMON_*`` variables: how a worker process started by txmon receives them."""
        env = {}
        for name, value in self.model_dump().items():
            if value is not None:
                env[f"TXMON_{name.upper()}"] = str(Path(value).resolve()) if isinstance(value, Path) else str(value)
        return env

