"""What the proxy remembers between Responses requests, so a client's next request continues a
conversation whose server rounds it never saw. Kept in the store (`TOOL_PROXY_STORE`), under
the client's own namespace, so it survives a restart and spans replicas with Redis.

- The client saw the first round's response id; the upstream's conversation goes on from the
  last round's. A later `previous_response_id` is translated — and outputs of server calls
  the upstream still waits for (a round that also asked the client for calls) are added.
- A client that replays the output it saw (manual conversation state) would leave out the
  proxy's calls — and a reasoning item replayed without the call that followed it is rejected
  upstream. The calls and their outputs are put back where they were, next to the item they
  followed or preceded. That item is known by its `call_id` when it has one — the one field
  every client keeps when it replays a call (the Vercel AI SDK drops `id`) — else by its `id`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from proxy.responses.approvals import answered_ids
from proxy.responses.calls import APPROVAL_PREFIX, not_run
from proxy.store.scope import Scoped


@dataclass
class Remembrance:
    """What one response leaves behind for the requests that continue it."""

    client_id: str | None = None
    upstream_id: str | None = None
    unsent: list[dict[str, Any]] = field(default_factory=list)  # outputs still owed upstream
    after: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # anchor -> hidden
    before: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # anchor -> hidden
    held: dict[str, list[str]] = field(default_factory=dict)  # approval id -> name, arguments


def anchor_of(item: Any) -> str | None:
    """How a visible item is known again when a client replays it: its `call_id`, else its
    `id`. Outputs (`function_call_output`, …) share their call's `call_id`: never anchors."""
    if not isinstance(item, dict) or str(item.get("type", "")).endswith("_output"):
        return None
    for key in ("call_id", "id"):
        value = item.get(key)
        if isinstance(value, str) and value:
            return value
    return None


class ResponsesMemory:
    """`Remembrance`s kept for one client, and recalled into its later requests."""

    def __init__(self, scoped: Scoped) -> None:
        self.scoped = scoped
        self.held: dict[str, list[str]] = {}  # the held calls the last `recall` found

    async def keep(self, memo: Remembrance) -> None:
        items: list[tuple[str, Any]] = []
        held = list(memo.held)
        if (
            memo.client_id
            and memo.upstream_id
            and (memo.client_id != memo.upstream_id or memo.unsent or held)
        ):
            chain = [memo.upstream_id, memo.unsent, held]
            items.append((f"resp:chain:{memo.client_id}", chain))
        items += [(f"resp:after:{anchor}", hidden) for anchor, hidden in memo.after.items()]
        items += [(f"resp:before:{anchor}", hidden) for anchor, hidden in memo.before.items()]
        items += [
            (f"resp:approval:{id_}", [*call, memo.client_id]) for id_, call in memo.held.items()
        ]
        await self.scoped.put(items)

    async def recall(self, body: dict[str, Any]) -> bool:
        """Rewrite a request in place with what is remembered; True if anything changed. The
        held calls its approval responses answer — those of the response it continues — are
        kept in `held`; one it leaves unanswered gets an output saying so."""
        previous = body.get("previous_response_id")
        given = body.get("input")
        anchors = _anchors(given) if isinstance(given, list) else []
        answered = answered_ids(given)
        keys = [f"resp:chain:{previous}"] if isinstance(previous, str) else []
        keys += [f"resp:{side}:{anchor}" for side in ("before", "after") for anchor in anchors]
        keys += [f"resp:approval:{id_}" for id_ in answered]
        if not keys:
            return False
        values = iter(await self.scoped.get(keys))
        chain = next(values) if isinstance(previous, str) else None
        before = dict(zip(anchors, values, strict=False))
        after = dict(zip(anchors, values, strict=False))
        self.held = {
            id_: call[:2]
            for id_, call in zip(answered, values, strict=False)
            if call and call[2:] == [previous]  # never another response's: never run twice
        }
        items = given
        if isinstance(given, list) and (any(before.values()) or any(after.values())):
            items = _restore(given, before, after)
        if chain is not None:
            upstream_id, unsent, held = chain
            body["previous_response_id"] = upstream_id
            unsent = [
                *unsent,
                *(not_run(i.removeprefix(APPROVAL_PREFIX)) for i in held if i not in answered),
            ]
            if unsent:
                mine = [{"role": "user", "content": items}] if isinstance(items, str) else items
                items = [*unsent, *(mine or [])]
        if items is not given:
            body["input"] = items
        return chain is not None or items is not given


def _anchors(items: list[Any]) -> list[str]:
    return list(dict.fromkeys(a for a in map(anchor_of, items) if a is not None))


def _restore(items: list[Any], before: dict[str, Any], after: dict[str, Any]) -> list[Any]:
    """`items` with the hidden calls put back around their anchors, where the client did not
    replay them itself."""
    present = {i.get("call_id") for i in items if isinstance(i, dict)}

    def missing(hidden: Any) -> bool:
        return bool(hidden) and not any(h.get("call_id") in present for h in hidden)

    restored: list[Any] = []
    for item in items:
        anchor = anchor_of(item)
        if anchor is None:
            restored.append(item)
            continue
        if missing(before.get(anchor)):
            restored.extend(before[anchor])
        restored.append(item)
        if missing(after.get(anchor)):
            restored.extend(after[anchor])
    return restored if len(restored) != len(items) else items
