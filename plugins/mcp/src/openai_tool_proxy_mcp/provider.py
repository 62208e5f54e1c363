"""`MCPServers`: the tool provider that makes every configured MCP server's tools server tools
of the proxy.

Installed by the README's command, it is loaded by every proxy, configured or not: the SDK (some
30 MB, and half a second to import) is imported only once a server is configured and starts."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from openai_tool_proxy_mcp.config import ServerConfig, read_servers
from proxy import Tool, ToolProvider

if TYPE_CHECKING:
    from openai_tool_proxy_mcp.running import Running


class MCPServers(ToolProvider):
    """The MCP servers of `mcpServers` (`$TOOL_PROXY_MCP_CONFIG`, `[plugin_config.mcp]`), each
    connected once for the process, and their tools."""

    def __init__(self) -> None:
        self._configs: list[ServerConfig] = []
        self._running: Running | None = None

    def configure(self, config: Mapping[str, Any]) -> None:
        self._configs = [
            server for server in read_servers(config, os.environ) if not server.disabled
        ]

    def servers(self) -> list[str]:
        return [server.name for server in self._configs]

    async def start(self, config: Mapping[str, Any]) -> None:
        """Start every server at once; return when each connected or failed its first try."""
        self.configure(config)
        if not self._configs:
            return
        from openai_tool_proxy_mcp.running import Running  # the SDK: see the module's docstring

        self._running = Running(self._configs)
        await self._running.start()

    def tools(self) -> Sequence[Tool]:
        return () if self._running is None else self._running.tools()

    async def close(self) -> None:
        running, self._running = self._running, None
        if running is not None:
            await running.close()
