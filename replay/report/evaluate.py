"""Alerts against the held-back labels: verdicts, precision/recall/F1, latency — the one place for these.

Both the replay report and the demo's summary read alerts through these functions.

Verdicts on a transaction, from the distinct alerts it received:
- ``arrival``: it has an arrival alert (the verdict as first raised; retractions ignored);
- ``final``: it has an arrival or a final alert and no retracted alert (the verdict once its step closed).

Undefined metrics (a zero denominator) are ``None`` (null in JSON), never NaN and never a made-up 0:
precision = TP / (TP + FP) is None when nothing is flagged, recall = TP / (TP + FN) when there is no
labelled illicit transaction, F1 = 2TP / (2TP + FP + FN) only when both are absent. So F1 is 0, not
None, when illicit transactions exist and none is flagged. This is scikit-learn's
``zero_division=np.nan`` with NaN mapped to None.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from replay.data.dataset import EllipticDataset
from txmon.core.contracts import ALERT_KINDS as ALERT_KINDS  # noqa: F401 - re-exported to the report
from txmon.core.contracts import Alert
from txmon.core.elliptic_format import ILLICIT, UNKNOWN


class Scores(BaseModel):
    """The illicit class's scores over a set of labelled transactions (None: undefined, see the module doc)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    precision: float | None
    recall: float | None
    f1: float | None
    tp: int
    fp: int
    fn: int
    tn: int
    n: int  # labelled transactions evaluated


def defined(x: float | None) -> float | None:
    """A number for JSON: None (null) where it is undefined (None, NaN, ±inf)."""
    return float(x) if x is not None and math.isfinite(x) else None


def score_flags(flagged: NDArray[np.bool_], illicit: NDArray[np.bool_]) -> Scores:
    """Scores of ``flagged`` (predicted illicit) against ``illicit`` (truth), both over labelled transactions only."""
    flagged = np.asarray(flagged, dtype=bool)
    illicit = np.asarray(illicit, dtype=bool)
    if flagged.shape != illicit.shape:
        raise ValueError(f"flagged and illicit differ in shape: {flagged.shape} vs {illicit.shape}")
    if flagged.size == 0:  # scikit-learn refuses empty input; a step without labels has no scores
        return Scores(precision=None, recall=None, f1=None, tp=0, fp=0, fn=0, tn=0, n=0)
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(illicit, flagged, labels=[False, True]).ravel())
    p, r, f, _ = precision_recall_fscore_support(illicit, flagged, labels=[True], average=None, zero_division=np.nan)
    return Scores(precision=defined(p[0]), recall=defined(r[0]), f1=defined(f[0]), tp=tp, fp=fp, fn=fn, tn=tn,
                  n=int(flagged.size))


def distinct_alerts(alerts: Iterable[Alert]) -> tuple[list[Alert], dict[str, int]]:
    """One alert per alert id, sorted by id, and the ids received more than once (id → times received).

    Delivery is at-least-once, so a record may arrive twice; its copies are identical unless something
    went wrong, and then the earliest emitted one is kept (ties broken by content, so input order never
    matters).
    """
    best: dict[str, Alert] = {}
    seen: dict[str, int] = {}
    for a in alerts:
        seen[a.alert_id] = seen.get(a.alert_id, 0) + 1
        kept = best.get(a.alert_id)
        if kept is None or (a.processing_time, a.model_dump_json()) < (kept.processing_time, kept.model_dump_json()):
            best[a.alert_id] = a
    return [best[k] for k in sorted(best)], {k: n for k, n in sorted(seen.items()) if n > 1}


def verdict_sets(alerts: Iterable[Alert]) -> dict[str, set[int]]:
    """The transactions each verdict flags (see the module doc)."""
    by_kind: dict[str, set[int]] = {k: set() for k in ALERT_KINDS}
    for a in alerts:
        by_kind[a.kind].add(a.tx_id)
    return {"arrival": by_kind["arrival"], "final": (by_kind["arrival"] | by_kind["final"]) - by_kind["retracted"]}


def alerted_sets(alerts: list[Alert]) -> dict[str, set[int]]:
    """The transactions each reading of the alerts flags, named as the demo's summary shows them.

    ``alerts``: the final verdict; ``arrival``: as first raised, retractions ignored; ``final only``:
    raised at step close only.
    """
    verdicts = verdict_sets(alerts)
    return {
        "alerts (arrival + final − retracted)": verdicts["final"],
        "arrival alerts as raised": verdicts["arrival"],
        "final-score alerts only": {a.tx_id for a in alerts if a.kind == "final"},
    }


def flag_rows(ds: EllipticDataset, tx_ids: Iterable[int]) -> NDArray[np.bool_]:
    """A row mask of ``ds``: True for the given transactions; ids not in the data set are ignored here
    (the report lists them as warnings)."""
    flagged = np.zeros(ds.n_nodes, dtype=bool)
    found, rows = ds.index.find(np.fromiter(tx_ids, dtype=np.int64))
    flagged[rows[found]] = True
    return flagged


def evaluate_alerts(ds: EllipticDataset, alerts: list[Alert], first_step: int, last_step: int,
                    test_mask: NDArray[np.bool_] | None = None) -> dict[str, dict[str, Scores]]:
    """Scores of each of :func:`alerted_sets` against the held-back labels (illicit = positive).

    Over the labelled transactions of the replayed steps (``replayed``), and, with ``test_mask``, over
    the served model's test set only (``test``: transactions it never saw in training).
    """
    replayed = (ds.labels != UNKNOWN) & (ds.steps >= first_step) & (ds.steps <= last_step)
    illicit = ds.labels == ILLICIT
    out: dict[str, dict[str, Scores]] = {}
    for name, ids in alerted_sets(alerts).items():
        flagged = flag_rows(ds, ids)
        row = {"replayed": score_flags(flagged[replayed], illicit[replayed])}
        if test_mask is not None:
            m = test_mask & replayed
            row["test"] = score_flags(flagged[m], illicit[m])
        out[name] = row
    return out


def latencies(alerts: Iterable[Alert], kind: str) -> NDArray[np.float64]:
    """Seconds from the transaction sent (event time) to the alert emitted (processing time), sorted."""
    return np.sort(np.array([a.processing_time - a.event_time for a in alerts if a.kind == kind], dtype=np.float64))


def resolution_seconds(alerts: Iterable[Alert]) -> dict[int, float]:
    """tx id → seconds from its arrival alert to the confirmation or retraction that resolved it (emitted times):
    how much earlier than step close the arrival alert came."""
    alerts = list(alerts)
    raised = {a.tx_id: a.processing_time for a in alerts if a.kind == "arrival"}
    return {a.tx_id: a.processing_time - raised[a.tx_id] for a in alerts
            if a.kind in ("confirmed", "retracted") and a.tx_id in raised}


def latency_percentiles(alerts: list[Alert], kind: str = "arrival") -> tuple[float, float] | None:
    """p50 and p95 of (alert emitted − transaction sent), seconds; None without alerts of ``kind``."""
    lat = latencies(alerts, kind)
    if lat.size == 0:
        return None
    return float(np.percentile(lat, 50)), float(np.percentile(lat, 95))
