"""What the proxy remembers between Responses requests, so a client's next request continues a
conversation whose server rounds it never saw. Kept in memory, bounded: the oldest go first.

- Chains: the client saw the first round's response id; the upstream's conversation goes on
  from the last round's. A later `previous_response_id` is translated.
- Hidden items: a client that replays the output it saw (manual conversation state) would
  leave out the proxy's calls — and a reasoning item replayed without the call that followed
  it is rejected upstream. The calls and their outputs are put back after the item they
  followed.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any


class _Bounded(OrderedDict[str, Any]):
    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def put(self, key: str, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)


class ResponsesMemory:
    def __init__(self, limit: int = 100_000) -> None:
        self._chains = _Bounded(limit)
        self._after = _Bounded(limit)

    def recall(self, body: dict[str, Any]) -> bool:
        """Rewrite a request in place with what is remembered; True if anything changed."""
        changed = False
        previous = body.get("previous_response_id")
        if isinstance(previous, str) and previous in self._chains:
            body["previous_response_id"] = self._chains[previous]
            changed = True
        if isinstance(body.get("input"), list):
            restored = self.restore(body["input"])
            if len(restored) != len(body["input"]):
                body["input"] = restored
                changed = True
        return changed

    def remember_chain(self, client_id: str, upstream_id: str) -> None:
        if client_id != upstream_id:
            self._chains.put(client_id, upstream_id)

    def remember_hidden(self, anchor_id: str, items: list[dict[str, Any]]) -> None:
        self._after.put(anchor_id, items)

    def restore(self, items: list[Any]) -> list[Any]:
        """`items` with the remembered hidden items back after the items they followed."""
        if not self._after:
            return items
        present = {i.get("call_id") for i in items if isinstance(i, dict)}
        restored: list[Any] = []
        for item in items:
            restored.append(item)
            anchor = item.get("id") if isinstance(item, dict) else None
            hidden = self._after.get(anchor) if isinstance(anchor, str) else None
            if hidden and not any(h.get("call_id") in present for h in hidden):
                restored.extend(hidden)
        return restored
