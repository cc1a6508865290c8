"""The replay report on a hand-built data set and hand-built stream records.

Every number is recomputed here by plain counting from the tables below, never by calling the
report's code or scikit-learn.
"""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path

import numpy as np
import pytest

from replay.data.dataset import EllipticDataset
from replay.report import (
    Report,
    alerted_sets,
    build_report,
    distinct_alerts,
    evaluate_alerts,
    verdict_sets,
    write_report,
)
from replay.report import plots as report_plots
from txmon.core.contracts import ALERT_KINDS, Alert, Influence, PowerLawFit, StepStats
from txmon.core.elliptic_format import N_FEATURES

R = "r1"
FIRST, LAST = 1, 5  # step 5 has no transactions; step 6 lies outside the period
MODEL, THRESHOLD = "gcn-v7", 0.5
ILL, LIC, UNK = 1, 0, -1
# tx id → (step, label)
TXS = {
    11: (1, ILL), 12: (1, ILL), 13: (1, LIC), 14: (1, LIC), 15: (1, UNK),
    21: (2, LIC), 22: (2, LIC), 23: (2, UNK),  # no labelled illicit transaction
    31: (3, ILL), 32: (3, LIC), 33: (3, ILL),
    41: (4, LIC),  # labelled, nothing flagged, no illicit: every score undefined
    61: (6, ILL),  # outside the period
}
UNKNOWN_TX = 999
# (tx id, kind, step, arrival score, final score, latency s, neighbours)
ALERTS = [
    (11, "arrival", 1, 0.90, None, 0.25, [(12, 0.5), (13, -0.1)]),
    (12, "final", 1, 0.40, 0.80, 3.00, [(11, 0.7)]),
    (13, "arrival", 1, 0.70, None, 0.50, [(12, 0.4)]),
    (13, "retracted", 1, 0.70, 0.20, 2.00, [(14, 0.2)]),
    (15, "arrival", 1, 0.95, None, 1.00, []),
    (21, "arrival", 2, 0.60, None, 0.75, []),
    (31, "arrival", 3, 0.55, None, 0.10, []),
    (31, "retracted", 3, 0.55, 0.30, 4.00, []),
    (33, "final", 3, 0.45, 0.85, 5.00, [(31, 0.3), (UNKNOWN_TX, 0.1)]),
    (61, "arrival", 6, 0.70, None, 0.20, []),
    (UNKNOWN_TX, "arrival", 3, 0.65, None, 0.30, []),
]
T0 = 1_700_000_000.0


def make_ds() -> EllipticDataset:
    ids = np.array(sorted(TXS), dtype=np.int64)
    steps = np.array([TXS[t][0] for t in ids], dtype=np.int16)
    labels = np.array([TXS[t][1] for t in ids], dtype=np.int8)
    return EllipticDataset(ids, steps, np.zeros((ids.size, N_FEATURES), np.float32), labels,
                           np.array([[11, 12], [31, 33]], dtype=np.int64))


def alert(tx: int, kind: str, step: int, arr: float, fin: float | None, lat: float,
          nbs: list[tuple[int, float]], *, replay_id: str = R, model: str = MODEL) -> Alert:
    event = T0 + step * 10 + tx / 1000
    return Alert(alert_id=f"{replay_id}:{tx}:{kind}", kind=kind, replay_id=replay_id, tx_id=tx, step=step,
                 arrival_score=arr, final_score=fin, threshold=THRESHOLD, model_version=model,
                 neighbours=[Influence(tx_id=t, weight=w) for t, w in nbs], event_time=event,
                 processing_time=event + lat)


def stats(step: int, nodes: int, edges: int, nodes_total: int, edges_total: int, *, replay_id: str = R,
          computed_at: float | None = None) -> StepStats:
    fit = PowerLawFit(alpha=2.5, xmin=2.0, ks_distance=0.05, n_tail=12, lognormal_loglik_ratio=0.3, lognormal_p=0.6)
    return StepStats(replay_id=replay_id, step=step, nodes_step=nodes, edges_step=edges, nodes_total=nodes_total,
                     edges_total=edges_total, avg_degree=edges / nodes, density=edges / (nodes * (nodes - 1)),
                     clustering=0.01 * step, triangles_step=step, in_degree_fit=fit, out_degree_fit=None,
                     densification_alpha=1.0 + step / 100, densification_r2=0.99, densification_alpha_window=1.1,
                     window=10, computed_at=computed_at if computed_at is not None else T0 + step * 10 + 9)


