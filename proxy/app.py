"""The ASGI application: routes, and the wiring of settings, tools and the upstream."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import httpx
import orjson
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from proxy.admission import Admission
from proxy.auth import ClientKeys
from proxy.chat.conversation import ChatConversation
from proxy.chat.conversation import check_request as check_chat
from proxy.chat.memory import ChatMemory
from proxy.config import Settings
from proxy.drain import SHUTTING_DOWN, SHUTTING_DOWN_CODE, Drain
from proxy.errors import APIError, crashed
from proxy.front import Front
from proxy.loop.engine import Engine, Exchange
from proxy.loop.round import Conversation
from proxy.loop.stopwatch import HEADER as OVERHEAD_HEADER
from proxy.loop.stopwatch import Stopwatch
from proxy.observe import tracing
from proxy.observe.metrics import Metrics
from proxy.observe.observer import Observer
from proxy.observe.record import current
from proxy.passthrough import relay
from proxy.policy import TOOLS, ToolPolicy, check_clients, check_started
from proxy.relay import RelayResponse
from proxy.responses.conversation import ResponsesConversation
from proxy.responses.conversation import check_request as check_responses
from proxy.responses.memory import ResponsesMemory
from proxy.store import StoreUnavailable, open_store
from proxy.store.scope import Scoped
from proxy.store.use import kept, recalled
from proxy.tools.registry import Registry, load_registry
from proxy.tools.runner import ToolRunner
from proxy.upstream import Upstream

log = logging.getLogger("proxy")

_ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def create_app(
    settings: Settings | None = None,
    registry: Registry | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Starlette:
    """Build the proxy. `registry` defaults to the installed plugins; `transport` lets tests
    and benchmarks choose how the upstream is reached."""
    settings = settings or Settings()
    if registry is None:
        registry = load_registry(settings.plugins)
    registry.configure(settings.plugin_config)
    check_clients(settings.clients, registry)
    upstream = Upstream(
        settings.upstream,
        settings.upstream_api_key,
        transport,
        settings.connect_timeout,
        settings.read_timeout,
    )
    runner = ToolRunner(
        registry,
        settings.tool_timeout,
        max_result_bytes=settings.max_tool_result_bytes,
        per_request=settings.tool_concurrency,
        total=settings.tool_concurrency_total,
        threads=settings.tool_threads,
    )
    engine = Engine(upstream, runner, settings.max_rounds)
    servers = registry.servers()  # hosted `mcp` tools naming one are the proxy's to run
    metrics = Metrics()

    store = open_store(settings.store, settings.store_ttl, settings.store_max_bytes)
    drain = Drain(settings.drain_timeout)
    keepalive = settings.keepalive_interval

    def scoped(request: Request) -> Scoped:
        raw = request.scope["headers"]  # decoded only if the store is used
        return Scoped(store, ((n.decode("latin-1"), v.decode("latin-1")) for n, v in raw))

    async def chat_completions(request: Request) -> Response:
        watch = Stopwatch()
        raw = await read_body(request)
        body = check_chat(parse_json(raw))
        memory = ChatMemory(scoped(request))
        if await recalled(memory.recall(body)):
            raw = orjson.dumps(body)
        conv = ChatConversation(body, request.scope[TOOLS])
        if not conv.intercepts:
            return await relay(upstream, request, raw)
        exchange = await engine.start(conv, *client_of(request), watch)

        async def remember() -> None:
            current().usage(conv.reader.usage)
            record = conv.remembrance()
            if record is not None:
                await kept(memory.keep(record))

        return await respond(conv, exchange, keepalive, remember)

    async def responses(request: Request) -> Response:
        watch = Stopwatch()
        raw = await read_body(request)
        body = check_responses(parse_json(raw))
        memory = ResponsesMemory(scoped(request))
        if await recalled(memory.recall(body)):
            raw = orjson.dumps(body)
        conv = ResponsesConversation(
            body, request.scope[TOOLS], settings.show_calls, servers, memory.held
        )
        if not conv.intercepts:
            return await relay(upstream, request, raw)
        if conv.approvals.decisions:  # the client's answers to calls held for approval
            conv.decide(await runner.run_all(conv.approved))
        exchange = await engine.start(conv, *client_of(request), watch)

        async def remember() -> None:
            current().usage(conv.reader.merged.usage)
            await kept(memory.keep(conv.remembrance()))

        return await respond(conv, exchange, keepalive, remember)

    async def passthrough(request: Request) -> Response:
        return await relay(upstream, request)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "tools": sorted(registry)})

    async def liveness(request: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def readiness(request: Request) -> Response:
        if drain.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        try:
            await store.ping()
        except StoreUnavailable as exc:  # where the store is stays in the log
            log.warning("not ready: %s", exc)
            return JSONResponse({"status": "store_unavailable"}, 503)
        return JSONResponse({"status": "ready"})

    async def not_found(request: Request, exc: Exception) -> Response:
        return APIError.of(
            404, f"Unknown path {request.url.path}: the proxy serves /v1/...", code="not_found"
        ).response()

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, APIError)
        return exc.response()

    async def crash(request: Request, exc: Exception) -> Response:
        return crashed(exc).response()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await registry.start(settings.plugin_config)  # providers' tools, before serving
        if registry.providers:
            check_started(settings.clients, registry)
        gc.freeze()  # what start-up built lives on: no collection need walk it again
        yield
        await registry.close()
        await upstream.aclose()
        await store.aclose()
        runner.close()
        tracing.shutdown()

    lanes = [  # served by the front door, past the router (`proxy.front`)
        Route("/v1/chat/completions", drain.guard(chat_completions), methods=["POST"]),
        Route("/v1/responses", drain.guard(responses), methods=["POST"]),
    ]
    routes = [
        *lanes,
        Route("/v1/{path:path}", drain.guard(passthrough), methods=_ALL_METHODS),
        Route("/health", health, methods=["GET"]),
        Route("/health/liveness", liveness, methods=["GET"]),
        Route("/health/readiness", readiness, methods=["GET"]),
        Route("/metrics", metrics.endpoint(lambda: runner.hung_threads), methods=["GET"]),
    ]
    keys = None
    if settings.api_keys or settings.clients:
        keys = ClientKeys(settings.api_keys or (), settings.clients)
    front = partial(
        Front,
        observer=Observer(metrics, routes),
        admission=Admission(settings.max_body_bytes, settings.max_header_bytes),
        keys=keys,
        policy=ToolPolicy(registry),
        lanes=lanes,
    )
    app = Fronted(
        front,
        routes=routes,
        exception_handlers={404: not_found, APIError: api_error, Exception: crash},
        lifespan=lifespan,
    )
    app.state.registry = registry
    app.state.upstream = upstream
    app.state.drain = drain
    app.state.store = store
    return app


class Fronted(Starlette):
    """Starlette, behind the front door (`proxy.front`): outermost, before even Starlette's
    own error layer."""

    def __init__(self, front: Callable[[ASGIApp], ASGIApp], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.front = front

    def build_middleware_stack(self) -> ASGIApp:
        return self.front(super().build_middleware_stack())


async def respond(
    conv: Conversation,
    exchange: Exchange,
    keepalive: float,
    on_end: Callable[[], Awaitable[None]],
) -> Response:
    """The client's response: streamed as the rounds go, or the one merged JSON body;
    `on_end` runs once the whole of it is known.

    A stream gets an SSE comment when it was silent `keepalive` seconds (0: never), and,
    ended early by a shutdown, the API's own error event.

    `x-tool-proxy-overhead-ms` tells the proxy's own time on the request (excluding the
    upstream and the tools): the whole of it for a JSON body; up to the first byte in the
    header of a stream, and the whole of it in an SSE comment that ends the stream.
    """
    watch = exchange.watch
    headers = [*exchange.headers, (OVERHEAD_HEADER, watch.ms.encode())]
    if conv.streaming:
        ending = partial(exchange.cut, SHUTTING_DOWN, SHUTTING_DOWN_CODE)
        return RelayResponse(
            200, headers, exchange.rest, exchange.first, on_end, ending=ending, keepalive=keepalive
        )
    await on_end()
    response = Response(exchange.first, media_type="application/json")
    own = {name for name, _ in response.raw_headers}
    response.raw_headers += [(name, value) for name, value in headers if name not in own]
    return response


def client_of(request: Request) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The client's headers and query string, as the server gave them."""
    return request.scope["headers"], request.scope.get("query_string", b"")


async def read_body(request: Request) -> bytes:
    """The request's body, read from the server's messages as they come: the request does not
    keep it (`Request.body()` would, for as long as the response streams), as once parsed the
    proxy needs only the parsed body."""
    parts = []
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts)


def parse_json(raw: bytes) -> object:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise APIError.of(
            400,
            f"We could not parse the JSON body of your request ({exc}). The body must be a "
            "JSON object.",
        ) from exc
