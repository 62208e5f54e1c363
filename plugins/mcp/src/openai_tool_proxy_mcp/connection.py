"""One MCP server, connected once per process and shared by every request: calls go out
concurrently on its one session (the SDK tells their answers apart), and the connection looks
after itself — a server that dies is reconnected (restarted, for stdio) with backoff, while its
tools answer with a clear error; a server that changes its tools is listed again."""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from typing import Any

import anyio
from mcp import Client, Implementation
from mcp.client import IncomingMessage
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED, CallToolResult, ToolListChangedNotification
from mcp_types import Tool as MCPTool

from openai_tool_proxy_mcp.config import ServerConfig
from openai_tool_proxy_mcp.transport import transport_for
from proxy import ToolError, __version__

log = logging.getLogger("openai_tool_proxy_mcp")

CLIENT_INFO = Implementation(name="openai-tool-proxy", version=__version__)
HEALTHY = 10.0  # seconds a connection must have lasted for its loss to start backoff afresh
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
CLOSED = "the server closed the connection"
FORGOTTEN = "the server ended the session (it restarted, or the session expired)"


def backoff(failures: int) -> float:
    """Seconds before the next attempt after `failures` failures in a row: none after the
    first (a server that died is restarted at once), then 0.5 s, doubling up to 30 s."""
    return 0.0 if failures <= 1 else min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (failures - 2))


