"""What a request costs in the number of server tools (DESIGN §7, growth): each tool's
definition is encoded once, and every request carries those bytes as they are; a walk of the
registry looks at one view of it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest

from proxy import Tool, tool
from proxy.tools.provider import ToolProvider
from proxy.tools.registry import Registry
from tests.chunks import text_round
from tests.events import message_events, stream_round


def fresh_tools() -> list[Tool]:
    """Tools no other test encoded yet (their encodings live as long as they do)."""

    @tool
    def forecast(city: str, days: int = 3) -> str:
        """The forecast for a city."""
        return f"{city}: sun for {days} days"

    @tool(strict=True)
    def convert(amount: float, currency: str) -> str:
        """Convert an amount to a currency."""
        return f"{amount} {currency}"

    return [forecast, convert]


async def test_each_tool_is_encoded_once_whatever_the_requests(
    upstream: Any, make_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: Counter[str] = Counter()
    definition = Tool.openai_function

    def counted(self: Tool) -> dict[str, Any]:
        built[self.name] += 1
        return definition(self)

    monkeypatch.setattr(Tool, "openai_function", counted)
    tools = fresh_tools()
    up = upstream(
        *(text_round("hi") for _ in range(3)),
        *(stream_round(f"resp_{i}", message_events(0, "hi")) for i in (1, 2)),
    )
    client = make_client(Registry.of(*tools))
    user = [{"role": "user", "content": "hi"}]
    legacy = {"name": "lookup", "parameters": {"type": "object", "properties": {}}}
    for functions in ([], [], [legacy]):
        chunks = await client.chat.completions.create(
            model="m", messages=user, stream=True, **({"functions": functions} if functions else {})
        )
        assert [c async for c in chunks]
    for _ in range(2):
        events = await client.responses.create(model="m", input="hi", stream=True)
        assert [e async for e in events]
    await client.close()

    assert built == {t.name: 3 for t in tools}  # a Chat tool, a legacy function, a Responses tool
    functions = [{**t.openai_function(), "strict": t.strict} for t in tools]
    chat = [{"type": "function", "function": t.openai_function()} for t in tools]
    assert [r.get("tools") for r in up.requests[:2]] == [chat, chat]
    assert up.requests[2]["functions"] == [legacy, *(t.openai_function() for t in tools)]
    responses = [{"type": "function", **f} for f in functions]
    assert [r["tools"] for r in up.requests[3:]] == [responses, responses]


class Shrinking(ToolProvider):
    """Offers two tools, then (a new list, each time it is asked again) only the first."""

    def __init__(self) -> None:
        self.asked = 0
        self.first, self.second = fresh_tools()

    def tools(self) -> Sequence[Tool]:
        self.asked += 1
        return [self.first, self.second] if self.asked == 1 else [self.first]


@pytest.mark.parametrize("view", ["items", "values", "keys"])
async def test_a_walk_of_the_registry_sees_one_view_of_it(view: str) -> None:
    registry = Registry()
    registry.provide(Shrinking(), "shrinking")
    await registry.start({})
    walked = list(getattr(registry, view)())
    assert len(walked) == 2  # the tools as they were when the walk began
