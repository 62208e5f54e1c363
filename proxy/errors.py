"""Errors in the OpenAI format: `{"error": {"message", "type", "param", "code"}}`."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response


def error_body(
    message: str,
    type: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


class APIError(Exception):
    """Anything the proxy answers with an error: carries the status and the exact body."""

    def __init__(
        self,
        status: int,
        body: bytes,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(body.decode("utf-8", "replace"))
        self.status = status
        self.body = body
        self.headers = headers or {"content-type": "application/json"}

    @classmethod
    def of(
        cls,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> APIError:
        """An error of the proxy's own, in the OpenAI format."""
        return cls(status, orjson.dumps(error_body(message, type, param, code)))

    def response(self) -> Response:
        return Response(self.body, status_code=self.status, headers=self.headers)


def crashed(exc: Exception) -> APIError:
    """The 500 of a request the proxy itself failed."""
    return APIError.of(
        500, f"the proxy failed: {type(exc).__name__}: {exc}", "server_error", code="proxy_error"
    )
