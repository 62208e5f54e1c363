"""The Chat Completions dialect: tools injected into the request, history carried across rounds."""

from __future__ import annotations

from typing import Any

from proxy.chat.completion import ChatCompletionReader
from proxy.chat.memory import mixed_round
from proxy.chat.stream import ChatStream
from proxy.loop.round import RoundOutcome
from proxy.loop.tool_choice import relaxed
from proxy.request_checks import CHAT_REQUEST, checked
from proxy.tools.registry import Registry
from proxy.tools.runner import ToolResult


def client_tool_names(body: dict[str, Any]) -> set[str]:
    """Names the client's own tools and legacy functions claim for this request."""
    names = set()
    for spec in body.get("tools") or []:
        if isinstance(spec, dict):
            fn = spec.get("function")
            name = fn.get("name") if isinstance(fn, dict) else spec.get("name")
            if isinstance(name, str):
                names.add(name)
    for spec in body.get("functions") or []:
        if isinstance(spec, dict) and isinstance(spec.get("name"), str):
            names.add(spec["name"])
    return names


def check_request(body: Any) -> dict[str, Any]:
    """The request body as a dict, or OpenAI's 400 naming a value the proxy cannot read."""
    return checked(body, CHAT_REQUEST)


class ChatConversation:
    """One `/chat/completions` request across its rounds (implements `Conversation`)."""

    path = "/chat/completions"

    def __init__(self, body: dict[str, Any], registry: Registry) -> None:
        claimed = client_tool_names(body)
        tools = [entry.tool for name, entry in registry.items() if name not in claimed]
        self.server_tools = frozenset(t.name for t in tools)
        self.legacy = bool(body.get("functions")) and not body.get("tools")
        if self.legacy:
            body["functions"] = [*body["functions"], *(t.chat_function for t in tools)]
        elif tools:
            body["tools"] = [
                *(body.get("tools") or []),
                *(t.chat_tool for t in tools),
            ]
        self.body = body
        self.history: list[dict[str, Any]] = []
        self.outcome: RoundOutcome | None = None  # of the last round
        self.hidden: dict[str, str] = {}  # a mixed round's server calls: id -> result
        self.streaming = bool(body.get("stream"))
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        self.reader: ChatStream | ChatCompletionReader = (
            ChatStream(self.server_tools, include_usage)
            if self.streaming
            else ChatCompletionReader(self.server_tools)
        )

    @property
    def intercepts(self) -> bool:
        """Whether any server tool takes part (one choice only: `n` > 1 passes straight on)."""
        return bool(self.server_tools) and self.body.get("n") in (None, 1)

    def request(self) -> dict[str, Any]:
        if not self.history:
            return self.body
        return {**self.body, "messages": [*self.body["messages"], *self.history]}

    def feed(self, data: bytes) -> bytes:
        return self.reader.feed(data)

    def end_round(self) -> RoundOutcome:
        self.outcome = self.reader.end_round()
        return self.outcome

    def add_results(
        self, outcome: RoundOutcome, results: list[ToolResult], *, last: bool
    ) -> list[bytes]:
        message = self.reader.message
        self.history.append(message.message())
        for result in results:
            if message.legacy:
                self.history.append(
                    {"role": "function", "name": result.call.name, "content": result.output}
                )
            else:
                self.history.append(
                    {"role": "tool", "tool_call_id": result.call.id, "content": result.output}
                )
        key = "function_call" if self.legacy else "tool_choice"
        if last:
            self.body[key] = "none"
        elif self.body.get(key) is not None:
            self.body[key] = relaxed(self.body[key])
        if outcome.client_calls:  # a mixed round ends here: finish() still needs it
            self.hidden = {result.call.id: result.output for result in results}
        else:
            self.reader.start_round()
        return []

    def remembrance(self) -> dict[str, Any] | None:
        """The last round, when it gave the client calls to answer (see `ChatMemory`): the
        hidden calls of a mixed round, or none — so a follow-up the store does not know is
        one whose state expired."""
        outcome = self.outcome
        if outcome is None or not outcome.client_calls or outcome.failed or outcome.error:
            return None
        if self.reader.message.legacy:
            return None  # one call a message: no round is mixed
        return mixed_round(self.reader.message.message(), self.hidden)

    def finish(self) -> list[bytes]:
        return self.reader.finish()

    def fail(self, message: str, code: str) -> list[bytes]:
        return self.reader.fail(message, code)
