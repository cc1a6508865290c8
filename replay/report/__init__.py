"""The analyst's replay report: the stream's alerts and step statistics joined with the held-back labels.

``build_report`` turns the records a replay produced into a :class:`Report` (pure, no Kafka);
``write_report`` writes report.json, report.html and PNG figures. ``replay.report.evaluate`` holds
the alert verdicts and scores that the demo's summary uses too.
"""

from __future__ import annotations

from replay.report.build import build_report
from replay.report.evaluate import (
    Scores,
    alerted_sets,
    distinct_alerts,
    evaluate_alerts,
    latency_percentiles,
    score_flags,
    verdict_sets,
)
from replay.report.model import Report
from replay.report.render import write_report

__all__ = [
    "Report", "Scores", "alerted_sets", "build_report", "distinct_alerts", "evaluate_alerts",
    "latency_percentiles", "score_flags", "verdict_sets", "write_report",
]