ALERT_RECORDS = [alert(*a) for a in ALERTS]
STATS = [
    stats(1, 100, 110, 100, 110),
    stats(3, 200, 240, 300, 350, computed_at=T0 + 35),
    stats(3, 200, 240, 300, 350, computed_at=T0 + 39),  # re-finalised: the later one counts
    stats(4, 50, 60, 350, 410),
    stats(6, 10, 10, 360, 420),  # outside the period
    stats(1, 5, 5, 5, 5, replay_id="other"),
]  # step 2 has transactions but no record
SENT = {1: T0 + 18.0, 3: T0 + 38.0, 4: T0 + 48.5}
META = {"throughput_tx_s": 1234.5, "elapsed_s": 3.25, "undefined": float("nan"), "source": Path("/data/x")}


def build(alerts: list[Alert] | None = None, stats_: list[StepStats] | None = None) -> Report:
    return build_report(make_ds(), ALERT_RECORDS if alerts is None else alerts, STATS if stats_ is None else stats_,
                        replay_id=R, first_step=FIRST, last_step=LAST, model_version=MODEL, threshold=THRESHOLD,
                        sent_times=SENT, meta=META)


@pytest.fixture(scope="module")
def report() -> Report:
    # A copy of one alert (at-least-once delivery) and an alert of another replay ride along.
    return build(ALERT_RECORDS + [ALERT_RECORDS[0], alert(11, "arrival", 1, 0.9, None, 0.1, [], replay_id="old")])


# -- the expected values, by plain counting ---------------------------------------------------------------------------


def kinds_of(tx: int) -> set[str]:
    return {k for t, k, *_ in ALERTS if t == tx}


def flagged(verdict: str) -> set[int]:
    txs = {t for t, *_ in ALERTS}
    if verdict == "arrival":
        return {t for t in txs if "arrival" in kinds_of(t)}
    return {t for t in txs if kinds_of(t) & {"arrival", "final"} and "retracted" not in kinds_of(t)}


def counted(verdict: str, step: int | None = None) -> dict:
    tp = fp = fn = tn = 0
    for tx, (s, label) in TXS.items():
        if label == UNK or not FIRST <= s <= LAST or (step is not None and s != step):
            continue
        hit = tx in flagged(verdict)
        if label == ILL and hit:
            tp += 1
        elif label == ILL:
            fn += 1
        elif hit:
            fp += 1
        else:
            tn += 1
    p = tp / (tp + fp) if tp + fp else None
    r = tp / (tp + fn) if tp + fn else None
    f1 = 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else None
    return {"precision": p, "recall": r, "f1": f1, "tp": tp, "fp": fp, "fn": fn, "tn": tn, "n": tp + fp + fn + tn}


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    pos = (len(xs) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def close(a: float | None, b: float | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and math.isclose(a, b, abs_tol=1e-9))


def same_scores(got: object, want: dict) -> None:
    got = got.model_dump()  # type: ignore[attr-defined]
    for key, value in want.items():
        assert close(got[key], value) if key in ("precision", "recall", "f1") else got[key] == value, (key, got, want)


# -- metrics ----------------------------------------------------------------------------------------------------------


def test_verdicts_arrival_then_retracted_and_final_only() -> None:
    v = verdict_sets(ALERT_RECORDS)
    assert 13 in v["arrival"] and 13 not in v["final"]  # arrival, then retracted
    assert 31 in v["arrival"] and 31 not in v["final"]
    assert 12 in v["final"] and 12 not in v["arrival"]  # final score only
    assert 11 in v["arrival"] and 11 in v["final"]
    assert v == {"arrival": flagged("arrival"), "final": flagged("final")}


@pytest.mark.parametrize("verdict", ["arrival", "final"])
def test_overall_metrics_and_confusion_match_counting(report: Report, verdict: str) -> None:
    want = counted(verdict)
    same_scores(report.metrics.overall[verdict], want)
    assert report.metrics.confusion[verdict] == [[want["tn"], want["fp"]], [want["fn"], want["tp"]]]
    in_period = {t for t, (s, _) in TXS.items() if FIRST <= s <= LAST}
    assert report.metrics.flagged[verdict] == len(flagged(verdict) & in_period)


def test_overall_values_pinned() -> None:
    # The counting above, done by hand once. Arrival: TP 11, 31; FP 13, 21; FN 12, 33; TN 14, 22, 32, 41.
    # Final: TP 11, 12, 33; FP 21; FN 31; TN 13, 14, 22, 32, 41.
    assert counted("arrival") == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "tp": 2, "fp": 2, "fn": 2, "tn": 4,
                                  "n": 10}
    assert counted("final") == {"precision": 0.75, "recall": 0.75, "f1": 0.75, "tp": 3, "fp": 1, "fn": 1, "tn": 5,
                                "n": 10}


