"""An MCP server built with the SDK's low-level `Server`, over stdio, for what `MCPServer` will
not do: tools listed one per page, names OpenAI refuses, and an input schema that is no JSON
schema."""

from __future__ import annotations

from typing import Any

import anyio
from mcp.server import Server
from mcp.server.context import ServerRequestContext
from mcp.server.stdio import stdio_server
from mcp_types import (
    CallToolRequestParams,
    CallToolResult,
    ListToolsResult,
    PaginatedRequestParams,
    TextContent,
    Tool,
)

OBJECT = {"type": "object", "properties": {}}
LONG = "a" * 70
TOOLS = [
    Tool(name="first", title="The first page's", input_schema=OBJECT),
    Tool(name="files/read.all", description="A name with / and .", input_schema=OBJECT),
    Tool(name=LONG, description="A name too long.", input_schema=OBJECT),
    Tool(
        name="broken",
        description="Its schema is no JSON schema.",
        input_schema={"type": "object", "properties": {"x": {"type": 5}}},
    ),
]


async def list_tools(
    ctx: ServerRequestContext[Any], params: PaginatedRequestParams | None
) -> ListToolsResult:
    page = int(params.cursor) if params is not None and params.cursor else 0
    following = str(page + 1) if page + 1 < len(TOOLS) else None
    return ListToolsResult(tools=[TOOLS[page]], next_cursor=following)


async def call_tool(
    ctx: ServerRequestContext[Any], params: CallToolRequestParams
) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=f"{params.name} called")])


server: Server[Any] = Server("paged", on_list_tools=list_tools, on_call_tool=call_tool)


async def main() -> None:
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


if __name__ == "__main__":
    anyio.run(main)
