"""What the proxy remembers of a Chat Completions round that called server tools and the
client's own tools at once (a mixed round), so the client's follow-up reaches the upstream
whole.

The client saw only its own calls. Its follow-up carries the assistant message with those,
then its tool results — without the proxy's calls and their results, which the upstream needs
to see again (else the model loses what the server tools told it). The round is kept in the
store (`TOOL_PROXY_STORE`, the client's own namespace) under the first call id the client saw
— ids every client replays as they were. On the follow-up, the hidden calls go back into that
assistant message in their original order with every field the upstream produced, and their
results beside the client's, in the order of the calls.
"""

from __future__ import annotations

import logging
from typing import Any

from proxy.store.scope import Scoped

log = logging.getLogger("proxy.store")


def mixed_round(message: dict[str, Any], hidden: dict[str, str]) -> dict[str, Any]:
    """The record of a mixed round: the assistant message's calls (all of them, in order)
    and the results of the hidden ones, by call id."""
    return {"calls": message.get("tool_calls") or [], "results": hidden}


class ChatMemory:
    """Mixed rounds kept for one client, and put back into its later requests."""

    def __init__(self, scoped: Scoped) -> None:
        self.scoped = scoped

    async def keep(self, record: dict[str, Any]) -> None:
        shown = [c["id"] for c in record["calls"] if c.get("id") not in record["results"]]
        if shown:  # the id the client's replayed message starts with
            await self.scoped.put([(f"chat:{shown[0]}", record)])

    async def recall(self, body: dict[str, Any]) -> bool:
        """Put the hidden calls back into `body`'s messages, in place; True if any went back.
        A round not found (expired, or never seen by this proxy) goes as the client sent it,
        with a warning."""
        messages: list[Any] = body["messages"]
        if not any(isinstance(m, dict) and m.get("role") == "tool" for m in messages):
            return False  # no call was answered: nothing to put back
        turns = [
            i
            for i, m in enumerate(messages)
            if isinstance(m, dict) and m.get("role") == "assistant" and _first_id(m) is not None
        ]
        records = await self.scoped.get([f"chat:{_first_id(messages[i])}" for i in turns])
        present = {
            call.get("id")
            for i in turns
            for call in messages[i]["tool_calls"]
            if isinstance(call, dict)
        }
        unknown = []
        restored = False
        for i, record in reversed(list(zip(turns, records, strict=True))):
            if record is None:
                unknown.append(str(_first_id(messages[i])))
            elif record["results"] and not present & set(record["results"]):
                _restore(messages, i, record)  # (unless the client replayed them itself)
                restored = True
        if unknown:
            log.warning(
                "no stored round for the tool call(s) %s (expired after store_ttl, or not made "
                "through this proxy's store): forwarded as the client sent them",
                ", ".join(reversed(unknown)),
            )
        return restored


def _first_id(message: dict[str, Any]) -> str | None:
    calls = message.get("tool_calls")
    if isinstance(calls, list) and calls and isinstance(calls[0], dict):
        call_id = calls[0].get("id")
        return call_id if isinstance(call_id, str) else None
    return None


def _restore(messages: list[Any], at: int, record: dict[str, Any]) -> None:
    """Put the round's hidden calls into `messages[at]` and their results among the tool
    messages that follow it, everything in the order of the calls."""
    hidden: dict[str, str] = record["results"]
    mine = {c.get("id"): c for c in messages[at]["tool_calls"] if isinstance(c, dict)}
    ordered = [c if c["id"] in hidden else mine.pop(c["id"], None) for c in record["calls"]]
    calls = [*filter(None, ordered), *mine.values()]  # a call the record lacks stays, last
    messages[at] = {**messages[at], "tool_calls": calls}
    end = at + 1
    while (
        end < len(messages)
        and isinstance(messages[end], dict)
        and (messages[end].get("role") == "tool")
    ):
        end += 1
    answers = {m.get("tool_call_id"): m for m in messages[at + 1 : end]}
    results = [
        {"role": "tool", "tool_call_id": c["id"], "content": hidden[c["id"]]}
        if c["id"] in hidden
        else answers.pop(c["id"], None)
        for c in calls
    ]
    messages[at + 1 : end] = [*filter(None, results), *answers.values()]
