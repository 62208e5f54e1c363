"""An MCP server built with the SDK's `MCPServer`, for the plugin's tests: every kind of result,
errors of both sorts, slow and meeting calls, and tools added while it runs.

Run as `python demo.py` (stdio), `python demo.py http PORT` (Streamable HTTP at /mcp) or
`python demo.py sse PORT` (legacy SSE at /sse), on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections import defaultdict
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_PARAMS,
    AudioContent,
    BlobResourceContents,
    CallToolResult,
    EmbeddedResource,
    ImageContent,
    ResourceLink,
    TextContent,
    TextResourceContents,
    ToolAnnotations,
)
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response


def build() -> MCPServer:
    """A fresh server, as a restarted process would be."""
    server = MCPServer("demo", log_level="WARNING")
    meetings: defaultdict[str, list[asyncio.Event]] = defaultdict(list)

    @server.custom_route("/health", methods=["GET"])  # type: ignore[untyped-decorator]
    async def health(request: Request) -> Response:
        return PlainTextResponse("ok")

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    def echo(text: str) -> str:
        """Say the text back."""
        return text

    instance = uuid.uuid4().hex

    @server.tool()
    def about(ctx: Context) -> dict[str, Any]:
        """What the server knows of itself and of its client."""
        client = ctx.session.client_params
        return {
            "pid": os.getpid(),
            "cwd": os.getcwd(),
            "env": os.environ.get("DEMO_ENV"),
            "header": (ctx.headers or {}).get("x-demo"),
            "client": client.client_info.name if client else None,
        }

    @server.tool()
    def started() -> str:
        """Which start of the server this is (a new one each time it starts)."""
        return instance

    @server.tool()
    async def sleep(seconds: float) -> str:
        """Sleep for a while, then say so."""
        await asyncio.sleep(seconds)
        return f"slept {seconds:g} s"

    @server.tool()
    async def meet(group: str, count: int) -> str:
        """Return once `count` calls of the group are running at the same time."""
        arrived = asyncio.Event()
        meetings[group].append(arrived)
        if len(meetings[group]) >= count:
            for event in meetings[group]:
                event.set()
        await arrived.wait()
        return f"{count} met"

    @server.tool()
    def fail(message: str) -> str:
        """Fail with the message (an isError result)."""
        raise ToolError(message)

    @server.tool()
    def reject(value: int) -> str:
        """Refuse the call as a protocol error (JSON-RPC invalid params)."""
        raise MCPError(INVALID_PARAMS, f"value {value} is out of range")

    @server.tool()
    def kinds() -> CallToolResult:
        """One content block of each kind, and structured content."""
        return CallToolResult(
            content=[
                TextContent(type="text", text="a text"),
                ImageContent(type="image", data="iVBORw0KGgo=", mime_type="image/png"),
                AudioContent(type="audio", data="UklGRg==", mime_type="audio/wav"),
                ResourceLink(
                    type="resource_link",
                    name="report.pdf",
                    uri="file:///reports/report.pdf",
                    mime_type="application/pdf",
                    size=2048,
                    description="The report",
                ),
                EmbeddedResource(
                    type="resource",
                    resource=TextResourceContents(
                        uri="file:///notes.txt", mime_type="text/plain", text="a note"
                    ),
                ),
                EmbeddedResource(
                    type="resource",
                    resource=BlobResourceContents(uri="file:///data.bin", blob="AAEC"),
                ),
            ],
            structured_content={"count": 6},
        )

    @server.tool()
    async def add_tool(name: str, ctx: Context) -> str:
        """Offer one tool more, named `name`, and say the tools changed."""
        server.add_tool(lambda: f"{name} is here", name=name, description="Added while running.")
        await ctx.session.send_tool_list_changed()
        return f"added {name}"

    return server


if __name__ == "__main__":
    transport = sys.argv[1] if len(sys.argv) > 1 else "stdio"
    if transport == "http":
        build().run("streamable-http", port=int(sys.argv[2]))
    elif transport == "sse":
        build().run("sse", port=int(sys.argv[2]))
    else:
        build().run()
