"""The front door: the one ASGI layer every request passes, outermost.

In order, a request is observed (`proxy.observe.observer`: its id, span, metrics and log
line), admitted (`proxy.admission`: its head, body and path bounded), its key checked
(`proxy.auth`) and its tools chosen (`proxy.policy`). Then the routes the proxy answers
itself — Chat Completions and Responses, its hot path — are served here, as Starlette's
router and exception layers would serve them; every other request goes on into Starlette.

Why one layer, and a lane past the router: every ASGI layer is one more call per request and
per relayed chunk, each touching code and objects of its own — and with caches cold (sporadic
traffic; the benchmark's interleaved rounds), what a request touches is what it costs. Four
middlewares plus Starlette's router and its two exception layers cost about 0.18 ms of the
time to first token when the app was driven directly with its caches evicted; with this
layer, the benchmark's interleaved figure went from 0.34 to 0.25 ms over the stack floor.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.requests import Request
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from proxy.admission import Admission
from proxy.auth import ClientKeys
from proxy.errors import APIError, crashed
from proxy.head import Head, read_head
from proxy.observe import tracing
from proxy.observe.observer import Observer
from proxy.policy import ToolPolicy
from proxy.tools.context import CALLER


class Front:
    """`lanes`: the POST routes served here. `keys`: None when the proxy takes any key."""

    def __init__(
        self,
        app: ASGIApp,
        observer: Observer,
        admission: Admission,
        keys: ClientKeys | None,
        policy: ToolPolicy,
        lanes: Sequence[Route],
    ) -> None:
        self.app = app
        self.observer = observer
        self.admission = admission
        self.keys = keys
        self.policy = policy
        self.lanes = {route.path: route for route in lanes}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        head = read_head(scope)
        record, token = self.observer.begin(scope, head)
        attributes = {"http.request.method": scope["method"], "url.path": scope["path"]}
        try:
            with tracing.current(scope["method"], attributes) as span:
                try:
                    sending = self.observer.sender(record, send)
                    await self._admitted(scope, head, record.id, receive, sending)
                except BaseException:
                    record.status = record.status or 500
                    raise
                finally:
                    self.observer.finish(record, scope, span)
        finally:
            self.observer.end(record, token)

    async def _admitted(
        self, scope: Scope, head: Head, request_id: str, receive: Receive, send: Send
    ) -> None:
        error, receive = self.admission.admit(scope, head, receive)
        if error is None and self.keys is not None:
            error = self.keys.check(scope, head.authorization)
        if error is not None:
            await error.response()(scope, receive, send)
            return
        caller = self.policy.apply(scope, head, request_id)
        try:
            lane = self.lanes.get(scope["path"]) if scope["method"] == "POST" else None
            if lane is None:
                await self.app(scope, receive, send)
            else:
                await _serve(lane, scope, receive, send)
        finally:
            CALLER.reset(caller)


async def _serve(route: Route, scope: Scope, receive: Receive, send: Send) -> None:
    """`route`'s endpoint, its `APIError` answered as the error it carries, and anything else
    it raises as Starlette's error layer would: a 500 in the OpenAI format, then raised on
    (the server logs it)."""
    scope["route"] = route
    try:
        response = await route.endpoint(Request(scope, receive, send))
    except APIError as exc:
        response = exc.response()
    except Exception as exc:
        await crashed(exc).response()(scope, receive, send)
        raise
    await response(scope, receive, send)