@pytest.mark.parametrize("verdict", ["arrival", "final"])
def test_per_step_metrics_match_counting(report: Report, verdict: str) -> None:
    assert [m.step for m in report.metrics.per_step] == list(range(FIRST, LAST + 1))
    for m in report.metrics.per_step:
        same_scores(getattr(m, verdict), counted(verdict, m.step))
        assert m.transactions == sum(1 for s, _ in TXS.values() if s == m.step)
        assert m.labelled == sum(1 for s, lab in TXS.values() if s == m.step and lab != UNK)
        assert m.illicit == sum(1 for s, lab in TXS.values() if s == m.step and lab == ILL)


def test_undefined_scores_are_none_not_nan(report: Report) -> None:
    by_step = {m.step: m for m in report.metrics.per_step}
    # Step 2: a licit transaction flagged, no labelled illicit: precision 0, recall undefined, F1 0.
    for s in (by_step[2].arrival, by_step[2].final):
        assert (s.precision, s.recall, s.f1, s.fp) == (0.0, None, 0.0, 1)
    # Step 4: nothing flagged, no illicit: all undefined. Step 5: no transactions at all.
    for s in (by_step[4].arrival, by_step[5].final):
        assert (s.precision, s.recall, s.f1) == (None, None, None)
    assert by_step[5].final.n == 0
    # Step 3, arrival: an illicit transaction missed, one caught: precision 1, recall 1/2.
    assert (by_step[3].arrival.precision, by_step[3].arrival.recall) == (1.0, 0.5)
    assert "NaN" not in report.model_dump_json()


def test_header(report: Report) -> None:
    h = report.header
    in_period = [lab for s, lab in TXS.values() if FIRST <= s <= LAST]
    assert (h.replay_id, h.first_step, h.last_step, h.model_version, h.threshold) == (R, FIRST, LAST, MODEL, THRESHOLD)
    assert (h.transactions, h.labelled, h.illicit, h.licit, h.unknown) == (
        len(in_period), sum(lab != UNK for lab in in_period), in_period.count(ILL), in_period.count(LIC),
        in_period.count(UNK))
    assert list(h.meta) == sorted(META)
    assert h.meta == {"elapsed_s": 3.25, "source": "/data/x", "throughput_tx_s": 1234.5, "undefined": None}


# -- alerts, latency, statistics, top alerts --------------------------------------------------------------------------


def test_alert_counts(report: Report) -> None:
    a = report.alerts
    assert (a.received, a.distinct) == (len(ALERTS) + 1, len(ALERTS))
    assert a.by_kind == {k: sum(1 for _, kind, *_ in ALERTS if kind == k) for k in ALERT_KINDS}
    steps = sorted({s for _, _, s, *_ in ALERTS} | set(range(FIRST, LAST + 1)))
    assert [c.step for c in a.per_step] == steps
    for c in a.per_step:
        for k in ALERT_KINDS:
            assert getattr(c, k) == sum(1 for _, kind, s, *_ in ALERTS if s == c.step and kind == k)


