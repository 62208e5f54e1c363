"""What the engine and a dialect tell each other about one upstream round."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from proxy.tools.runner import ToolCall, ToolResult


@dataclass
class RoundOutcome:
    """How a round ended: the server calls to run, whether the client got calls of its own,
    whether the upstream reported an error (already passed on to the client), or why the
    body itself was wrong."""

    server_calls: list[ToolCall] = field(default_factory=list)
    client_calls: int = 0
    failed: bool = False
    tail: list[bytes] = field(default_factory=list)  # client bytes the body's end released
    error: str | None = None  # the body ended wrongly (e.g. cut short): why


class Conversation(Protocol):
    """One client request's dialogue with the upstream, across rounds — sans-I/O.

    The engine does the I/O: it sends `request()`, feeds the upstream's body to `feed`, asks
    `end_round()` what happened, runs the tools, and hands their results to `add_results`.
    """

    path: str
    streaming: bool

    def request(self) -> dict[str, Any]:
        """The JSON body of the next upstream request."""

    def feed(self, data: bytes) -> bytes:
        """Bytes of the upstream body (torn anywhere) in; the bytes for the client now out
        (empty when there are none yet)."""

    def end_round(self) -> RoundOutcome:
        """The upstream body ended."""

    def add_results(
        self, outcome: RoundOutcome, results: list[ToolResult], *, last: bool
    ) -> list[bytes]:
        """Take the tools' results: prepare the next round, whose request carries this round's
        output plus the results (`last` asks for a round in which the model may call no
        tool), and return any bytes that show the results to the client."""

    def finish(self) -> list[bytes]:
        """Close the client's response (stream tail, or the whole non-streaming body)."""

    def fail(self, message: str, code: str) -> list[bytes]:
        """Close a stream that already started with the API's own error event."""
