"""Real MCP servers for the plugin's tests, all on this machine: the demo server's app under
uvicorn in a thread (Streamable HTTP or SSE, stopped and started again at will), and scripts
run over stdio; and the provider, started and closed around a test."""

from __future__ import annotations

import socket
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from mcp_servers import demo
from openai_tool_proxy_mcp import MCPServers

SERVERS = Path(__file__).parent / "mcp_servers"


def stdio(script: str, **fields: Any) -> dict[str, Any]:
    """The configuration of a server script of `mcp_servers/`, run over stdio."""
    return {"command": sys.executable, "args": [str(SERVERS / script)], **fields}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    """The demo server on one loopback port, started afresh each time (as a restarted process
    is: it knows no session of the last one)."""

    def __init__(self, transport: str) -> None:
        self.transport = transport
        self.port = free_port()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{'mcp' if self.transport == 'http' else 'sse'}"

    def start(self) -> None:
        built = demo.build()
        app = built.streamable_http_app() if self.transport == "http" else built.sse_app()
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="critical",  # not the cancelled streams of `stop`
            timeout_graceful_shutdown=0,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        for _ in range(500):
            if self._server.started:
                return
            threading.Event().wait(0.01)
        raise RuntimeError("uvicorn did not start")

    def stop(self) -> None:
        """Stop at once, open streams and all."""
        assert self._server is not None and self._thread is not None
        self._server.should_exit = True
        self._thread.join(10)


@pytest.fixture
def http_server() -> Iterator[Served]:
    served = Served("http")
    served.start()
    yield served
    served.stop()


@asynccontextmanager
async def started(servers: dict[str, Any]) -> AsyncIterator[MCPServers]:
    """The provider with these `mcpServers`, from start to close."""
    provider = MCPServers()
    await provider.start({"mcpServers": servers})  # configured by it too, when used alone
    try:
        yield provider
    finally:
        await provider.close()
