"""Which upstream response a client's `previous_response_id` really means.

The client sees the first round's id; the upstream's conversation continues from the last
round's. Kept in memory, bounded (the oldest are forgotten first).
"""

from __future__ import annotations

from collections import OrderedDict


class ResponseChains:
    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit
        self._last: OrderedDict[str, str] = OrderedDict()

    def remember(self, client_id: str, upstream_id: str) -> None:
        if client_id == upstream_id:
            return
        self._last[client_id] = upstream_id
        self._last.move_to_end(client_id)
        while len(self._last) > self.limit:
            self._last.popitem(last=False)

    def resolve(self, response_id: str) -> str:
        return self._last.get(response_id, response_id)
