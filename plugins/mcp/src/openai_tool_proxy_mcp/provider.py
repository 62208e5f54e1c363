"""`MCPServers`: the tool provider that makes every configured MCP server's tools server tools
of the proxy."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

from mcp_types import Tool as MCPTool

from openai_tool_proxy_mcp.config import ServerConfig, read_servers
from openai_tool_proxy_mcp.connection import Connection
from openai_tool_proxy_mcp.names import openai_names
from openai_tool_proxy_mcp.tools import proxy_tool
from proxy import Tool, ToolDefinitionError, ToolProvider

log = logging.getLogger("openai_tool_proxy_mcp")


class MCPServers(ToolProvider):
    """The MCP servers of `mcpServers` (`$TOOL_PROXY_MCP_CONFIG`, `[plugin_config.mcp]`), each
    connected once for the process; their tools, named as `names` says."""

    def __init__(self) -> None:
        self._configs: list[ServerConfig] = []
        self._connections: list[Connection] = []
        self._lists: tuple[tuple[MCPTool, ...], ...] = ()  # what `_tools` was built from
        self._tools: tuple[Tool, ...] = ()

    def configure(self, config: Mapping[str, Any]) -> None:
        self._configs = [
            server for server in read_servers(config, os.environ) if not server.disabled
        ]

    def servers(self) -> list[str]:
        return [server.name for server in self._configs]

    async def start(self, config: Mapping[str, Any]) -> None:
        """Start every server at once; return when each connected or failed its first try."""
        self.configure(config)
        self._connections = [Connection(server) for server in self._configs]
        await asyncio.gather(*(connection.start() for connection in self._connections))

    def tools(self) -> Sequence[Tool]:
        lists = tuple(connection.tools for connection in self._connections)
        if len(lists) != len(self._lists) or any(
            now is not seen for now, seen in zip(lists, self._lists, strict=True)
        ):
            self._lists, self._tools = lists, self._built(lists)
        return self._tools

    async def close(self) -> None:
        connections, self._connections = self._connections, []
        await asyncio.gather(*(connection.close() for connection in connections))

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
