"""Client authentication: when keys are configured, `/v1` requests must present one (Bearer)."""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from proxy.errors import APIError


class ClientKeys:
    """Pure ASGI middleware (no per-request overhead beyond one header lookup)."""

    def __init__(self, app: ASGIApp, keys: tuple[str, ...]) -> None:
        self.app = app
        self.keys = [k.encode() for k in keys]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1") and not self._allowed(scope):
            error = APIError.of(
                401,
                "Incorrect API key provided. Use one of the keys set in TOOL_PROXY_API_KEYS "
                "as the Bearer token.",
                code="invalid_api_key",
            )
            await error.response()(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _allowed(self, scope: Scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    token = token.strip()
                    return any(hmac.compare_digest(token, key) for key in self.keys)
        return False
