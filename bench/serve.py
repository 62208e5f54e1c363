"""The servers the benchmark measures: the proxy (with an instant server tool; with
`$BENCH_TOOLS` N tools in all, and `$BENCH_MAX_ROUNDS` as its round limit), a bare
pass-through proxy built the naive way (Starlette + httpx, bytes relayed as they come), and
two floors: the proxy's own stack relaying bytes with no logic (`stack`), and a process that
only pipes bytes (`floor`)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from proxy import Tool, server, tool
from proxy.app import create_app
from proxy.config import Settings
from proxy.http1 import Http1Transport
from proxy.tools.registry import Registry
from proxy.upstream import raw_headers


@tool
async def bench_echo(text: str) -> str:
    """Echo the text back (instantly: the benchmark measures the proxy, not the tool)."""
    return text


def catalogue(count: int) -> list[Tool]:
    """`count` more instant tools, each with a schema of a real tool's size and shape (a
    description, six typed parameters, an enum, bounds, a required one: some 900 bytes), for
    the cost of registering many (`BENCH_TOOLS`)."""

    async def search(**arguments: Any) -> str:
        return "[]"  # nothing found, at once

    kinds = ("ticket", "invoice", "order", "contact", "shipment", "incident", "contract")
    tools = []
    for i in range(count):
        kind = kinds[i % len(kinds)]
        parameters = {
            "type": "object",
            "properties": {
                "query": {
                    "type": "string",
                    "description": f"Free text searched in the {kind}'s title and body.",
                },
                "status": {
                    "type": "string",
                    "enum": ["open", "pending", "resolved", "closed", "archived"],
                    "description": f"Only {kind}s in this state.",
                },
                "created_after": {
                    "type": "string",
                    "format": "date",
                    "description": f"ISO date: {kind}s created on or after it.",
                },
                "limit": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 100,
                    "description": f"How many {kind}s to return at most (default 20).",
                },
                "fields": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": f"The {kind} fields to include in each result.",
                },
                "include_archived": {
                    "type": "boolean",
                    "description": f"Also search archived {kind}s.",
                },
            },
            "required": ["query"],
            "additionalProperties": False,
        }
        tools.append(
            Tool(
                name=f"search_{kind}s_{i}",
                description=f"Search the {kind}s of workspace {i} by text, state and date; "
                f"returns the matching {kind}s as JSON, newest first.",
                parameters=parameters,
                handler=search,
            )
        )
    return tools


def bare_app(upstream: str) -> Starlette:
    client = httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=None))

    async def relay(request: Request) -> Response:
        headers = [
            (k, v) for k, v in request.headers.items() if k not in ("host", "content-length")
        ]
        upstream_request = client.build_request(
            request.method,
            upstream + request.url.path.removeprefix("/v1"),
            headers=headers,
            content=await request.body(),
        )
        response = await client.send(upstream_request, stream=True)

        async def body() -> AsyncIterator[bytes]:
            try:
                async for chunk in response.aiter_raw():
                    yield chunk
            finally:
                await response.aclose()

        return StreamingResponse(
            body(),
            status_code=response.status_code,
            media_type=response.headers.get("content-type"),
        )

    return Starlette(routes=[Route("/v1/{path:path}", relay, methods=["GET", "POST"])])


def stack_app(upstream: str) -> Any:
    """The proxy's stack (its uvicorn protocol and upstream transport) relaying bytes, with
    no routing, parsing or stitching: what the stack costs before the proxy's own work."""
    transport = Http1Transport()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = [
            (name, value)
            for name, value in scope["headers"]
            if name not in (b"host", b"content-length")
        ]
        url = httpx.URL(upstream + scope["path"].removeprefix("/v1"))
        response = await transport.send_bytes(scope["method"], url, headers, body, {})
        start = {"type": "http.response.start", "status": response.status_code}
        await send({**start, "headers": raw_headers(response.headers)})
        async for chunk in response.stream:  # type: ignore[union-attr]
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        await response.aclose()

    return app


async def floor(upstream_port: int, port: int) -> None:
    """The least any proxy process can add: bytes piped both ways, nothing parsed."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
        await asyncio.gather(
            pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True
        )

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


def main() -> None:
    kind, upstream, port = sys.argv[1], sys.argv[2], int(os.environ["BENCH_PORT"])
    if kind == "floor":
        import uvloop

        uvloop.install()
        asyncio.run(floor(int(upstream.rsplit(":", 1)[1].split("/")[0]), port))
        return
    extra = catalogue(int(os.environ.get("BENCH_TOOLS", "1")) - 1)
    registry = Registry.of(bench_echo, *extra, plugin="bench")
    app: Any
    if kind == "proxy":
        rounds = int(os.environ.get("BENCH_MAX_ROUNDS", "8"))
        app = create_app(Settings(upstream=upstream, max_rounds=rounds), registry)
    elif kind == "proxy-httpx":  # httpx's own connection pool, for the transport comparison
        transport = httpx.AsyncHTTPTransport(
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=1024)
        )
        app = create_app(Settings(upstream=upstream), registry, transport)
    elif kind == "proxy-aiohttp":  # aiohttp behind httpx's API, for the transport comparison
        import aiohttp
        from httpx_aiohttp import AiohttpTransport

        def session() -> aiohttp.ClientSession:
            return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

        app = create_app(Settings(upstream=upstream), registry, AiohttpTransport(client=session))
    elif kind == "stack":
        app = stack_app(upstream)
    else:  # the naive way: uvicorn's defaults
        uvicorn.run(
            bare_app(upstream), host="127.0.0.1", port=port, log_level="warning", backlog=4096
        )
        return
    server.run(app, "127.0.0.1", port, log_level="warning", backlog=4096)


if __name__ == "__main__":
    main()