def test_duplicate_alerts_count_once(report: Report) -> None:
    once, twice = build().model_dump(), report.model_dump()  # the same alerts without / with a copy of one
    assert twice["alerts"].pop("received") == once["alerts"].pop("received") + 1
    for section in ("metrics", "alerts", "latency", "top_alerts"):
        assert twice[section] == once[section], section
    dup = {w.code: w for w in report.warnings}["duplicate_alerts"]
    assert (dup.count, dup.items) == (1, [ALERT_RECORDS[0].alert_id])
    kept, copies = distinct_alerts([ALERT_RECORDS[0], ALERT_RECORDS[1], ALERT_RECORDS[0]])
    assert [k.alert_id for k in kept] == sorted([ALERT_RECORDS[0].alert_id, ALERT_RECORDS[1].alert_id])
    assert copies == {ALERT_RECORDS[0].alert_id: 2}


def test_latency_percentiles_per_kind(report: Report) -> None:
    for kind in ALERT_KINDS:
        xs = [lat for _, k, _, _, _, lat, _ in ALERTS if k == kind]
        got = report.latency.event_to_alert[kind]
        assert got.count == len(xs)
        if not xs:  # no alert of the kind in the fixture
            continue
        for q in (50, 90, 99):
            assert math.isclose(getattr(got, f"p{q}"), percentile(xs, q), abs_tol=1e-6), (kind, q)
        assert math.isclose(got.max, max(xs), abs_tol=1e-6)
        assert got.histogram is not None and sum(got.histogram.counts) == len(xs)
        assert len(got.histogram.edges) == len(got.histogram.counts) + 1
    # Step close: the kept record's computed_at minus the end marker's send time.
    closes = [T0 + 19 - SENT[1], T0 + 39 - SENT[3], T0 + 49 - SENT[4]]
    sc = report.latency.step_close
    assert sc is not None and sc.count == 3 and math.isclose(sc.p50, percentile(closes, 50), abs_tol=1e-6)
    assert [r.step_close_s for r in report.steps] == pytest.approx(closes)


def test_step_statistics_and_densification(report: Report) -> None:
    assert [r.step for r in report.steps] == [1, 3, 4]
    row = report.steps[1]
    assert (row.nodes_step, row.edges_step, row.nodes_total, row.edges_total, row.triangles_step) == (
        200, 240, 300, 350, 3)
    assert row.avg_degree == pytest.approx(1.2) and row.clustering == pytest.approx(0.03)
    assert row.in_degree_fit is not None and row.in_degree_fit.alpha == 2.5 and row.out_degree_fit is None
    d = report.densification
    assert (d.from_step, d.alpha_cumulative, d.alpha_window, d.window) == (4, 1.04, 1.1, 10)
    lx, ly = np.log([100, 300, 350]), np.log([110, 350, 410])
    slope, intercept = np.polyfit(lx, ly, 1)
    assert d.fit is not None and d.fit.n_points == 3
    assert d.fit.alpha == pytest.approx(slope) and d.fit.intercept == pytest.approx(intercept)


def test_top_alerts_ranked_by_final_else_arrival_score(report: Report) -> None:
    score: dict[int, float] = {}
    for tx, _kind, _, arr, fin, _, _ in ALERTS:
        if fin is not None or tx not in score:
            score[tx] = fin if fin is not None else arr
    want = sorted(score, key=lambda t: (-score[t], t))
    top = report.top_alerts
    assert [t.tx_id for t in top] == want[:20]
    assert [t.rank for t in top] == list(range(1, len(top) + 1))
    by_tx = {t.tx_id: t for t in top}
    names = {ILL: "illicit", LIC: "licit", UNK: "unknown"}
    for t in top:
        assert t.score == pytest.approx(score[t.tx_id])
        assert t.label == (names[TXS[t.tx_id][1]] if t.tx_id in TXS else "not in data set")
        assert t.flagged_arrival == (t.tx_id in flagged("arrival"))
        assert t.flagged_final == (t.tx_id in flagged("final"))
    # The explanation of the latest alert: 13's retraction, not its arrival alert.
    assert [(n.tx_id, n.weight, n.label) for n in by_tx[13].neighbours] == [(14, 0.2, "licit")]
    assert [(n.tx_id, n.label) for n in by_tx[33].neighbours] == [(31, "illicit"), (UNKNOWN_TX, "not in data set")]
    assert by_tx[13].kinds == ["arrival", "retracted"] and by_tx[13].final_score == 0.2
    assert by_tx[11].final_score is None and by_tx[11].arrival_score == 0.9


# -- warnings ---------------------------------------------------------------------------------------------------------


