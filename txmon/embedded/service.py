"""A child process on a loopback port, started and stopped for sure: the base of every embedded service.

Each binds 127.0.0.1 on a free port, keeps its data in a temp dir and logs to a file there whose tail
ends up in any error. Whatever is still running when the interpreter exits is stopped by an ``atexit``
hook, and a service dies with the process that started it (Linux's parent-death signal), so neither an
exception nor a ``kill -9`` of the parent leaves a stray server behind.
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from contextlib import suppress
from pathlib import Path
from typing import Self

from txmon.core.errors import TxmonError

HOST = "127.0.0.1"
PR_SET_PDEATHSIG = 1  # linux/prctl.h
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # Tansu colours its log lines


def log_tail(path: Path | None, lines: int, header: str = "log tail", missing: str = "(no log)") -> str:
    """The last lines of a process's log, colours stripped, for an error message."""
    try:
        text = _ANSI.sub("", path.read_text(errors="replace")).splitlines() if path is not None else None
    except OSError:
        text = None
    return missing if text is None else f"--- {header} ---\n" + "\n".join(text[-lines:])


def stop_session(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM to the session ``proc`` leads (it and anything it forked), wait, then SIGKILL; a Ctrl-C while
    waiting kills at once."""
    if proc.poll() is not None:
        return
    signal_session(proc, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        signal_session(proc, signal.SIGKILL)
        proc.wait()
    except KeyboardInterrupt:
        signal_session(proc, signal.SIGKILL)
        proc.wait()
        raise


def signal_session(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


class ServiceError(TxmonError, RuntimeError):
    """A local service could not be started (missing binary, early exit, no answer in time)."""


class EarlyExit(ServiceError):
    """The process died while starting, e.g. because another process took its port."""


def die_with_parent() -> None:
    """In a child before exec: SIGTERM it when the process that started it dies, even by SIGKILL (Linux only;
    elsewhere the atexit hook is all there is)."""
    with suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.2):
            return True
    except OSError:
        return False


_running: set[Service] = set()


@atexit.register
def _stop_all() -> None:
    for service in list(_running):
        service.stop()


class Service:
    """A child process on a loopback port: start, wait until it answers, stop for sure."""

    name = "service"
    start_timeout = 10.0

    def __init__(self, port: int | None = None) -> None:
        self._fixed_port = port
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp: Path | None = None

    # -- what subclasses say -------------------------------------------------------------
    def _binary(self) -> str:
        """The executable; raises ServiceError saying how to install it when it is missing."""
        raise NotImplementedError

    def _args(self) -> list[str]:
        raise NotImplementedError

    def _answers(self) -> bool:
        """True once the service answers a real request (not just accepts TCP)."""
        raise NotImplementedError

    def _prepare(self) -> None:
        """Before the process starts, with ``port`` and the temp dir set: write config, format storage."""

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def log_path(self) -> Path | None:
        return self._tmp / "service.log" if self._tmp else None  # the file _start_once writes

    def start(self) -> Self:
        if self.running:
            return self
        binary = self._binary()
        # free_port() can race with another process taking the port: retry on a new one.
        attempts = 1 if self._fixed_port else 3
        for attempt in range(attempts):
            try:
                self._start_once(binary, self._fixed_port or free_port())
                return self
            except EarlyExit:
                if attempt == attempts - 1:
                    raise
        return self  # unreachable

    def restart(self, kill: bool = False) -> Self:
        """Stop the process (SIGKILL with ``kill``, else SIGTERM) and start it again on the same port with the
        same data directory: what survives is what the service itself persisted."""
        proc, self._proc = self._proc, None
        _running.discard(self)
        if proc is not None:
            if kill:
                signal_session(proc, signal.SIGKILL)
                proc.wait()
            else:
                stop_session(proc, 5.0)
        self._start_once(self._binary(), self.port, keep_dir=True)
        return self

    def _start_once(self, binary: str, port: int, keep_dir: bool = False) -> None:
        self.port = port
        if not (keep_dir and self._tmp is not None):
            self._tmp = Path(tempfile.mkdtemp(prefix=f"txmon-{self.name}-"))
            try:
                self._prepare()
            except BaseException:
                self._cleanup_tmp()
                raise
        cmd = [binary, *self._args()]
        log = open(self._tmp / "service.log", "ab")  # noqa: SIM115 - the child keeps writing to it
        try:
            # A new session: Ctrl-C in a terminal reaches only us, and we stop the child ourselves.
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=die_with_parent,
            )
        except OSError as exc:
            self._cleanup_tmp()
            raise ServiceError(f"cannot run {cmd[0]}: {exc}") from exc
        finally:
            log.close()
        _running.add(self)
        try:
            self._wait_ready(port)
        except BaseException:  # also Ctrl-C while waiting: never leave the child behind
            self.stop()
            raise

    def _wait_ready(self, port: int) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                msg = f"{self.name} exited with code {self._proc.returncode} on port {port}"
                raise EarlyExit(f"{msg}\n{self._log_tail()}")
            if _port_open(port) and self._answers():
                return
            time.sleep(0.05)
        msg = f"{self.name} did not answer on {HOST}:{port} within {self.start_timeout:g} s"
        raise ServiceError(f"{msg}\n{self._log_tail()}")

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, wait, then SIGKILL; remove the temp dir. Safe to call twice."""
        proc, self._proc = self._proc, None
        _running.discard(self)
        if proc is not None:
            stop_session(proc, timeout)
        self._cleanup_tmp()

    def _cleanup_tmp(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def _log_tail(self, lines: int = 20) -> str:
        return log_tail(self.log_path, lines)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"<{type(self).__name__} {HOST}:{self.port} {state}>"


def answers_metadata(bootstrap: str) -> bool:
    """Whether a metadata request is answered: the Kafka protocol is served, not just the port bound."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000, bootstrap_timeout_ms=2000)
    except KafkaError:
        return False
    try:
        admin.list_topics()
        return True
    except KafkaError:
        return False
    finally:
        admin.close()
