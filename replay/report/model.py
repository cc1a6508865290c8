"""The replay report as data (pydantic v2): everything report.html shows, and what report.json holds.

Floats that can be undefined are ``float | None``: None (null in JSON) means undefined, so the JSON
never holds NaN and parses back to an equal report. Lists are sorted (by step, tx id, alert id) and
nothing here depends on the time the report was made: the same inputs give byte-identical JSON.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from replay.report.evaluate import Scores
from txmon.core.contracts import AlertKind, Verdict

REPORT_SCHEMA_VERSION = 3  # 2: per-step alert counts gained `confirmed`; 3: `early` (arrival against final), arrival
#                              threshold in the header
Label = Literal["illicit", "licit", "unknown", "not in data set"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Header(_Model):
    replay_id: str
    first_step: int
    last_step: int
    model_version: str
    threshold: float = Field(ge=0, le=1, description="the GCN's, at step close")
    arrival_threshold: float | None = Field(None, ge=0, le=1, description="the arrival model's (None: the "
                                                                          "served version scores on arrival with "
                                                                          "its GCN and its threshold)")
    transactions: int = Field(description="transactions of the data set in steps first..last")
    labelled: int
    illicit: int
    licit: int
    unknown: int
    meta: dict[str, JsonValue] = Field(description="the caller's key/value rows (elapsed time, throughput, ...), "
                                                   "sorted by key")


class Early(_Model):
    """What arrival alerts are worth against the verdicts at step close, over some steps."""

    steps: str = Field(description="'35', or a range '35-42'")
    arrival: Scores
    final: Scores
    f1_ratio: float | None = Field(description="arrival F1 / final F1")
    arrival_alerts: int
    retracted: int = Field(description="arrival alerts that step close retracted (labelled or not)")
    retraction_rate: float | None
    ahead_tx: float | None = Field(description="median, over arrival alerts: transactions of the step after the "
                                               "alert's arrival window, i.e. still to come when it was raised")
    ahead_s: float | None = Field(description="median, over arrival alerts: seconds from the arrival alert to "
                                              "its confirmation or retraction (measured on the stream)")


class StepMetrics(_Model):
    step: int
    transactions: int
    labelled: int
    illicit: int
    arrival: Scores
    final: Scores


class Metrics(_Model):
    """Verdicts against the labels, illicit = positive, unknown labels excluded."""

    overall: dict[Verdict, Scores]
    confusion: dict[Verdict, list[list[int]]] = Field(
        description="[[TN, FP], [FN, TP]]: rows true licit / illicit, columns flagged no / yes")
    per_step: list[StepMetrics]
    flagged: dict[Verdict, int] = Field(description="transactions of the period each verdict "
                                                                        "flags, labelled or not")
    early: list[Early] = Field(description="arrival against final: the period, the steps before and after the "
                                           "dark market shutdown within it, then each step")


class StepAlertCounts(_Model):
    step: int
    arrival: int
    confirmed: int
    retracted: int
    final: int


class AlertCounts(_Model):
    received: int = Field(description="alert records of this replay handed to the report, copies included")
    distinct: int = Field(description="distinct alert ids: what every other number counts")
    by_kind: dict[AlertKind, int]
    per_step: list[StepAlertCounts] = Field(description="by the step the alert names")


class Histogram(_Model):
    edges: list[float]
    counts: list[int]


class Latency(_Model):
    """Seconds; percentiles interpolate linearly between the sorted values (numpy's default)."""

    count: int
    p50: float | None
    p90: float | None
    p99: float | None
    max: float | None
    histogram: Histogram | None


class LatencySection(_Model):
    event_to_alert: dict[AlertKind, Latency] = Field(
        description="processing_time − event_time of the alerts of each kind")
    step_close: Latency | None = Field(None, description="a step's statistics computed_at − the time its end "
                                                         "marker was sent (only with sent_times)")


class DegreeFit(_Model):
    alpha: float | None
    xmin: float | None
    ks_distance: float | None
    n_tail: int
    lognormal_loglik_ratio: float | None
    lognormal_p: float | None


class StepRow(_Model):
    """One StepStats record (replay id and computed_at left out), plus the step-close time when known."""

    step: int
    nodes_step: int
    edges_step: int
    nodes_total: int
    edges_total: int
    avg_degree: float | None
    density: float | None
    clustering: float | None
    triangles_step: int
    in_degree_fit: DegreeFit | None
    out_degree_fit: DegreeFit | None
    densification_alpha: float | None
    densification_r2: float | None
    densification_alpha_window: float | None
    window: int
    step_close_s: float | None = Field(None, description="computed_at − the step's end marker sent time")


class DensificationFitRow(_Model):
    alpha: float | None
    intercept: float | None
    r2: float | None
    stderr: float | None
    n_points: int


class Densification(_Model):
    """E ∝ N^α over the period."""

    from_step: int | None = Field(description="the step record the stream's values come from (the last one)")
    alpha_cumulative: float | None = Field(description="the stream's α over its cumulative history")
    r2_cumulative: float | None
    alpha_window: float | None = Field(description="the stream's α over its last `window` steps")
    window: int | None
    fit: DensificationFitRow | None = Field(description="least squares on log edges_total vs log nodes_total of "
                                                        "the period's records")
    fit_error: str | None = None


class Neighbour(_Model):
    tx_id: int
    weight: float | None
    label: Label


class TopAlert(_Model):
    rank: int
    tx_id: int
    step: int
    kinds: list[str] = Field(description="the kinds of alert the transaction received")
    arrival_score: float | None
    final_score: float | None
    score: float | None = Field(description="the final score, else the arrival score: the ranking key")
    flagged_arrival: bool
    flagged_final: bool
    label: Label
    neighbours: list[Neighbour] = Field(description="the explanation of its latest alert, as the stream ranked it")


class ReportWarning(_Model):
    code: str
    message: str
    count: int
    items: list[int | str] = Field(description="every step, tx id or alert id concerned, sorted")


class Report(_Model):
    schema_version: int = REPORT_SCHEMA_VERSION
    header: Header
    metrics: Metrics
    alerts: AlertCounts
    latency: LatencySection
    steps: list[StepRow]
    densification: Densification
    top_alerts: list[TopAlert]
    warnings: list[ReportWarning]
    plots: dict[str, str] = Field(description="figure key → PNG file name written beside report.html")