def test_steps_whose_statistics_say_they_are_partial_are_listed() -> None:
    assert "partial_steps" not in {x.code for x in build().warnings}
    partial = [s.model_copy(update={"missing_transactions": 2}) if s.step == 4 else
               s.model_copy(update={"dangling_edges": 1}) if s.step == 1 and s.replay_id == R else s for s in STATS]
    w = {x.code: x for x in build(stats_=partial).warnings}
    assert w["partial_steps"].items == [1, 4]


def test_warnings_list_what_does_not_fit(report: Report) -> None:
    w = {x.code: x for x in report.warnings}
    assert w["missing_step_stats"].items == [2]
    assert w["empty_steps"].items == [5]
    assert w["unknown_tx"].items == [f"{R}:{UNKNOWN_TX}:arrival"]
    assert w["outside_period"].items == [f"{R}:61:arrival"]
    assert w["stats_outside_period"].items == [6]
    assert w["duplicate_stats"].items == [3]
    assert w["other_replay_alerts"].items == ["old:11:arrival"]
    assert w["other_replay_stats"].items == ["other:1"]
    assert all(x.count == len(x.items) for x in report.warnings)
    assert not {"step_mismatch", "inconsistent_alerts", "model_mismatch", "negative_latency"} & set(w)


def test_contradictory_records_are_warned_about() -> None:
    extra = [
        alert(14, "retracted", 1, 0.6, 0.1, 1.0, []),  # a retraction without an arrival alert
        alert(22, "arrival", 3, 0.6, None, -0.5, [], model="gcn-v6"),  # wrong step, other model, sent "after"
    ]
    w = {x.code: x for x in build(ALERT_RECORDS + extra).warnings}
    assert w["inconsistent_alerts"].items == [14]
    assert w["step_mismatch"].items == [f"{R}:22:arrival"]
    assert w["model_mismatch"].items == [f"{R}:22:arrival"]
    assert w["negative_latency"].items == [f"{R}:22:arrival"]
    # An arrival alert confirmed at step close is the lifecycle; confirmed and also retracted is a contradiction.
    resolved = [alert(15, "confirmed", 1, 0.95, 0.9, 2.0, []), alert(13, "confirmed", 1, 0.7, 0.2, 2.5, [])]
    w = {x.code: x for x in build(ALERT_RECORDS + resolved).warnings}
    assert w["inconsistent_alerts"].items == [13]


# -- repeatability and files ------------------------------------------------------------------------------------------


def test_write_report_files(report: Report, tmp_path: Path) -> None:
    paths = write_report(report, tmp_path / "a")
    assert {"json", "html"} <= set(paths) and all(p.is_file() for p in paths.values())
    text = paths["json"].read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == report.model_dump(mode="json")
    assert Report.model_validate_json(text) == report

    html = paths["html"].read_text()
    referenced = re.findall(r'<img src="([^"]+)"', html)
    assert sorted(referenced) == sorted(report.plots.values())
    assert set(report.plots) == {"metrics_per_step", "confusion", "alerts_per_step", "early", "latency",
                                 "step_stats", "densification"}
    for name in referenced:
        png = tmp_path / "a" / name
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert paths[next(k for k, v in report.plots.items() if v == name)] == png
    assert "<script" not in html and "http" not in html
    for needle in (R, MODEL, "throughput_tx_s", "missing_step_stats", f"{R}:{UNKNOWN_TX}:arrival"):
        assert needle in html


