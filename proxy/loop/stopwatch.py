"""How long the proxy itself worked on a request — not waiting on the upstream, a tool or the
client. Reported per request as `x-tool-proxy-overhead-ms`, so users can check in production
what the proxy costs them."""

from __future__ import annotations

from time import perf_counter

HEADER = b"x-tool-proxy-overhead-ms"


class Stopwatch:
    __slots__ = ("_since", "total")

    def __init__(self) -> None:
        self.total = 0.0
        self._since = perf_counter()

    def pause(self) -> None:
        self.total += perf_counter() - self._since

    def resume(self) -> None:
        self._since = perf_counter()

    @property
    def ms(self) -> str:
        return f"{self.total * 1000:.3f}"

    def comment(self) -> bytes:
        """The total as an SSE comment, to end a stream with."""
        return b": %s=%s\n\n" % (HEADER, self.ms.encode())
