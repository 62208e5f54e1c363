"""What the dialects remember on the store and put back into follow-ups (unit tests over the
embedded store): Responses chains and replays recognised by `call_id`, Chat mixed rounds put
back in the order of their calls, and one client's state never another's."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from proxy.chat.memory import ChatMemory, mixed_round
from proxy.responses.memory import Remembrance, ResponsesMemory
from proxy.store import MemoryStore
from proxy.store.scope import Scoped, namespace_of

STORE = MemoryStore(ttl=60, max_bytes=1 << 20)
ALICE_KEY = [("Authorization", "Bearer sk-alice")]
BOB_KEY = [("authorization", "Bearer sk-bob")]
ALICE, BOB = namespace_of(ALICE_KEY), namespace_of(BOB_KEY)

HIDDEN = {"type": "function_call", "call_id": "call_s", "name": "weather", "arguments": "{}"}
HIDDEN_OUT = {"type": "function_call_output", "call_id": "call_s", "output": "Sunny"}


def test_namespaces_hash_the_credentials_and_never_hold_them() -> None:
    assert ALICE != BOB
    assert namespace_of([("api-key", "x"), ("authorization", "Bearer sk-alice")]) == ALICE
    assert "sk-alice" not in ALICE and len(ALICE) == 32
    assert namespace_of([]) == namespace_of([("x-other", "1")])
    twice = [("authorization", "Bearer sk-alice"), ("authorization", "Bearer sk-bob")]
    assert namespace_of(twice) == ALICE  # the first, the one the client-key check reads


async def test_a_replay_without_ids_gets_the_hidden_call_back_by_call_id() -> None:
    """The Vercel AI SDK's follow-up of a mixed round: the client's call without its `id`,
    no `previous_response_id`, no `store`."""
    memory = ResponsesMemory(Scoped(STORE, ALICE_KEY))
    await memory.keep(Remembrance("resp_1", "resp_1", before={"call_c": [HIDDEN, HIDDEN_OUT]}))
    mine = {"type": "function_call", "call_id": "call_c", "name": "pick", "arguments": "{}"}
    answer = {"type": "function_call_output", "call_id": "call_c", "output": "blue"}
    body: dict[str, Any] = {"input": [{"role": "user", "content": "hi"}, mine, answer]}
    assert await memory.recall(body)
    assert body["input"] == [{"role": "user", "content": "hi"}, HIDDEN, HIDDEN_OUT, mine, answer]
    again = {"input": body["input"]}  # replayed whole already: nothing doubled
    assert not await memory.recall(again)


async def test_a_chain_is_translated_with_the_outputs_still_owed() -> None:
    memory = ResponsesMemory(Scoped(STORE, ALICE_KEY))
    await memory.keep(Remembrance("resp_a", "resp_z", [HIDDEN_OUT]))
    body: dict[str, Any] = {"previous_response_id": "resp_a", "input": "thanks"}
    assert await memory.recall(body)
    assert body == {
        "previous_response_id": "resp_z",
        "input": [HIDDEN_OUT, {"role": "user", "content": "thanks"}],
    }


async def test_another_clients_request_is_left_as_it_came() -> None:
    await ResponsesMemory(Scoped(STORE, ALICE_KEY)).keep(Remembrance("resp_b", "resp_y"))
    body: dict[str, Any] = {"previous_response_id": "resp_b", "input": "x"}
    assert not await ResponsesMemory(Scoped(STORE, BOB_KEY)).recall(body)
    assert body == {"previous_response_id": "resp_b", "input": "x"}


def call(call_id: str, name: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": "{}"},
        **extra,
    }


ROUND = {
    "role": "assistant",
    "content": None,
    "tool_calls": [
        call("s1", "weather", extra_content={"google": {"thought_signature": "sig"}}),
        call("c1", "pick"),
        call("s2", "stock"),
        call("c2", "ask"),
    ],
}
RECORD = mixed_round(ROUND, {"s1": "Sunny", "s2": "123.45"})


def follow_up(*answered: str) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [call("c1", "pick"), call("c2", "ask")],
            },
            *({"role": "tool", "tool_call_id": i, "content": f"answer {i}"} for i in answered),
        ]
    }


async def test_a_mixed_round_goes_back_in_the_order_of_its_calls() -> None:
    memory = ChatMemory(Scoped(STORE, ALICE_KEY))
    await memory.keep(RECORD)
    body = follow_up("c2", "c1")
    assert await memory.recall(body)
    assistant, *results = body["messages"][1:]
    assert assistant["tool_calls"] == ROUND["tool_calls"]  # every field the upstream wrote
    assert [(r["tool_call_id"], r["content"]) for r in results] == [
        ("s1", "Sunny"),
        ("c1", "answer c1"),
        ("s2", "123.45"),
        ("c2", "answer c2"),
    ]
    again = {"messages": body["messages"]}
    assert not await memory.recall(again)  # already whole: nothing doubled


async def test_a_round_is_recalled_only_by_its_client() -> None:
    await ChatMemory(Scoped(STORE, ALICE_KEY)).keep(RECORD)
    assert await ChatMemory(Scoped(STORE, ALICE_KEY)).recall(follow_up("c1", "c2"))
    stranger = follow_up("c1", "c2")
    assert not await ChatMemory(Scoped(STORE, BOB_KEY)).recall(stranger)
    assert stranger == follow_up("c1", "c2")


async def test_an_unknown_round_goes_as_sent_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    body = follow_up("c9")
    body["messages"][1]["tool_calls"] = [call("c9", "pick")]
    sent = {"messages": [dict(m) for m in body["messages"]]}
    with caplog.at_level(logging.WARNING, "proxy.store"):
        assert not await ChatMemory(Scoped(STORE, ALICE_KEY)).recall(body)
    assert body == sent
    assert [r.message for r in caplog.records if "c9" in r.message] != []
    assert len(caplog.records) == 1


async def test_a_request_with_no_tool_answer_never_asks_the_store() -> None:
    class Refusing(MemoryStore):
        async def get_many(self, keys: Any) -> Any:
            raise AssertionError("asked")

    body = {"messages": [{"role": "user", "content": "hi"}]}
    assert not await ChatMemory(Scoped(Refusing(60, 1024), ALICE_KEY)).recall(body)


async def test_a_mixed_round_is_stored_once() -> None:
    store = MemoryStore(ttl=60, max_bytes=1 << 20)
    await ChatMemory(Scoped(store, ALICE_KEY)).keep(RECORD)
    assert len(store) == 1


async def test_a_request_that_needs_no_state_never_hashes_its_key() -> None:
    def headers() -> Any:
        raise AssertionError("hashed")
        yield

    body = {"messages": [{"role": "user", "content": "hi"}]}
    assert not await ChatMemory(Scoped(STORE, headers())).recall(body)