def test_same_inputs_give_byte_identical_report_json(report: Report, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # Figures are not what this checks: skip drawing them to keep the test fast.
    monkeypatch.setattr(report_plots, "PLOTTERS", {k: lambda r, p: p.write_bytes(b"") for k in report_plots.PLOTTERS})
    records = ALERT_RECORDS + [ALERT_RECORDS[0], alert(11, "arrival", 1, 0.9, None, 0.1, [], replay_id="old")]
    first = write_report(report, tmp_path / "a")["json"].read_bytes()
    for seed in (1, 2):
        rng = random.Random(seed)
        shuffled, stats_shuffled = records[:], STATS[:]
        rng.shuffle(shuffled)
        rng.shuffle(stats_shuffled)
        again = write_report(build(shuffled, stats_shuffled), tmp_path / f"b{seed}")["json"].read_bytes()
        assert again == first


def test_report_without_alerts_or_statistics(tmp_path: Path) -> None:
    r = build([], [])
    assert r.alerts.distinct == 0 and r.top_alerts == [] and r.steps == []
    assert set(r.plots) == {"metrics_per_step", "confusion"}
    assert r.densification.fit is None and r.densification.fit_error
    assert {w.code for w in r.warnings} >= {"missing_step_stats", "empty_steps"}
    paths = write_report(r, tmp_path)
    assert sorted(re.findall(r'<img src="([^"]+)"', paths["html"].read_text())) == sorted(r.plots.values())


# -- the demo's summary reads the same verdicts -----------------------------------------------------------------------


def test_demo_evaluation_agrees_with_the_report(report: Report) -> None:
    ds = make_ds()
    sets = alerted_sets(ALERT_RECORDS)
    assert sets["alerts (arrival + final − retracted)"] == flagged("final")
    assert sets["arrival alerts as raised"] == flagged("arrival")
    assert sets["final-score alerts only"] == {t for t, k, *_ in ALERTS if k == "final"}
    scores = evaluate_alerts(ds, ALERT_RECORDS, FIRST, LAST, test_mask=ds.steps >= 3)
    assert scores["alerts (arrival + final − retracted)"]["replayed"] == report.metrics.overall["final"]
    assert scores["arrival alerts as raised"]["replayed"] == report.metrics.overall["arrival"]
    test = scores["alerts (arrival + final − retracted)"]["test"]
    want = [counted("final", s) for s in (3, 4, 5)]
    assert (test.tp, test.fp, test.fn, test.tn) == tuple(sum(w[k] for w in want) for k in ("tp", "fp", "fn", "tn"))


def test_arrival_against_final(report: Report) -> None:
    """The period's row, then one per step: arrival alerts, retractions, how early (by plain counting)."""
    early = {e.steps: e for e in report.metrics.early}
    assert [e.steps for e in report.metrics.early] == ["1-5", "1", "2", "3", "4", "5"]  # no shutdown in 1..5
    whole = early["1-5"]
    assert whole.arrival == report.metrics.overall["arrival"] and whole.final == report.metrics.overall["final"]
    assert whole.f1_ratio == pytest.approx(whole.arrival.f1 / whole.final.f1)
    # arrival alerts of the data set in the period: 11, 13, 15, 21, 31; retracted: 13, 31
    assert (whole.arrival_alerts, whole.retracted, whole.retraction_rate) == (5, 2, pytest.approx(0.4))
    # seconds from the arrival alert to its resolution: 13 (2.0 - 0.5), 31 (4.0 - 0.1); 11, 15, 21 unresolved
    assert whole.ahead_s == pytest.approx((1.5 + 3.9) / 2)
    assert whole.ahead_tx == 0  # steps of at most 5 transactions: one arrival window each, scored at close
    assert (early["1"].arrival_alerts, early["1"].retracted, early["1"].ahead_s) == (3, 1, pytest.approx(1.5))
    assert (early["2"].arrival_alerts, early["2"].retracted, early["2"].retraction_rate) == (1, 0, 0.0)
    assert early["2"].ahead_s is None
    assert (early["3"].arrival_alerts, early["3"].retraction_rate, early["3"].ahead_s) == (1, 1.0, pytest.approx(3.9))
    assert early["4"].arrival_alerts == 0 and early["4"].retraction_rate is None and early["4"].ahead_tx is None
    assert report.metrics.per_step[0].arrival == early["1"].arrival


def test_arrival_alerts_are_checked_against_the_arrival_threshold() -> None:
    rep = build_report(make_ds(), ALERT_RECORDS, STATS, replay_id=R, first_step=FIRST, last_step=LAST,
                       model_version=MODEL, threshold=THRESHOLD, arrival_threshold=0.6)
    assert rep.header.arrival_threshold == 0.6
    (w,) = [w for w in rep.warnings if w.code == "threshold_mismatch"]
    # every alert carries 0.5: the arrival ones (but not the other replay's) disagree with 0.6
    assert w.items == sorted(a.alert_id for a in ALERT_RECORDS if a.kind == "arrival")
