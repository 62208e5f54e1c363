"""How a request uses the store: without its state a follow-up would reach the upstream with
a broken history, so a recall that fails is the request's `503`; a keep that fails (the
answer is whole, its last bytes about to go out) is logged, once, and the answer delivered."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import TypeVar

from proxy.errors import APIError
from proxy.store.base import StoreUnavailable

log = logging.getLogger("proxy.store")
T = TypeVar("T")


async def recalled(recall: Awaitable[T]) -> T:
    try:
        return await recall
    except StoreUnavailable as exc:
        raise APIError.of(
            503,
            f"The proxy's state store is unavailable ({exc}); the request needs what it holds "
            "to continue the conversation. Try again shortly.",
            "server_error",
            code="store_unavailable",
        ) from exc


async def kept(keep: Awaitable[None]) -> None:
    try:
        await keep
    except StoreUnavailable as exc:
        log.error("conversation state was not kept, the store is unavailable: %s", exc)
    except Exception:  # the answer is whole: whatever failed, it still goes out
        log.exception("conversation state was not kept")
