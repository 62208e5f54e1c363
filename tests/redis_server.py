"""A real Redis for the tests: Debian's `redis-server` on a free loopback port, keeping nothing on
disk, started once per session and stopped at its end.

tests/conftest.py loads it: ask for `redis_server` (to stop and start it) or `redis_url`.
Without `redis-server` the tests skip — except where `CI` is set: CI must run them, so there they
fail (`.ci/run` installs it).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.servers import free_port

__all__ = ["RedisServer", "redis_server", "redis_url", "require_redis_server"]


def require_redis_server() -> str:
    """The path of `redis-server`; skip if it is missing (fail under CI)."""
    binary = shutil.which("redis-server")
    if binary is None:
        why = "redis-server is not installed (Debian: apt-get install redis-server)"
        if os.environ.get("CI"):
            pytest.fail(f"{why}; CI must run the Redis tests", pytrace=False)
        pytest.skip(why)
    return binary


class RedisServer:
    """One `redis-server` process on 127.0.0.1:`port` and on the Unix socket `socket`; `stop`
    and `start` it again on the same port (an empty Redis then: nothing persists)."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}"
        self.socket = workdir / "redis.sock"  # the same server, reached as unix://
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10) -> None:
        log = self.workdir / "redis.log"
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
        args += ["no", "--dir", str(self.workdir), "--logfile", str(log)]
        args += ["--unixsocket", str(self.socket), "--unixsocketperm", "700"]
        self._proc = subprocess.Popen([self.binary, *args], stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                text = log.read_text() if log.exists() else ""
                pytest.fail(f"redis-server did not start on port {self.port}:\n{text[-2000:]}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    @contextmanager
    def down(self) -> Iterator[None]:
        """Redis stopped for the block, then back on the same port."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(64).startswith(b"+PONG")
        except OSError:
            return False


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(require_redis_server(), tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url
