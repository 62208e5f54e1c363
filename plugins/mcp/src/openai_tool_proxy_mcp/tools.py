"""An MCP tool as the proxy's `Tool`: the server's description and input schema as the
function's, its origin (server, and its name there), and a handler calling it on the server's
shared connection."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from mcp_types import Tool as MCPTool

from openai_tool_proxy_mcp.connection import Connection
from openai_tool_proxy_mcp.results import result_text
from proxy import Origin, Tool


def proxy_tool(name: str, tool: MCPTool, connection: Connection) -> Tool:
    """The proxy's tool `name` for `connection`'s server's `tool`; `ToolDefinitionError` when
    its input schema is no JSON schema."""
    return Tool(
        name=name,
        description=tool.description or tool.title or "",
        parameters=tool.input_schema,
        handler=_handler(connection, tool.name),
        timeout=connection.config.timeout,
        origin=Origin(
            connection.name,
            tool.name,
            read_only=bool(tool.annotations and tool.annotations.read_only_hint),
        ),
    )


def _handler(connection: Connection, tool: str) -> Callable[..., Awaitable[str]]:
    async def call(**arguments: Any) -> str:
        return result_text(await connection.call(tool, arguments))

    return call
