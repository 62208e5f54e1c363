"""Client authentication: when keys are configured, `/v1` requests must present one (Bearer),
and the scope then says which client presented it."""

from __future__ import annotations

import hmac

from starlette.types import Scope

from proxy.config import Client
from proxy.errors import APIError

# The scope key under which the `Client` of a config-file key is found (absent for a key of
# `api_keys`, and without client keys).
CLIENT = "proxy.client"

# Where a client's credentials come, in the order they are looked for; with the headers that
# carry any other secret, what a tool may never read.
CREDENTIAL_HEADERS = ("authorization", "api-key", "x-api-key")
SECRET_HEADERS = frozenset({*CREDENTIAL_HEADERS, "proxy-authorization", "cookie"})


class ClientKeys:
    """The keys a `/v1` request must present one of: one header lookup and one constant-time
    comparison per key."""

    def __init__(self, keys: tuple[str, ...], clients: tuple[Client, ...]) -> None:
        self.keys = [key.encode() for key in keys] + [client.key.encode() for client in clients]
        self.holders: list[Client | None] = [None for _ in keys] + list(clients)

    def check(self, scope: Scope, authorization: bytes | None) -> APIError | None:
        """The error that refuses the request, if any; the scope gets the `Client` whose key
        it presented (`CLIENT`)."""
        if not scope["path"].startswith("/v1"):
            return None
        found = self._match(authorization)
        if found is None:
            return APIError.of(
                401,
                "Incorrect API key provided. Use one of the proxy's client keys "
                "(TOOL_PROXY_API_KEYS, or a [clients.NAME] key of its config file) as the "
                "Bearer token.",
                code="invalid_api_key",
            )
        holder = self.holders[found]
        if holder is not None:
            scope[CLIENT] = holder
        return None

    def _match(self, authorization: bytes | None) -> int | None:
        """Which key `authorization` (the first such header) presents, by its place in
        `keys`; None for none known."""
        if authorization is None:
            return None
        scheme, _, token = authorization.partition(b" ")
        if scheme.lower() != b"bearer":
            return None
        token = token.strip()
        for i, key in enumerate(self.keys):
            if hmac.compare_digest(token, key):
                return i
        return None
