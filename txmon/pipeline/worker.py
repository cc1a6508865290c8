"""The stream worker as a child process: ``python -m txmon worker`` in a session of its own, and its environment.

The worker receives its settings as ``TXMON_*`` environment variables (``Settings.to_env``): that is the
process boundary. It runs in a directory of its own (Faust writes its ``<app id>-data`` directory into the
working directory), logs to a file whose tail ends up in any error, and is stopped with SIGTERM to its
session, then SIGKILL. Ctrl-C in a terminal reaches only the parent, which stops the worker itself.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from stream_app.consumer import READY as CONSUMER_READY
from stream_app.metrics_read import Scrape, scrape
from txmon.core.errors import TxmonError
from txmon.core.settings import Settings
from txmon.embedded import free_port, log_tail, signal_session, stop_session

PROJECT_ROOT = Path(__file__).resolve().parents[2]
READY = CONSUMER_READY.encode()  # the worker's log line once it joined its group and has its partitions


class WorkerDied(TxmonError, RuntimeError):
    """A worker process exited while it was still needed."""


def worker_env(settings: Settings, app_id: str, web_port: int | None = None,
               base: Mapping[str, str] | None = None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a worker serving ``settings`` (its Kafka and Redis must be set) in consumer group
    ``app_id``: ``base`` (default: this process's environment) without any ``TXMON_*`` variable, then
    ``settings`` as ``TXMON_*`` variables, then ``extra``.

    ``web_port``: of its web views and /metrics; None picks a free one (several workers on one machine never
    share Faust's fixed 6066), 0 turns the web server off.
    """
    if not settings.kafka_bootstrap or not settings.redis_url:
        raise ValueError("worker_env needs settings with kafka_bootstrap and redis_url")
    env = {k: v for k, v in (os.environ if base is None else base).items() if not k.startswith("TXMON_")}
    env.update(settings.to_env())
    env["TXMON_WORKER_APP_ID"] = app_id
    env["TXMON_WEB_PORT"] = str(free_port() if web_port is None else web_port)
    env["PYTHONUNBUFFERED"] = "1"
    # The worker runs in its own directory: make sure it imports this txmon, installed or not.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH")) if p)
    env.update(extra or {})
    return env


class WorkerProcess:
    """``python -m txmon worker`` (or ``command``) in a session of its own, in ``run_dir``, logging to a file."""

    def __init__(self, env: dict[str, str], run_dir: Path, log_path: Path | None = None, args: Iterable[str] = (),
                 command: list[str] | None = None, stop_timeout: float = 15.0) -> None:
        """``command``: run this instead of ``python -m txmon worker`` (e.g. a wrapper that instruments it);
        ``args`` are appended to it. The log goes to ``log_path``, default ``run_dir/worker.log``."""
        self.env = env
        self.run_dir = run_dir
        self.log_path = log_path or run_dir / "worker.log"
        self.command = [*(command or [sys.executable, "-m", "txmon", "worker"]), *args]
        self.stop_timeout = stop_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0  # time.monotonic() at the start
        self.stopped = False  # stop() or kill() was called: its exit is no failure
        port = env.get("TXMON_WEB_PORT", "0")
        self.web_url = f"http://127.0.0.1:{port}" if port != "0" else None  # /health, /tx/{id}, /metrics ...

    def start(self) -> WorkerProcess:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.command, cwd=self.run_dir, env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
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
        """WorkerDied (with the log's tail) if it has exited."""
        code = self.exit_code
        if code is not None:
            how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
            raise WorkerDied(f"the worker (pid {self.pid}) {how}; its log: {self.log_path}\n{self.log_tail()}")

    def ready(self) -> bool:
        """The worker logged that it joined its group and has its partitions."""
        try:
            return READY in self.log_path.read_bytes()
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
        return log_tail(self.log_path, lines, f"worker log {self.log_path} (last {lines} lines)", "(no worker log)")

    # -- the web views ------------------------------------------------------------------------------------------------

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
        """(status, body) of a GET on the worker's web server; errors are answers too, not exceptions."""
        if self.web_url is None:
            raise RuntimeError("the worker runs without its web server")
        try:
            with urllib.request.urlopen(self.web_url + path, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def metrics(self) -> Scrape:
        """A scrape of the worker's /metrics."""
        if self.web_url is None:
            raise RuntimeError("the worker runs without its web server")
        return scrape(f"{self.web_url}/metrics", time.monotonic(), timeout=10.0)

    # -- stopping -----------------------------------------------------------------------------------------------------

    def stop(self) -> int | None:
        """SIGTERM to its session, wait ``stop_timeout``, then SIGKILL; the exit code (None if never started).
        A Ctrl-C while waiting kills at once."""
        proc = self.proc
        if proc is None:
            return None
        self.stopped = True
        stop_session(proc, self.stop_timeout)  # its own session: the worker and anything it forked
        # Faust's data directory (empty with the in-memory store) is of no use once the worker is gone.
        for d in self.run_dir.glob("*-data"):
            shutil.rmtree(d, ignore_errors=True)
        return proc.returncode

    def kill(self) -> None:
        """SIGKILL the worker's whole session (a clean-up path: never leave a process behind)."""
        proc = self.proc
        if proc is None:
            return
        self.stopped = True
        signal_session(proc, signal.SIGKILL)  # it leads its own session and process group
        if proc.poll() is None:
            proc.wait(10)

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
