"""The demo's moving parts: the worker subprocess, the alert/stats follower and the live terminal view.

``txmon demo`` (txmon/cli/demo.py) wires them together; nothing here reads labels: the demo's summary
evaluates the alerts with ``replay.report.evaluate`` once everything has arrived.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError
from rich.console import Group
from rich.table import Table
from rich.text import Text

from txmon.cli.alerts import alert_score
from txmon.core.contracts import ALERT_KINDS, Alert, StepStats
from txmon.core.errors import TxmonError
from txmon.core.settings import Settings
from txmon.embedded import log_tail, stop_session

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class WorkerDied(TxmonError, RuntimeError):
    """The worker subprocess exited while the demo still needed it."""


class FollowerError(TxmonError, RuntimeError):
    """The alert/stats follower could not read its topics."""


# -- the worker -------------------------------------------------------------------------------------------------------


class WorkerProcess:
    """``python -m txmon worker`` in its own session, logging to a file; stopped with SIGTERM, then SIGKILL.

    It runs in ``run_dir`` (Faust writes its ``<app id>-data`` directory into the working directory),
    so the caller's directory stays clean. Ctrl-C in the terminal reaches only the demo, which stops
    the worker itself (a clean Faust stop takes about a second).
    """

    READY = "[^Worker]: Ready"  # Faust's log line once the group is joined and the partitions assigned

    def __init__(self, env: dict[str, str], run_dir: Path, stop_timeout: float = 15.0) -> None:
        self.env = env
        self.run_dir = run_dir
        self.log_path = run_dir / "worker.log"
        self.stop_timeout = stop_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self) -> WorkerProcess:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "txmon", "worker"], cwd=self.run_dir, env=self.env,
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        self.started_at = time.monotonic()
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def exit_code(self) -> int | None:
        """None while it runs (or before it started)."""
        return self.proc.poll() if self.proc else None

    def check_alive(self) -> None:
        code = self.exit_code
        if code is not None:
            how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
            raise WorkerDied(f"the worker (pid {self.pid}) {how}; its log: {self.log_path}\n{self.log_tail()}")

    def ready(self) -> bool:
        try:
            with open(self.log_path, "rb") as f:
                return self.READY.encode() in f.read()
        except OSError:
            return False

    def wait_ready(self, timeout: float, check: Callable[[], None] | None = None) -> bool:
        """Poll for the Ready line until ``timeout``; ``check`` (default: the worker is alive) raises to abort."""
        deadline = time.monotonic() + timeout
        while not self.ready():
            (check or self.check_alive)()
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def log_tail(self, lines: int = 25) -> str:
        return log_tail(self.log_path, lines, "worker log tail", "(no worker log)")

    def stop(self) -> int | None:
        """SIGTERM to its process group, wait, then SIGKILL; a second Ctrl-C while waiting kills at once."""
        proc = self.proc
        if proc is None:
            return None
        stop_session(proc, self.stop_timeout)  # its own session: the worker and anything it forked
        # Faust's data directory (empty with the in-memory store) is of no use once the worker is gone.
        for d in self.run_dir.glob("*-data"):
            shutil.rmtree(d, ignore_errors=True)
        return proc.returncode

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def worker_env(settings: Settings, bootstrap: str, redis_url: str, model_dir: Path, model_version: str,
               app_id: str, web_port: int = 0) -> dict[str, str]:
    """The worker's environment: this run's services, model, consumer group and topics."""
    env = dict(os.environ)
    env.update({
        "TXMON_KAFKA_BOOTSTRAP": bootstrap,
        "TXMON_REDIS_URL": redis_url,
        "TXMON_MODEL_DIR": str(model_dir.resolve()),
        "TXMON_MODEL_VERSION": model_version,
        "TXMON_WORKER_APP_ID": app_id,
        "TXMON_TOPIC_TRANSACTIONS": settings.topic_transactions,
        "TXMON_TOPIC_ALERTS": settings.topic_alerts,
        "TXMON_TOPIC_STATS": settings.topic_stats,
        "TXMON_TOPIC_DEAD_LETTER": settings.topic_dead_letter,
        "TXMON_TOPIC_PARTITIONS": str(settings.topic_partitions),
        "TXMON_WEB_PORT": str(web_port),
        "PYTHONUNBUFFERED": "1",
    })
    # The worker runs in its own directory: make sure it imports this txmon, installed or not.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH")) if p)
    return env


# -- what has arrived -------------------------------------------------------------------------------------------------


@dataclass
class DemoState:
    """Everything the follower and the replay report, read by the live view and the summary (under ``lock``)."""

    replay_id: str
    total_events: int
    first_step: int
    last_step: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    sent: int = 0
    replay_started: float | None = None
    worker_ready_after: float | None = None
    stats: dict[int, StepStats] = field(default_factory=dict)
    alerts: dict[str, Alert] = field(default_factory=dict)  # by alert id: a re-read record counts once
    alerts_by_step: dict[int, Counter] = field(default_factory=lambda: defaultdict(Counter))
    recent: deque = field(default_factory=lambda: deque(maxlen=6))
    done_at: float | None = None  # monotonic time the last step's statistics arrived
    done: threading.Event = field(default_factory=threading.Event)
    bad_records: int = 0
    other_replays: int = 0  # records of earlier replays on a reused (external) broker, skipped

    def add_alert(self, alert: Alert) -> None:
        with self.lock:
            if alert.alert_id in self.alerts:
                return
            self.alerts[alert.alert_id] = alert
            self.alerts_by_step[alert.step][alert.kind] += 1
            self.recent.append(alert)

    def add_stats(self, stats: StepStats) -> None:
        with self.lock:
            self.stats[stats.step] = stats
            if stats.step == self.last_step and self.done_at is None:
                self.done_at = time.monotonic()
                self.done.set()

    def kind_counts(self) -> Counter:
        with self.lock:
            return Counter(a.kind for a in self.alerts.values())


class Follower(threading.Thread):
    """Reads the alert and stats topics from the beginning in a background thread.

    A plain kafka-python consumer that assigns every partition itself and seeks to the beginning:
    no consumer group, because group joins take seconds on Tansu (docs/tansu.md). Records of other
    replays (a reused external broker) are skipped; malformed ones are counted.
    """

    def __init__(self, bootstrap: str, settings: Settings, state: DemoState) -> None:
        super().__init__(name="txmon-demo-follower", daemon=True)
        self.bootstrap = bootstrap
        self.alerts_topic = settings.topic_alerts
        self.stats_topic = settings.topic_stats
        self.state = state
        self.error: BaseException | None = None
        self._stopping = threading.Event()
        self._assigned = threading.Event()
        self.last_record_at = time.monotonic()

    def run(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        try:
            consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                                     client_id="txmon-demo-follower", fetch_max_wait_ms=200,
                                     max_partition_fetch_bytes=4 * 1024 * 1024, bootstrap_timeout_ms=10_000)
        except BaseException as e:  # noqa: BLE001 - reported to the main thread
            self.error = e
            self._assigned.set()
            return
        try:
            tps = []
            for topic in (self.alerts_topic, self.stats_topic):
                parts = consumer.partitions_for_topic(topic)
                if not parts:
                    raise FollowerError(f"topic {topic} does not exist at {self.bootstrap}")
                tps += [TopicPartition(topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            self._assigned.set()
            while not self._stopping.is_set():
                for tp, records in consumer.poll(timeout_ms=200).items():
                    for r in records:
                        self._handle(tp.topic, r.value)
        except BaseException as e:  # noqa: BLE001
            self.error = e
        finally:
            self._assigned.set()
            consumer.close()

    def _handle(self, topic: str, value: bytes | None) -> None:
        self.last_record_at = time.monotonic()
        try:
            if topic == self.stats_topic:
                record = StepStats.model_validate_json(value or b"")
            else:
                record = Alert.model_validate_json(value or b"")
        except ValidationError:
            with self.state.lock:
                self.state.bad_records += 1
            return
        if record.replay_id != self.state.replay_id:
            with self.state.lock:
                self.state.other_replays += 1
            return
        if isinstance(record, StepStats):
            self.state.add_stats(record)
        else:
            self.state.add_alert(record)

    def wait_assigned(self, timeout: float = 30.0) -> None:
        if not self._assigned.wait(timeout):
            raise FollowerError(f"the alert/stats follower could not reach {self.bootstrap} within {timeout:g} s")
        self.check()

    def check(self) -> None:
        if self.error is not None:
            raise FollowerError(f"following {self.alerts_topic} / {self.stats_topic} failed: {self.error}")

    def drain(self, quiet: float = 1.0, limit: float = 5.0) -> None:
        """Wait until no record has arrived for ``quiet`` s (at most ``limit`` s).

        The worker sends a step's final alerts before its statistics, but to another topic, so they
        may reach us a moment later; this picks them up after the completion signal.
        """
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline and time.monotonic() - self.last_record_at < quiet:
            time.sleep(0.05)

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self.is_alive():
            self.join(timeout)

    def __enter__(self) -> Follower:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- the live view ----------------------------------------------------------------------------------------------------


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
        f"alerts: arrival {totals['arrival']:,} · final {totals['final']:,} · retracted {totals['retracted']:,} · "
        f"worker pid {worker.pid} {wstate} · {elapsed:.1f} s")

    steps = Table(title="per step (alerts counted cumulatively)", header_style="bold", title_justify="left")
    for col in ("step", "nodes", "edges", "avg degree", "clustering", "α cum.", *ALERT_KINDS):
        steps.add_column(col, justify="right")
    running = Counter()
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
    for col, justify in (("tx", "right"), ("step", "right"), ("kind", "left"), ("score", "right"),
                         ("threshold", "right"), ("top neighbours (tx: weight)", "left")):
        latest.add_column(col, justify=justify)
    for a in reversed(recent):
        nbs = ", ".join(f"{n.tx_id}: {n.weight:+.2f}" for n in a.neighbours[:3]) or "–"
        latest.add_row(str(a.tx_id), str(a.step), a.kind, f"{alert_score(a):.3f}", f"{a.threshold:.3f}", nbs)
    return Group(status, steps, latest)


def child_processes(pid: int | None = None) -> dict[int, str]:
    """Live child processes of ``pid`` (default: this one) from /proc: pid → command name. Empty off Linux."""
    pid = os.getpid() if pid is None else pid
    out: dict[int, str] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return out
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split at the last ')'
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        if fields and fields[0] != "Z" and int(fields[1]) == pid:
            out[int(entry)] = comm
    return out


def dump_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=2, default=str))
