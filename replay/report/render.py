"""write_report: report.json, report.html (plain HTML and CSS, no script, nothing fetched) and the PNGs beside it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from html import escape
from pathlib import Path

from replay.report.evaluate import Scores
from replay.report.model import DegreeFit, Early, Latency, Report, TopAlert
from txmon.core.contracts import ALERT_KINDS, VERDICTS

MAX_ITEMS = 50  # per warning in the HTML; report.json lists every one
NUMBER = re.compile(r"^[-+]?[\d,]*\.?\d+(e[-+]?\d+)?$|^–$")

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.85em; }
th, td { border: 1px solid #ddd; padding: 0.2em 0.6em; }
th { background: #f3f3f3; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; display: block; margin: 0.8em 0; }
.warn { background: #fff4e5; border-left: 4px solid #f0a030; padding: 0.4em 0.8em; margin: 0.4em 0; }
.note { color: #555; font-size: 0.85em; }
"""


def _f(x: float | None, spec: str = ".3f") -> str:
    return "–" if x is None else format(x, spec)


def _i(x: int) -> str:
    return f"{x:,}"


def _value(v: object) -> str:
    if isinstance(v, bool) or v is None:
        return "–" if v is None else str(v)
    if isinstance(v, int):
        return _i(v)
    if isinstance(v, float):
        return format(v, ",.6g")
    if isinstance(v, str):
        return v
    return json.dumps(v, sort_keys=True, ensure_ascii=False)


