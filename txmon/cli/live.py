"""``txmon demo``'s live terminal view: a status line, the per-step table and the latest alerts.

It renders what ``txmon.pipeline.follow`` has read into a ``DemoState``; the demo (txmon/cli/demo.py) runs
the pipeline. Nothing here reads labels.
"""

from __future__ import annotations

import time
from collections import Counter

from rich.console import Group, JustifyMethod
from rich.table import Table
from rich.text import Text

from txmon.cli.alerts import alert_score
from txmon.core.contracts import ALERT_KINDS
from txmon.pipeline.follow import DemoState
from txmon.pipeline.worker import WorkerProcess


def _fmt(x: float | None, spec: str = ".3f") -> str:
    return "–" if x is None else format(x, spec)


def render(state: DemoState, worker: WorkerProcess, max_rows: int) -> Group:
    """Status line, the per-step table (the last ``max_rows`` closed steps) and the latest alerts."""
    now = time.monotonic()
    with state.lock:
        stats = dict(state.stats)
        by_step = {s: Counter(c) for s, c in state.alerts_by_step.items()}
        recent = list(state.recent)
        sent, started, done_at = state.sent, state.replay_started, state.done_at
        ready_after = state.worker_ready_after
    totals = sum(by_step.values(), Counter())
    elapsed = ((done_at or now) - started) if started else 0.0
    code = worker.exit_code
    if code is not None:
        wstate = f"[red]exited ({code})[/]"
    elif ready_after is not None:
        wstate = f"ready after {ready_after:.1f} s"
    else:
        wstate = "starting"
    status = Text.from_markup(
        f"replay [bold]{state.replay_id}[/]: sent {sent:,}/{state.total_events:,} · "
        f"steps closed {len(stats)}/{state.last_step - state.first_step + 1} · "
        f"alerts: {' · '.join(f'{k} {totals[k]:,}' for k in ALERT_KINDS)} · "
        f"worker pid {worker.pid} {wstate} · {elapsed:.1f} s")

    steps = Table(title="per step (alerts counted cumulatively)", header_style="bold", title_justify="left")
    for col in ("step", "nodes", "edges", "avg degree", "clustering", "α cum.", *ALERT_KINDS):
        steps.add_column(col, justify="right")
    running: Counter[str] = Counter()
    rows = []
    for s in range(state.first_step, state.last_step + 1):
        running += by_step.get(s, Counter())
        st = stats.get(s)
        if st is not None:
            rows.append((str(s), f"{st.nodes_step:,}", f"{st.edges_step:,}", f"{st.avg_degree:.3f}",
                         f"{st.clustering:.4f}", _fmt(st.densification_alpha),
                         *(f"{running[k]:,}" for k in ALERT_KINDS)))
    if len(rows) > max_rows:
        steps.caption = f"(the first {len(rows) - max_rows} closed steps are not shown)"
        rows = rows[-max_rows:]
    for row in rows:
        steps.add_row(*row)

    latest = Table(title="latest alerts", header_style="bold", title_justify="left")
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("tx", "right"), ("step", "right"), ("kind", "left"), ("score", "right"), ("threshold", "right"),
        ("top neighbours (tx: weight)", "left"))
    for col, justify in columns:
        latest.add_column(col, justify=justify)
    for a in reversed(recent):
        nbs = ", ".join(f"{n.tx_id}: {n.weight:+.2f}" for n in a.neighbours[:3]) or "–"
        latest.add_row(str(a.tx_id), str(a.step), a.kind, f"{alert_score(a):.3f}", f"{a.threshold:.3f}", nbs)
    return Group(status, steps, latest)
