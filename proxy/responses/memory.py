"""What the proxy remembers between Responses requests, so a client's next request continues a
conversation whose server rounds it never saw. Kept in memory within a byte budget: the
least recently used go first.

- The client saw the first round's response id; the upstream's conversation goes on from the
  last round's. A later `previous_response_id` is translated — and outputs of server calls
  the upstream still waits for (a round that also asked the client for calls) are added.
- A client that replays the output it saw (manual conversation state) would leave out the
  proxy's calls — and a reasoning item replayed without the call that followed it is rejected
  upstream. The calls and their outputs are put back where they were.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass
class Remembrance:
    """What one response leaves behind for the requests that continue it."""

    client_id: str | None = None
    upstream_id: str | None = None
    unsent: list[dict[str, Any]] = field(default_factory=list)  # outputs still owed upstream
    after: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # item id -> hidden
    before: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # item id -> hidden


class _Budget:
    """A map bounded by the JSON size of its values: the least recently used go first (a
    read counts as a use), and a value larger than the whole budget is not kept at all
    rather than evicting everything else."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.used = 0
        self._items: OrderedDict[str, tuple[Any, int]] = OrderedDict()

    def put(self, key: str, value: Any) -> None:
        size = len(key) + len(orjson.dumps(value))
        if key in self._items:
            self.used -= self._items.pop(key)[1]
        if size > self.max_bytes:
            return
        self._items[key] = (value, size)
        self.used += size
        while self.used > self.max_bytes:
            self.used -= self._items.popitem(last=False)[1][1]

    def get(self, key: Any) -> Any:
        entry = self._items.get(key) if isinstance(key, str) else None
        if entry is None:
            return None
        self._items.move_to_end(key)
        return entry[0]

    def __len__(self) -> int:
        return len(self._items)


class ResponsesMemory:
    def __init__(self, max_bytes: int = 32 * 1024 * 1024) -> None:
        self._chains = _Budget(max_bytes // 4)
        self._after = _Budget(max_bytes // 2)
        self._before = _Budget(max_bytes // 4)

    def keep(self, memo: Remembrance) -> None:
        if (
            memo.client_id
            and memo.upstream_id
            and (memo.client_id != memo.upstream_id or memo.unsent)
        ):
            self._chains.put(memo.client_id, (memo.upstream_id, memo.unsent))
        for anchor, items in memo.after.items():
            self._after.put(anchor, items)
        for anchor, items in memo.before.items():
            self._before.put(anchor, items)

    def recall(self, body: dict[str, Any]) -> bool:
        """Rewrite a request in place with what is remembered; True if anything changed."""
        changed = False
        chain = self._chains.get(body.get("previous_response_id"))
        if chain is not None:
            upstream_id, unsent = chain
            body["previous_response_id"] = upstream_id
            if unsent:
                given = body.get("input")
                mine = [{"role": "user", "content": given}] if isinstance(given, str) else given
                body["input"] = [*unsent, *(mine or [])]
            changed = True
        if isinstance(body.get("input"), list) and (len(self._after) or len(self._before)):
            restored = self._restore(body["input"])
            if len(restored) != len(body["input"]):
                body["input"] = restored
                changed = True
        return changed

    def _restore(self, items: list[Any]) -> list[Any]:
        present = {i.get("call_id") for i in items if isinstance(i, dict)}

        def missing(hidden: Any) -> bool:
            return bool(hidden) and not any(h.get("call_id") in present for h in hidden)

        restored: list[Any] = []
        for item in items:
            item_id = item.get("id") if isinstance(item, dict) else None
            before = self._before.get(item_id)
            if missing(before):
                restored.extend(before)
            restored.append(item)
            after = self._after.get(item_id)
            if missing(after):
                restored.extend(after)
        return restored
