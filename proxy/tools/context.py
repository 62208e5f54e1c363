"""The request a tool call serves, for tools that act with the caller's identity.

A tool asks for it by declaring a parameter typed `RequestContext`: the model never sees that
parameter (it is not in the schema) and the runner passes it in. The app says once per
request who is calling (`calling`); each tool then gets only the headers it chose.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Any

from proxy.auth import SECRET_HEADERS


@dataclass(frozen=True)
class RequestContext:
    """The request a tool call serves: its id (the `X-Request-ID` header), the name of the
    client key it presented (None without `[clients.NAME]` keys), and the headers the tool
    asked for (`@tool(context_headers=[...])`) that it carried, by lower-case name."""

    request_id: str | None = None
    client: str | None = None
    headers: Mapping[str, str] = field(default_factory=lambda: types.MappingProxyType({}))


@dataclass(frozen=True)
class Caller:
    """What the app knows of the request being served; each tool sees a part of it."""

    request_id: str | None
    client: str | None
    headers: Iterable[tuple[bytes, bytes]]  # as the ASGI scope has them: names lower-case

    def context(self, wanted: frozenset[str]) -> RequestContext:
        """The context of a tool that asked for the headers `wanted` (lower-case); several
        fields of one name are joined with commas, as HTTP reads them."""
        chosen: dict[str, str] = {}
        if wanted:
            for raw, value in self.headers:
                name = raw.decode("latin-1")
                if name in wanted:
                    text = value.decode("latin-1")
                    chosen[name] = f"{chosen[name]}, {text}" if name in chosen else text
        return RequestContext(self.request_id, self.client, types.MappingProxyType(chosen))


_SECRET = frozenset(name.encode() for name in SECRET_HEADERS)  # as the scope names them

# The request being served in this task (each ASGI request runs in a task of its own).
CALLER: ContextVar[Caller | None] = ContextVar("proxy_caller", default=None)


def calling(
    request_id: str | None, client: str | None, headers: Iterable[tuple[bytes, bytes]]
) -> Token[Caller | None]:
    """Say who the current request's tool calls serve (its secret headers left out: no tool
    can read them); the token resets it."""
    kept = [(n, v) for n, v in headers if n not in _SECRET]
    return CALLER.set(Caller(request_id, client, kept))


def context_parameter(fn: Callable[..., Any]) -> str | None:
    """The name of `fn`'s parameter typed `RequestContext`, if it declares one."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # hints Python cannot resolve: no parameter is known to be the context
        return None
    hints.pop("return", None)
    return next((name for name, hint in hints.items() if _is_context(hint)), None)


def _is_context(hint: Any) -> bool:
    """`RequestContext`, or `RequestContext | None` (so the function stays callable alone)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return RequestContext in typing.get_args(hint)
    return hint is RequestContext
