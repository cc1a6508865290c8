"""build_report: the stream's alerts and step statistics joined with the labels the stream never saw.

Pure and Kafka-free: the caller collects the records, this turns them into a :class:`Report`.
Records that do not fit (another replay, unknown transactions, steps outside the period, copies)
are never dropped silently: they are counted and listed under ``warnings``.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from model_store.arrival import ahead
from replay.data.dataset import EllipticDataset
from replay.report.evaluate import (
    defined,
    distinct_alerts,
    flag_rows,
    latencies,
    resolution_seconds,
    score_flags,
    verdict_sets,
)
from replay.report.model import (
    AlertCounts,
    DegreeFit,
    Densification,
    DensificationFitRow,
    Early,
    Header,
    Histogram,
    Label,
    Latency,
    LatencySection,
    Metrics,
    Neighbour,
    Report,
    ReportWarning,
    StepAlertCounts,
    StepMetrics,
    StepRow,
    TopAlert,
)
from txmon.core.contracts import ALERT_KINDS, VERDICTS, Alert, PowerLawFit, StepStats, Verdict
from txmon.core.elliptic_format import ILLICIT, LICIT, SHUTDOWN_STEP, UNKNOWN
from txmon.core.fits import fit_densification

TOP_N = 20
HIST_BINS = 30
# The alert kind whose explanation and final score describe the transaction best: the latest one emitted.
KIND_PRIORITY = ("final", "confirmed", "retracted", "arrival")


# -- meta: the caller's free-form key/value rows, made into plain, sorted JSON values ---------------------------------


def _json_value(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _json_value(v[k]) for k in sorted(v, key=str)}
    if isinstance(v, list | tuple):
        return [_json_value(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float):
        return defined(v)
    if v is None or isinstance(v, bool | int | str):
        return v
    if isinstance(v, np.ndarray):
        return _json_value(v.tolist())
    return str(v)  # Path, datetime, ...: as the caller would print them


# -- the label join ---------------------------------------------------------------------------------------------------


def _labels(ds: EllipticDataset, tx_ids: Sequence[int]) -> tuple[NDArray[np.bool_], NDArray[np.int64]]:
    """Whether each id is in the data set, and its row (−1 when not)."""
    return ds.index.find(np.asarray(tx_ids, dtype=np.int64))


def _label_name(ds: EllipticDataset, row: int) -> Label:
    if row < 0:
        return "not in data set"
    names: dict[int, Label] = {ILLICIT: "illicit", LICIT: "licit", UNKNOWN: "unknown"}
    return names[int(ds.labels[row])]


# -- sections ---------------------------------------------------------------------------------------------------------


def _ahead_tx(ds: EllipticDataset) -> NDArray[np.int64]:
    """Per row: the transactions of its step still to come when its arrival score was known (a replay sends a step
    in row order; model_store.arrival)."""
    steps = ds.steps.astype(np.int64)
    order = np.argsort(steps, kind="stable")
    seq = np.empty(ds.n_nodes, dtype=np.int64)
    seq[order] = np.arange(ds.n_nodes) - np.searchsorted(steps[order], steps[order])
    return ahead(seq, np.bincount(steps)[steps])


def _early(ds: EllipticDataset, alerts: list[Alert], flags: dict[Verdict, NDArray[np.bool_]], first: int,
           last: int) -> list[Early]:
    """Arrival against final over the period, before and after the shutdown within it, and each step."""
    illicit = ds.labels == ILLICIT
    labelled = ds.labels != UNKNOWN
    retracted = flag_rows(ds, {a.tx_id for a in alerts if a.kind == "retracted"})
    ahead_tx = _ahead_tx(ds)
    resolved = resolution_seconds(alerts)
    ahead_s = np.full(ds.n_nodes, np.nan)
    if resolved:
        found, rows = ds.index.find(np.fromiter(resolved, dtype=np.int64))
        ahead_s[rows[found]] = np.fromiter(resolved.values(), dtype=np.float64)[found]

    def early(name: str, m: NDArray[np.bool_]) -> Early:
        lab = m & labelled
        a, f = score_flags(flags["arrival"][lab], illicit[lab]), score_flags(flags["final"][lab], illicit[lab])
        alerted = m & flags["arrival"]
        n, r = int(alerted.sum()), int((alerted & retracted).sum())
        secs = ahead_s[alerted]
        secs = secs[np.isfinite(secs)]
        return Early(steps=name, arrival=a, final=f,
                     f1_ratio=a.f1 / f.f1 if a.f1 is not None and f.f1 else None, arrival_alerts=n, retracted=r,
                     retraction_rate=r / n if n else None,
                     ahead_tx=float(np.median(ahead_tx[alerted])) if n else None,
                     ahead_s=float(np.median(secs)) if secs.size else None)

    in_period = (ds.steps >= first) & (ds.steps <= last)
    out = [early(f"{first}-{last}" if first != last else str(first), in_period)]
    if first < SHUTDOWN_STEP <= last:
        out += [early(f"{first}-{SHUTDOWN_STEP - 1}", in_period & (ds.steps < SHUTDOWN_STEP)),
                early(f"{SHUTDOWN_STEP}-{last}", in_period & (ds.steps >= SHUTDOWN_STEP))]
    return out + [early(str(s), ds.steps == s) for s in range(first, last + 1)]


def _metrics(ds: EllipticDataset, alerts: list[Alert], verdicts: dict[str, set[int]], first: int,
             last: int) -> Metrics:
    period = (ds.steps >= first) & (ds.steps <= last)
    labelled = period & (ds.labels != UNKNOWN)
    illicit = ds.labels == ILLICIT
    flags = {v: flag_rows(ds, verdicts[v]) for v in VERDICTS}
    overall = {v: score_flags(flags[v][labelled], illicit[labelled]) for v in VERDICTS}
    per_step = []
    for step in range(first, last + 1):
        in_step = ds.steps == step
        m = in_step & labelled
        per_step.append(StepMetrics(
            step=step, transactions=int(in_step.sum()), labelled=int(m.sum()), illicit=int((m & illicit).sum()),
            arrival=score_flags(flags["arrival"][m], illicit[m]), final=score_flags(flags["final"][m], illicit[m]),
        ))
    return Metrics(
        overall=overall,
        confusion={v: [[s.tn, s.fp], [s.fn, s.tp]] for v, s in overall.items()},
        per_step=per_step,
        flagged={v: int((flags[v] & period).sum()) for v in VERDICTS},
        early=_early(ds, alerts, flags, first, last),
    )


def _alert_counts(received: int, alerts: list[Alert], first: int, last: int) -> AlertCounts:
    per_step: dict[int, Counter[str]] = {s: Counter() for s in range(first, last + 1)}
    for a in alerts:
        per_step.setdefault(a.step, Counter())[a.kind] += 1
    by_kind = Counter(a.kind for a in alerts)
    return AlertCounts(
        received=received, distinct=len(alerts), by_kind={k: by_kind[k] for k in ALERT_KINDS},
        per_step=[StepAlertCounts(step=s, **{k: c[k] for k in ALERT_KINDS}) for s, c in sorted(per_step.items())],
    )


def latency_stats(values: NDArray[np.float64]) -> Latency:
    """p50/p90/p99/max and a histogram of ``values`` (seconds)."""
    if values.size == 0:
        return Latency(count=0, p50=None, p90=None, p99=None, max=None, histogram=None)
    p50, p90, p99 = (float(x) for x in np.percentile(values, [50, 90, 99]))
    counts, edges = np.histogram(values, bins=HIST_BINS)
    return Latency(count=int(values.size), p50=p50, p90=p90, p99=p99, max=float(values.max()),
                   histogram=Histogram(edges=[float(e) for e in edges], counts=[int(c) for c in counts]))


def _fit(f: PowerLawFit | None) -> DegreeFit | None:
    if f is None:
        return None
    return DegreeFit(alpha=defined(f.alpha), xmin=defined(f.xmin), ks_distance=defined(f.ks_distance), n_tail=f.n_tail,
                     lognormal_loglik_ratio=defined(f.lognormal_loglik_ratio), lognormal_p=defined(f.lognormal_p))


def _step_row(s: StepStats, sent: float | None) -> StepRow:
    return StepRow(
        step=s.step, nodes_step=s.nodes_step, edges_step=s.edges_step, nodes_total=s.nodes_total,
        edges_total=s.edges_total, avg_degree=defined(s.avg_degree), density=defined(s.density),
        clustering=defined(s.clustering), triangles_step=s.triangles_step, in_degree_fit=_fit(s.in_degree_fit),
        out_degree_fit=_fit(s.out_degree_fit), densification_alpha=defined(s.densification_alpha),
        densification_r2=defined(s.densification_r2), densification_alpha_window=defined(s.densification_alpha_window),
        window=s.window, step_close_s=None if sent is None else defined(s.computed_at - sent),
    )


def _densification(rows: list[StepRow]) -> Densification:
    if not rows:
        return Densification(from_step=None, alpha_cumulative=None, r2_cumulative=None, alpha_window=None,
                             window=None, fit=None, fit_error="no step statistics in the period")
    last = rows[-1]
    fit, error = None, None
    try:
        f = fit_densification([r.nodes_total for r in rows], [r.edges_total for r in rows])
        fit = DensificationFitRow(alpha=defined(f.alpha), intercept=defined(f.intercept), r2=defined(f.r2),
                                  stderr=defined(f.stderr), n_points=f.n_points)
    except ValueError as e:
        error = str(e)
    return Densification(from_step=last.step, alpha_cumulative=last.densification_alpha,
                         r2_cumulative=last.densification_r2, alpha_window=last.densification_alpha_window,
                         window=last.window, fit=fit, fit_error=error)


def _top_alerts(ds: EllipticDataset, alerts: list[Alert], verdicts: dict[str, set[int]]) -> list[TopAlert]:
    """One row per alerted transaction, ranked by its final score, else its arrival score (ties: tx id)."""
    by_tx: dict[int, list[Alert]] = defaultdict(list)
    for a in sorted(alerts, key=lambda a: KIND_PRIORITY.index(a.kind)):
        by_tx[a.tx_id].append(a)  # latest kind first
    scored = []
    for tx_id, txa in by_tx.items():
        final = defined(next((a.final_score for a in txa if a.final_score is not None), None))
        arrival = defined(next((a.arrival_score for a in txa if a.kind == "arrival"), txa[0].arrival_score))
        score = final if final is not None else arrival
        scored.append(((-score if score is not None else math.inf, tx_id), tx_id, txa, final, arrival, score))
    top = sorted(scored, key=lambda r: r[0])[:TOP_N]
    # The explanation of the latest alert that carries one.
    explained = {tx_id: next((a for a in txa if a.neighbours), txa[0]).neighbours for _, tx_id, txa, *_ in top}
    ids = [tx_id for _, tx_id, *_ in top] + [n.tx_id for nbs in explained.values() for n in nbs]
    _, rows = _labels(ds, ids)
    row_of = dict(zip(ids, rows.tolist(), strict=True))
    out = []
    for rank, (_, tx_id, txa, final, arrival, score) in enumerate(top, start=1):
        row = row_of[tx_id]
        out.append(TopAlert(
            rank=rank, tx_id=tx_id, step=int(ds.steps[row]) if row >= 0 else txa[0].step,
            kinds=[k for k in ALERT_KINDS if any(a.kind == k for a in txa)], arrival_score=arrival, final_score=final,
            score=score, flagged_arrival=tx_id in verdicts["arrival"], flagged_final=tx_id in verdicts["final"],
            label=_label_name(ds, row),
            neighbours=[Neighbour(tx_id=n.tx_id, weight=defined(n.weight), label=_label_name(ds, row_of[n.tx_id]))
                        for n in explained[tx_id]],
        ))
    return out


def _warn(code: str, message: str, items: Sequence[int | str]) -> ReportWarning:
    return ReportWarning(code=code, message=message, count=len(items), items=sorted(items))


def _stats_rows(ds: EllipticDataset, stats: list[StepStats], replay_id: str, first: int, last: int,
                sent_times: dict[int, float]) -> tuple[list[StepRow], list[ReportWarning]]:
    warnings: list[ReportWarning] = []
    other = [s for s in stats if s.replay_id != replay_id]
    if other:
        warnings.append(_warn("other_replay_stats", "step statistics records of other replays (not used)",
                              [f"{s.replay_id}:{s.step}" for s in other]))
    ours = [s for s in stats if s.replay_id == replay_id]
    outside = sorted({s.step for s in ours if not first <= s.step <= last})
    if outside:
        warnings.append(_warn("stats_outside_period", "steps outside the period with a statistics record "
                                                      "(not used)", outside))
    by_step: dict[int, list[StepStats]] = defaultdict(list)
    for s in ours:
        if first <= s.step <= last:
            by_step[s.step].append(s)
    # A step re-finalised after a lost lease sends its statistics again: keep the latest computed.
    kept = {step: max(recs, key=lambda s: (s.computed_at, s.model_dump_json())) for step, recs in by_step.items()}
    repeated = sorted(step for step, recs in by_step.items() if len(recs) > 1)
    if repeated:
        warnings.append(_warn("duplicate_stats", "steps with more than one statistics record (the latest "
                                                 "computed is used)", repeated))
    present = set(np.unique(ds.steps[(ds.steps >= first) & (ds.steps <= last)]).tolist())
    missing = [s for s in range(first, last + 1) if s not in kept and s in present]
    if missing:
        warnings.append(_warn("missing_step_stats", "steps of the period with transactions but no statistics "
                                                    "record", missing))
    partial = sorted(s for s, rec in kept.items() if rec.missing_transactions or rec.dangling_edges)
    if partial:
        warnings.append(_warn("partial_steps", "steps that closed without some of their transactions or edges "
                                               "(their statistics and final scores are partial)", partial))
    empty = [s for s in range(first, last + 1) if s not in present]
    if empty:
        warnings.append(_warn("empty_steps", "steps of the period with no transactions in the data set (nothing "
                                             "is sent for them)", empty))
    rows = [_step_row(kept[s], sent_times.get(s)) for s in sorted(kept)]
    return rows, warnings


def _alert_warnings(ds: EllipticDataset, alerts: list[Alert], first: int, last: int, model_version: str,
                    threshold: float, arrival_threshold: float) -> list[ReportWarning]:
    warnings: list[ReportWarning] = []
    known, rows = _labels(ds, [a.tx_id for a in alerts])
    ds_steps = np.full(rows.shape, -1, dtype=np.int64)
    ds_steps[known] = ds.steps[rows[known]]

    def add(code: str, message: str, ids: list[int | str]) -> None:
        if ids:
            warnings.append(_warn(code, message, ids))

    add("unknown_tx", "alerts for transactions not in the data set (no label: not evaluated)",
        [a.alert_id for a, k in zip(alerts, known, strict=True) if not k])
    add("outside_period", f"alerts for transactions of steps outside {first}..{last} (not evaluated)",
        [a.alert_id for a, s in zip(alerts, ds_steps, strict=True) if s >= 0 and not first <= s <= last])
    add("step_mismatch", "alerts naming another step than the data set's (evaluated at the data set's step)",
        [a.alert_id for a, s in zip(alerts, ds_steps, strict=True) if s >= 0 and s != a.step])
    kinds: dict[int, set[str]] = defaultdict(set)
    for a in alerts:
        kinds[a.tx_id].add(a.kind)
    # An arrival alert alone: its step had not closed when the alerts were collected.
    valid = ({"arrival"}, {"final"}, {"arrival", "retracted"}, {"arrival", "confirmed"})
    add("inconsistent_alerts", "transactions whose alerts contradict each other (e.g. a retraction without an "
                               "arrival alert, or both a confirmation and a retraction): verdicts still follow "
                               "the rule",
        [tx for tx, k in kinds.items() if k not in valid])
    add("model_mismatch", f"alerts from another model version than {model_version}",
        [a.alert_id for a in alerts if a.model_version != model_version])
    add("threshold_mismatch", f"alerts with another threshold than {arrival_threshold:g} (arrival alerts) or "
                              f"{threshold:g} (the others)" if arrival_threshold != threshold else
        f"alerts with another threshold than {threshold:g}",
        [a.alert_id for a in alerts if not math.isclose(a.threshold, arrival_threshold if a.kind == "arrival"
                                                        else threshold, rel_tol=1e-9, abs_tol=1e-12)])
    add("negative_latency", "alerts emitted before their transaction was sent (the producer's and the worker's "
                            "clocks disagree)", [a.alert_id for a in alerts if a.processing_time < a.event_time])
    return warnings


def _plots(alerts: list[Alert], latency: LatencySection, rows: list[StepRow]) -> dict[str, str]:
    plots = {"metrics_per_step": "metrics_per_step.png", "confusion": "confusion.png"}
    if alerts:
        plots["alerts_per_step"] = "alerts_per_step.png"
        plots["early"] = "early.png"
    if any(lat.count for lat in latency.event_to_alert.values()) or (latency.step_close and latency.step_close.count):
        plots["latency"] = "latency.png"
    if rows:
        plots["step_stats"] = "step_stats.png"
        plots["densification"] = "densification.png"
    return plots


def build_report(ds: EllipticDataset, alerts: list[Alert], stats: list[StepStats], *, replay_id: str,
                 first_step: int, last_step: int, model_version: str, threshold: float,
                 arrival_threshold: float | None = None, sent_times: dict[int, float] | None = None,
                 meta: dict | None = None) -> Report:
    """The report of one replay of steps ``first_step..last_step`` of ``ds``.

    ``threshold``: the served GCN's; ``arrival_threshold``: its arrival model's (None: the same).
    ``alerts`` and ``stats``: the records the stream published, in any order, copies allowed (an alert
    id counts once). ``sent_times``: step → Unix time the step's end marker was sent; with it the
    report adds each step's close time (its statistics' computed_at minus that). ``meta``: free-form
    rows for the header (elapsed time, throughput, ...); JSON-like values, others are shown as text.
    """
    if first_step > last_step:
        raise ValueError(f"first_step {first_step} is after last_step {last_step}")
    warnings: list[ReportWarning] = []
    other = sorted({a.alert_id for a in alerts if a.replay_id != replay_id})
    if other:
        warnings.append(_warn("other_replay_alerts", f"alerts of other replays than {replay_id} (not used)", other))
    ours = [a for a in alerts if a.replay_id == replay_id]
    distinct, copies = distinct_alerts(ours)
    if copies:
        warnings.append(_warn("duplicate_alerts", "alerts received more than once (at-least-once delivery): each "
                                                  "counts once", list(copies)))
    kept = {a.alert_id: a for a in distinct}
    conflicting = sorted({a.alert_id for a in ours if a.alert_id in copies and a != kept[a.alert_id]})
    if conflicting:
        warnings.append(_warn("conflicting_duplicates", "alert ids received with different contents (the earliest "
                                                        "emitted is used)", conflicting))
    warnings += _alert_warnings(ds, distinct, first_step, last_step, model_version, threshold,
                                threshold if arrival_threshold is None else arrival_threshold)

    rows, stats_warnings = _stats_rows(ds, stats, replay_id, first_step, last_step, sent_times or {})
    warnings += stats_warnings

    period = (ds.steps >= first_step) & (ds.steps <= last_step)
    labels = ds.labels[period]
    header = Header(
        replay_id=replay_id, first_step=first_step, last_step=last_step, model_version=model_version,
        threshold=threshold, arrival_threshold=arrival_threshold, transactions=int(period.sum()),
        labelled=int((labels != UNKNOWN).sum()),
        illicit=int((labels == ILLICIT).sum()), licit=int((labels == LICIT).sum()),
        unknown=int((labels == UNKNOWN).sum()), meta=_json_value(meta or {}),
    )
    verdicts = verdict_sets(distinct)
    closes = np.sort(np.array([r.step_close_s for r in rows if r.step_close_s is not None], dtype=np.float64))
    latency = LatencySection(
        event_to_alert={k: latency_stats(latencies(distinct, k)) for k in ALERT_KINDS},
        step_close=latency_stats(closes) if sent_times else None,
    )
    return Report(
        header=header,
        metrics=_metrics(ds, distinct, verdicts, first_step, last_step),
        alerts=_alert_counts(len(ours), distinct, first_step, last_step),
        latency=latency,
        steps=rows,
        densification=_densification(rows),
        top_alerts=_top_alerts(ds, distinct, verdicts),
        warnings=warnings,
        plots=_plots(distinct, latency, rows),
    )

