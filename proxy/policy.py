"""Which server tools a request may use: those its client key may use (`[clients.NAME]` in
the config file; every tool for any other key), narrowed for one request by the
`X-Tool-Proxy-Tools` header — never widened, as a gateway's per-request selection narrows
the access a key already has and grants none. And whom their calls serve
(`proxy.tools.context`).
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from contextvars import Token

from starlette.types import Scope

from proxy.auth import CLIENT
from proxy.config import Client, ConfigError
from proxy.head import Head
from proxy.tools.context import Caller, calling
from proxy.tools.registry import Registry

# The scope key under which the `Registry` of the tools the request may use is found.
TOOLS = "proxy.tools"


log = logging.getLogger("proxy")


def check_clients(clients: Collection[Client], registry: Registry) -> None:
    """Refuse to start with an allow-list naming a tool no plugin registered: a misspelt
    name would otherwise deny the tool without a word."""
    for client in clients:
        unknown = [name for name in client.tools or () if name not in registry]
        if unknown and registry.providers:  # their tools are known once they started
            log.warning(
                "clients.%s may use tool(s) %s that no plugin registers yet: one of the tool "
                "providers (%s) must offer them once started",
                client.name,
                ", ".join(map(repr, unknown)),
                ", ".join(registry.providers),
            )
        elif unknown:
            raise ConfigError(
                f"clients.{client.name} may use tool(s) {', '.join(map(repr, unknown))}, but "
                f"no plugin registers them; registered: {', '.join(registry) or 'none'}"
            )


def check_started(clients: Collection[Client], registry: Registry) -> None:
    """Once the tool providers started: an allow-list naming a tool none of them offers is
    logged as an error (a misspelling, or a server that did not start)."""
    for client in clients:
        unknown = [name for name in client.tools or () if name not in registry]
        if unknown:
            log.error(
                "clients.%s may use tool(s) %s that no plugin offers (a misspelt name, or a "
                "provider whose server did not start); offered: %s",
                client.name,
                ", ".join(map(repr, unknown)),
                ", ".join(registry) or "none",
            )


class ToolPolicy:
    """Puts the request's tools in the scope (`TOOLS`) and says whom the request's tool calls
    serve; applied by `proxy.front`, after the key check. The header is the proxy's, never the
    upstream's: `proxy.head` leaves it out of the headers that go on."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def apply(self, scope: Scope, head: Head, request_id: str) -> Token[Caller | None]:
        """Reset the returned token (`CALLER.reset`) when the request is over."""
        client: Client | None = scope.get(CLIENT)
        scope[TOOLS] = self._tools(head.tools, client)
        return calling(request_id, None if client is None else client.name, head.forwarded)

    def _tools(self, header: list[bytes], client: Client | None) -> Registry:
        names = None if client is None or client.tools is None else set(client.tools)
        asked = _asked(header)
        if asked is not None:
            names = asked if names is None else names & asked
        registry = self.registry.now()  # one view for the whole request
        if names is None:
            return registry
        return Registry(entry for name, entry in registry.items() if name in names)


def _asked(values: list[bytes]) -> set[str] | None:
    """The names the header's `values` ask for (none for `none`); None without the header,
    or with an empty one."""
    if not values:
        return None
    text = b",".join(values).decode("latin-1").strip()
    if "none" in {name.strip().lower() for name in text.split(",")}:
        return set()  # `none` wins over any name beside it
    return {name.strip() for name in text.split(",")} - {""} or None
