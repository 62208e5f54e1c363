"""The Responses memory's bounds: least recently used first out, a read refreshing an entry,
and a value larger than the budget kept out without evicting the rest."""

from __future__ import annotations

from proxy.responses.memory import Remembrance, ResponsesMemory


def chain(memory: ResponsesMemory, client_id: str) -> str | None:
    body = {"previous_response_id": client_id}
    memory.recall(body)
    return body["previous_response_id"] if body["previous_response_id"] != client_id else None


def remember(memory: ResponsesMemory, n: int, unsent_size: int = 0) -> None:
    unsent = [{"type": "function_call_output", "call_id": "c", "output": "x" * unsent_size}]
    memory.keep(Remembrance(f"resp_{n}", f"up_{n}", unsent if unsent_size else []))


def test_a_read_refreshes_an_entry_and_the_least_recent_goes_first() -> None:
    memory = ResponsesMemory(max_bytes=4 * 300)  # chains get a quarter: three entries of 94 bytes
    for n in range(3):
        remember(memory, n, unsent_size=20)
    assert chain(memory, "resp_0") == "up_0"  # read: now the most recent
    remember(memory, 3, unsent_size=20)
    assert chain(memory, "resp_1") is None  # the least recently used went
    assert chain(memory, "resp_0") == "up_0"
    assert chain(memory, "resp_2") == "up_2"
    assert chain(memory, "resp_3") == "up_3"


def test_a_value_larger_than_the_budget_is_not_kept_and_evicts_nothing() -> None:
    memory = ResponsesMemory(max_bytes=4 * 300)
    remember(memory, 0, unsent_size=20)
    remember(memory, 1, unsent_size=10_000)
    assert chain(memory, "resp_1") is None
    assert chain(memory, "resp_0") == "up_0"