class Connection:
    """The connection to one server, kept up by a task of its own from `start` to `close`."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.name = config.name
        # The server's tools the model may see, as last listed; replaced, never changed, and
        # only when they differ: the provider rebuilds its tools when this is another object.
        self.tools: tuple[MCPTool, ...] = ()
        self.cause = "it has not started yet"  # why it is not connected, when it is not
        self._live: _Link | None = None  # the connection calls go to
        self._settled = asyncio.Event()  # clear while an attempt to connect is under way
        self._started = asyncio.Event()  # the first attempt is over
        self._failures = 0  # in a row: attempts that failed, and connections soon lost
        self._connected_once = False
        self._task: asyncio.Task[None] | None = None
        # Cancelled by `close`: the SDK's anyio scopes may swallow a task's own cancellation
        # (one arriving as they clean up), never that of a scope around them.
        self._running = anyio.CancelScope()

    async def start(self) -> None:
        """Connect (returning once the first attempt succeeded or failed), and keep connected."""
        self._task = asyncio.create_task(self._supervise(), name=f"MCP server {self.name}")
        await self._started.wait()

    async def close(self) -> None:
        """Disconnect (a stdio server's process ends) and stop reconnecting."""
        self._live, self.cause = None, "the proxy is shutting down"  # its end is no loss
        self._settled.set()
        self._running.cancel()
        if self._task is not None:
            await asyncio.wait([self._task])

    async def call(
        self, tool: str, arguments: dict[str, Any], *, again: bool = True
    ) -> CallToolResult:
        """The server's result of a call to its tool `tool`; `ToolError` when there is none:
        the server is not connected, it refused the call, or the connection was lost. A call
        the server refused because it forgot the session goes `again` to the next one."""
        link = await self._ready()
        try:
            return await link.client.call_tool(tool, arguments)
        except MCPError as exc:
            if again and link.forgotten:  # refused unseen: run it in the new session
                return await self.call(tool, arguments, again=False)
            if exc.code == CONNECTION_CLOSED:
                self._end(link, CLOSED)  # the next calls need not find out the same way
                raise ToolError(
                    f"the connection to MCP server {self.name!r} was lost during the call; "
                    "reconnecting"
                ) from exc
            raise ToolError(exc.error.message) from exc

    async def _ready(self) -> _Link:
        """The live connection, waiting for an attempt under way to end."""
        if self._live is None and not self._settled.is_set():
            await self._settled.wait()
        if self._live is None:
            raise ToolError(
                f"MCP server {self.name!r} is not connected: {self.cause}; reconnecting"
            )
        return self._live

    async def _supervise(self) -> None:
        with self._running:
            while True:
                await asyncio.sleep(backoff(self._failures))
                self._settled.clear()
                link = _Link(self)
                try:
                    await self._run(link)
                except Exception as exc:
                    cause = _describe(exc, self.config)
                else:
                    cause = link.lost or CLOSED
                if link.connected:
                    self._end(link, cause)
                else:
                    self._failed(cause)

    async def _run(self, link: _Link) -> None:
        """Connect, list the tools, then serve until the connection is lost."""
        async with AsyncExitStack() as stack:
            async with asyncio.timeout(self.config.startup_timeout):
                await stack.enter_async_context(link.client)
                tools = await self._listed(link.client)
            self._up(link, tools)
            while link.lost is None:
                await link.changed.wait()
                link.changed.clear()
                if link.relist and link.lost is None:
                    link.relist = False
                    await self._relist(link.client)

    async def _listed(self, client: Client) -> tuple[MCPTool, ...]:
        """The server's tools (every page) that the model may see."""
        tools: list[MCPTool] = []
        cursor: str | None = None
        while True:
            page = await client.list_tools(cursor=cursor)
            tools += page.tools
            cursor = page.next_cursor
            if cursor is None:
                return tuple(tool for tool in tools if self.config.offers(tool.name))

    async def _relist(self, client: Client) -> None:
        """List the tools again, the server having said they changed (a failure ends the
        connection: the next one lists them)."""
        tools = await self._listed(client)
        self._offer(tools)
        log.info("MCP server %r changed its tools: %d now", self.name, len(tools))

    def _offer(self, tools: tuple[MCPTool, ...]) -> None:
        if tools != self.tools:
            self.tools = tools

    def _up(self, link: _Link, tools: tuple[MCPTool, ...]) -> None:
        link.connected, link.since = True, asyncio.get_running_loop().time()
        self._offer(tools)
        self._live = link
        if self._connected_once:
            log.info("MCP server %r reconnected", self.name)
        else:
            after = f" (after {self._failures} failed attempts)" if self._failures else ""
            log.info("MCP server %r connected%s: %d tools", self.name, after, len(tools))
        self._connected_once = True
        self._settled.set()
        self._started.set()

    def _failed(self, cause: str) -> None:
        """An attempt to connect failed: logged once at start, quietly retried after that."""
        self._failures += 1
        self.cause = cause
        if self._started.is_set():
            log.debug("MCP server %r: another attempt failed: %s", self.name, cause)
        else:
            log.error(
                "MCP server %r (%s) could not start: %s; its tools are unavailable until it "
                "does, and it is retried in the background",
                self.name,
                self.config.endpoint,
                cause,
            )
        self._settled.set()
        self._started.set()

    def _end(self, link: _Link, cause: str) -> None:
        """`link` is over (told by its transport, or by the task serving it): if calls were
        going to it, they wait for the reconnection that starts at once, or fail meanwhile."""
        if link.lost is None:
            link.lost = cause
            link.changed.set()
        if self._live is not link:
            return
        self._live, self.cause = None, cause
        lasted = asyncio.get_running_loop().time() - link.since
        self._failures = (0 if lasted >= HEALTHY else self._failures) + 1
        if backoff(self._failures) == 0:
            self._settled.clear()
        log.warning("MCP server %r disconnected: %s; reconnecting", self.name, cause)


class _Link:
    """One connection to the server: its client, and what became of it."""

    def __init__(self, connection: Connection) -> None:
        self.connected = False
        self.since = 0.0
        self.lost: str | None = None
        self.forgotten = False  # the server refused a request: it no longer knows the session
        self.relist = False
        self.changed = asyncio.Event()  # `lost` or `relist` was set
        transport = transport_for(
            connection.config, lambda: connection._end(self, CLOSED), self._forgotten
        )
        self._connection = connection
        self.client = Client(
            transport,
            mode="legacy",  # the initialize handshake, which every server speaks: see README
            cache=None,
            message_handler=self._message,
            client_info=CLIENT_INFO,
        )

    def _forgotten(self) -> None:
        self.forgotten = True
        self._connection._end(self, FORGOTTEN)

    async def _message(self, message: IncomingMessage) -> None:
        if isinstance(message, ToolListChangedNotification):
            self.relist = True
            self.changed.set()


def _describe(exc: BaseException, config: ServerConfig) -> str:
    """Why an attempt failed or a connection ended, in words."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {config.startup_timeout:g} seconds (startup_timeout)"
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, MCPError) and exc.code == CONNECTION_CLOSED:
        return CLOSED
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
