"""An embedded ``redis-server`` for the demo, tests and benchmarks."""

from __future__ import annotations

import shutil
import socket

from txmon.embedded.service import HOST, Service, ServiceError


class RedisServer(Service):
    """``redis-server`` on 127.0.0.1, its data in a temp dir that lives as long as this object: an append-only
    file (``appendfsync everysec``, as the compose service) so that ``restart()`` keeps the graph; a kill can
    lose the last second of writes, which the workers notice (stream_app.state)."""

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
            "--appendonly", "yes",
            "--appendfsync", "everysec",
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