def _table(head: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Cells are text, escaped here; numbers align right."""
    out = ["<table>", "<tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>"]
    for row in rows:
        out.append("<tr>" + "".join(f'<td class="n">{escape(c)}</td>' if NUMBER.match(c) else f"<td>{escape(c)}</td>"
                                    for c in row) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _img(r: Report, key: str, alt: str) -> str:
    name = r.plots.get(key)
    return f'<img src="{escape(name)}" alt="{escape(alt)}">' if name else ""


def _scores_cells(s: Scores) -> list[str]:
    return [_f(s.precision), _f(s.recall), _f(s.f1), _i(s.tp), _i(s.fp), _i(s.fn), _i(s.tn)]


def _header(r: Report) -> str:
    h = r.header
    rows = [("replay id", h.replay_id), ("period", f"steps {h.first_step}..{h.last_step}"),
            ("model version", h.model_version), ("threshold (step close)", _f(h.threshold, ".4f")),
            ("arrival threshold", _f(h.arrival_threshold, ".4f") if h.arrival_threshold is not None else
             "– (the GCN's, on arrival too)"),
            ("transactions", _i(h.transactions)), ("labelled", _i(h.labelled)), ("illicit", _i(h.illicit)),
            ("licit", _i(h.licit)), ("unknown label", _i(h.unknown))]
    rows += [(k, _value(v)) for k, v in h.meta.items()]
    return f"<h1>Replay report: {escape(h.replay_id)}</h1>\n" + _table(("", ""), rows)


def _warnings(r: Report) -> str:
    if not r.warnings:
        return "<h2>Warnings</h2>\n<p>None: every record fits the data set and the period.</p>"
    out = ["<h2>Warnings</h2>"]
    for w in r.warnings:
        items = ", ".join(str(i) for i in w.items[:MAX_ITEMS])
        more = f" … and {w.count - MAX_ITEMS:,} more (all in report.json)" if w.count > MAX_ITEMS else ""
        out.append(f'<div class="warn"><b>{escape(w.code)}</b> ({_i(w.count)}): {escape(w.message)}<br>'
                   f'<span class="note">{escape(items + more)}</span></div>')
    return "\n".join(out)


def _metrics(r: Report) -> str:
    m = r.metrics
    cols = ("precision", "recall", "F1", "TP", "FP", "FN", "TN")
    overall = _table(("verdict", *cols, "labelled", "flagged (all)"),
                     ([v, *_scores_cells(m.overall[v]), _i(m.overall[v].n), _i(m.flagged[v])] for v in VERDICTS))
    per_step = _table(
        ("step", "transactions", "labelled", "illicit", *(f"{v} {c}" for v in VERDICTS for c in cols)),
        ([str(s.step), _i(s.transactions), _i(s.labelled), _i(s.illicit), *_scores_cells(s.arrival),
          *_scores_cells(s.final)] for s in m.per_step))
    return "\n".join([
        "<h2>Alerts against the labels</h2>",
        '<p class="note">Illicit = positive; transactions with an unknown label are left out. <i>arrival</i>: the '
        "transaction has an arrival alert; <i>final</i>: an arrival or final alert and no retraction (the verdict "
        "once its step closed). – marks an undefined value: precision with nothing flagged, recall with no "
        "labelled illicit transaction, F1 with neither.</p>",
        overall, _img(r, "confusion", "confusion matrices"), _img(r, "metrics_per_step", "metrics per step"),
        per_step,
    ])


def _early(r: Report) -> str:
    def cells(e: Early) -> list[str]:
        return [e.steps, _f(e.arrival.precision), _f(e.arrival.recall), _f(e.arrival.f1), _f(e.final.precision),
                _f(e.final.recall), _f(e.final.f1), _f(e.f1_ratio, ".2f"), _i(e.arrival_alerts), _i(e.retracted),
                _f(e.retraction_rate, ".0%"), _f(e.ahead_tx, ",.0f"), _f(e.ahead_s, ".2f")]

    return "\n".join([
        "<h2>Arrival alerts against step close</h2>",
        '<p class="note">What an arrival alert is worth: the arrival verdict and the final verdict against the '
        "labels, arrival F1 as a share of final F1, how many arrival alerts step close retracted (labelled or not), "
        "and how early they came: the median number of the step's transactions still to come when the alert was "
        "raised, and the median seconds from the arrival alert to its confirmation or retraction on this stream. "
        "The first rows are the period and, when it spans it, the steps before and after the dark market "
        "shutdown (step 43).</p>",
        _table(("steps", "arrival P", "arrival R", "arrival F1", "final P", "final R", "final F1", "F1 ratio",
                "arrival alerts", "retracted", "retracted %", "ahead (tx)", "ahead (s)"),
               (cells(e) for e in r.metrics.early)),
        _img(r, "early", "arrival against final verdicts per step"),
    ])


def _alerts(r: Report) -> str:
    a = r.alerts
    return "\n".join([
        "<h2>Alerts</h2>",
        f"<p>{_i(a.received)} alert records received, {_i(a.distinct)} distinct alert ids: "
        + " · ".join(f"{k} {_i(a.by_kind[k])}" for k in ALERT_KINDS) + ".</p>",
        _img(r, "alerts_per_step", "alerts per step"),
        _table(("step", *ALERT_KINDS), ([str(c.step), *(_i(getattr(c, k)) for k in ALERT_KINDS)] for c in a.per_step)),
    ])


def _latency_row(name: str, lat: Latency) -> list[str]:
    return [name, _i(lat.count), *(_f(getattr(lat, q)) for q in ("p50", "p90", "p99", "max"))]


def _latency(r: Report) -> str:
    rows = [_latency_row(f"{k} alerts: event → alert", lat) for k, lat in r.latency.event_to_alert.items()]
    if r.latency.step_close is not None:
        rows.append(_latency_row("step close: end marker sent → statistics", r.latency.step_close))
    return "\n".join([
        "<h2>Latency (seconds)</h2>",
        '<p class="note">Event → alert: the alert\'s processing_time − the transaction\'s event_time (producer '
        "send time). Percentiles interpolate linearly.</p>",
        _table(("", "count", "p50", "p90", "p99", "max"), rows),
        _img(r, "latency", "latency histograms"),
    ])


def _fit(f: DegreeFit | None) -> str:
    return "–" if f is None else f"{_f(f.alpha, '.2f')} (x_min {_f(f.xmin, 'g')}, n {f.n_tail:,})"


def _network(r: Report) -> str:
    d = r.densification
    fit = d.fit
    dens = [("stream's α over its history (cumulative)", _f(d.alpha_cumulative)),
            ("its R²", _f(d.r2_cumulative, ".4f")),
            (f"stream's α over the last {d.window} steps" if d.window else "stream's α over its window",
             _f(d.alpha_window)),
            ("from the record of step", "–" if d.from_step is None else str(d.from_step)),
            ("α fitted here on cumulative (N, E) of the period",
             "–" if fit is None else f"{_f(fit.alpha)} ± {_f(fit.stderr, '.2g')} (R² {_f(fit.r2, '.4f')}, "
                                     f"{fit.n_points} steps)")]
    if d.fit_error:
        dens.append(("fit not possible", d.fit_error))
    head = ("step", "nodes", "edges", "nodes total", "edges total", "avg degree", "density", "clustering",
            "triangles", "in-degree α", "out-degree α", "α cumulative", "α window", "step close s")
    rows = ([str(s.step), _i(s.nodes_step), _i(s.edges_step), _i(s.nodes_total), _i(s.edges_total),
             _f(s.avg_degree), _f(s.density, ".3g"), _f(s.clustering, ".4f"), _i(s.triangles_step),
             _fit(s.in_degree_fit), _fit(s.out_degree_fit), _f(s.densification_alpha),
             _f(s.densification_alpha_window), _f(s.step_close_s)] for s in r.steps)
    return "\n".join([
        "<h2>Network statistics per step</h2>",
        '<p class="note">From the statistics record the stream published at each step close.</p>',
        _table(head, rows), _img(r, "step_stats", "statistics per step"),
        "<h2>Densification E ∝ N<sup>α</sup></h2>", _table(("", ""), dens),
        _img(r, "densification", "densification"),
    ])


def _neighbours(t: TopAlert) -> str:
    return "; ".join(f"{n.tx_id} ({n.label}) {_f(n.weight, '+.3f')}" for n in t.neighbours) or "–"


def _top(r: Report) -> str:
    head = ("rank", "tx id", "step", "alerts", "arrival score", "final score", "arrival verdict", "final verdict",
            "label", "neighbours that weighed most (label, weight)")
    rows = ([str(t.rank), str(t.tx_id), str(t.step), ", ".join(t.kinds), _f(t.arrival_score), _f(t.final_score),
             "flagged" if t.flagged_arrival else "–", "flagged" if t.flagged_final else "–", t.label,
             _neighbours(t)] for t in r.top_alerts)
    return "\n".join([f"<h2>Highest-scoring alerts (top {len(r.top_alerts)})</h2>",
                      '<p class="note">Ranked by final score, else arrival score.</p>', _table(head, rows)])


def render_html(r: Report) -> str:
    body = "\n".join([_header(r), _warnings(r), _metrics(r), _early(r), _alerts(r), _latency(r), _network(r),
                      _top(r)])
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>txmon replay {escape(r.header.replay_id)}</title>\n<style>{CSS}</style>\n</head>\n"
            f"<body>\n{body}\n</body>\n</html>\n")


def write_report(report: Report, out_dir: Path) -> dict[str, Path]:
    """Write report.json, report.html and the figures into ``out_dir`` (created); returns name → path
    (``json``, ``html`` and each figure key)."""
    from replay.report.plots import write_plots  # matplotlib only when drawing

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "report.json", "html": out_dir / "report.html"}
    paths["json"].write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
    paths.update(write_plots(report, out_dir))
    paths["html"].write_text(render_html(report), encoding="utf-8")
    return paths
