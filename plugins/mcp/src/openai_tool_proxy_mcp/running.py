"""The configured servers while the proxy runs: a connection to each, and their tools as the
proxy's, named as `names` says — rebuilt only when a server's list changed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from mcp_types import Tool as MCPTool

from openai_tool_proxy_mcp.config import ServerConfig
from openai_tool_proxy_mcp.connection import Connection
from openai_tool_proxy_mcp.names import openai_names
from openai_tool_proxy_mcp.tools import proxy_tool
from proxy import Tool, ToolDefinitionError

log = logging.getLogger("openai_tool_proxy_mcp")


class Running:
    """The servers of `configs`, from `start` to `close`."""

    def __init__(self, configs: Sequence[ServerConfig]) -> None:
        self._connections = [Connection(server) for server in configs]
        self._lists: tuple[tuple[MCPTool, ...], ...] = ()  # what `_tools` was built from
        self._tools: tuple[Tool, ...] = ()

    async def start(self) -> None:
        """Start every server at once; return when each connected or failed its first try."""
        await asyncio.gather(*(connection.start() for connection in self._connections))

    def tools(self) -> tuple[Tool, ...]:
        """The tools now: the same object while no server's list changed."""
        lists = tuple(connection.tools for connection in self._connections)
        if len(lists) != len(self._lists) or any(
            now is not seen for now, seen in zip(lists, self._lists, strict=True)
        ):
            self._lists, self._tools = lists, self._built(lists)
        return self._tools

    async def close(self) -> None:
        await asyncio.gather(*(connection.close() for connection in self._connections))

    def _built(self, lists: tuple[tuple[MCPTool, ...], ...]) -> tuple[Tool, ...]:
        offered = [
            (connection, tool)
            for connection, tools in zip(self._connections, lists, strict=True)
            for tool in tools
        ]
        names = openai_names((connection.name, tool.name) for connection, tool in offered)
        built = []
        for connection, tool in offered:
            try:
                built.append(proxy_tool(names[connection.name, tool.name], tool, connection))
            except ToolDefinitionError as exc:
                log.warning(
                    "MCP server %r: tool %r left out, the proxy cannot offer it: %s",
                    connection.name,
                    tool.name,
                    exc,
                )
        return tuple(built)
