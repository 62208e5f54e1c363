"""The tool runner's bounds and guarantees: result size, unknown arguments, return values with
no JSON form, JSON spellings in validation messages, concurrency bounds, the sync tools' own
threads (a hung one cannot starve the rest), and tools raising `CancelledError`."""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import datetime
import decimal
import enum
import json
import logging
import threading
import uuid
from collections.abc import Iterator
from typing import Any, Literal

import openai
import pytest
from openai_tool_proxy_calculator import calculate

from proxy import ToolError, tool
from proxy.app import create_app
from proxy.config import Settings
from proxy.tools.registry import Registry
from proxy.tools.runner import ToolCall, ToolResult, ToolRunner
from tests.chunks import calls_round, text_round
from tests.servers import serve, upstream_app
from tests.upstream import ScriptedUpstream


async def run(runner: ToolRunner, name: str, arguments: dict[str, Any] | str) -> ToolResult:
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return await runner.run(ToolCall("call_1", name, text))


def runner_of(*tools: Any, **options: Any) -> ToolRunner:
    return ToolRunner(Registry.of(*tools), options.pop("timeout", 5), **options)


class Peak:
    """How many calls ran at once, at most."""

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0
        self.lock = threading.Lock()

    def enter(self) -> None:
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)

    def leave(self) -> None:
        with self.lock:
            self.running -= 1


# --------------------------------------------------------------------------- result size


@tool
def accents(count: int) -> str:
    return "é" * count


@tool
def emoji(count: int) -> str:
    return "😀" * count


@tool
def loud_failure(size: int) -> str:
    raise ValueError("x" * size)


def shown(output: str) -> str:
    """The part of a result before the proxy's truncation note."""
    return output.split("\n\n[truncated by openai-tool-proxy")[0]


async def test_a_long_result_is_cut_at_a_character_boundary_with_a_note() -> None:
    runner = runner_of(accents, max_result_bytes=11)
    result = await run(runner, "accents", {"count": 20})  # 40 bytes, 2 per character
    assert result.ok
    assert shown(result.output) == "é" * 5  # 10 bytes: the 11th would split a character
    assert result.output.endswith(
        "\n\n[truncated by openai-tool-proxy: the tool returned 40 bytes; "
        "only the first 10 are shown]"
    )


async def test_four_byte_characters_are_never_split() -> None:
    runner = runner_of(emoji, max_result_bytes=7)
    result = await run(runner, "emoji", {"count": 3})
    assert shown(result.output) == "😀"
    assert "returned 12 bytes; only the first 4 are shown" in result.output


async def test_the_bound_counts_bytes_not_characters() -> None:
    runner = runner_of(accents, max_result_bytes=10)
    assert (await run(runner, "accents", {"count": 5})).output == "é" * 5  # exactly 10 bytes
    cut = await run(runner, "accents", {"count": 6})  # 6 characters, 12 bytes
    assert shown(cut.output) == "é" * 5
    assert "returned 12 bytes" in cut.output


async def test_error_texts_are_bounded_too(caplog: pytest.LogCaptureFixture) -> None:
    runner = runner_of(loud_failure, max_result_bytes=100)
    result = await run(runner, "loud_failure", {"size": 10_000})
    assert not result.ok
    assert result.output.startswith("error: 'loud_failure' failed: ValueError: xxx")
    assert len(shown(result.output).encode()) == 100
    assert "only the first 100 are shown" in result.output


async def test_a_cut_result_logs_one_warning_naming_the_tool(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runner = runner_of(accents, max_result_bytes=1000)
    with caplog.at_level(logging.WARNING, logger="proxy.tools"):
        await run(runner, "accents", {"count": 400})  # fits: 800 bytes
        assert not caplog.records
        await run(runner, "accents", {"count": 100_000})
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "accents" in record.getMessage()
    assert "200000 bytes" in record.getMessage()


# --------------------------------------------------------------------------- unknown arguments


@tool
def add(a: int, b: int) -> int:
    return a + b


@tool
def anything(a: int, **rest: Any) -> str:
    return json.dumps({"a": a, **rest}, sort_keys=True)


calls: list[dict[str, Any]] = []


@tool(parameters={"type": "object", "properties": {"city": {"type": "string"}}})
def loose(city: str = "") -> str:
    """A given schema that allows any other property."""
    calls.append({"city": city})
    return city


@tool(parameters={"type": "object", "properties": {"city": {"type": "string"}}})
def loose_kwargs(city: str = "", **rest: Any) -> str:
    return json.dumps({"city": city, **rest}, sort_keys=True)


async def test_a_derived_schema_refuses_an_unknown_argument_by_name() -> None:
    assert add.parameters["additionalProperties"] is False
    result = await run(runner_of(add), "add", {"a": 1, "b": 2, "c": 3})
    assert not result.ok
    assert result.output == (
        'error: invalid arguments for \'add\': unexpected argument "c" (known: "a", "b")'
    )


async def test_a_function_taking_kwargs_takes_any_argument() -> None:
    assert "additionalProperties" not in anything.parameters
    result = await run(runner_of(anything), "anything", {"a": 1, "extra": True})
    assert result.ok
    assert json.loads(result.output) == {"a": 1, "extra": True}


async def test_a_given_schema_allowing_extras_still_refuses_what_the_handler_cannot_take() -> None:
    calls.clear()
    result = await run(runner_of(loose), "loose", {"city": "Oslo", "country": "NO", "zip": 1})
    assert not result.ok
    assert result.output == (
        'error: invalid arguments for \'loose\': unexpected arguments "country", "zip" '
        '(known: "city")'
    )
    assert "TypeError" not in result.output
    assert calls == []  # checked before calling
    ok = await run(runner_of(loose), "loose", {"city": "Oslo"})
    assert (ok.ok, ok.output) == (True, "Oslo")


async def test_a_given_schema_and_a_handler_taking_kwargs_pass_extras_on() -> None:
    result = await run(runner_of(loose_kwargs), "loose_kwargs", {"city": "Oslo", "zip": 1})
    assert result.ok
    assert json.loads(result.output) == {"city": "Oslo", "zip": 1}


# --------------------------------------------------------------------------- JSON spellings


@tool
def choose(unit: Literal["c", "f"], count: int = 1) -> str:
    return unit * count


@tool(
    parameters={
        "type": "object",
        "properties": {
            "opts": {
                "type": "object",
                "properties": {"unit": {"type": "string"}},
                "patternProperties": {"^x_": {}},
                "additionalProperties": False,
            }
        },
    }
)
def nested(opts: dict[str, Any]) -> str:
    return "ok"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"a": True, "b": 1}, 'a: true is not of type "integer"'),
        ({"a": None, "b": 1}, 'a: null is not of type "integer"'),
        ({"a": "two", "b": 1}, 'a: "two" is not of type "integer"'),
        ({"a": [False, None], "b": 1}, 'a: [false, null] is not of type "integer"'),
        ({"a": {"k": "v"}, "b": 1}, 'a: {"k": "v"} is not of type "integer"'),
        ({"b": 1}, 'missing required argument "a"'),
        ({}, 'missing required arguments "a", "b"'),
    ],
)
async def test_validation_messages_spell_values_as_json(
    arguments: dict[str, Any], message: str
) -> None:
    result = await run(runner_of(add), "add", arguments)
    assert result.output == f"error: invalid arguments for 'add': {message}"


async def test_enum_values_are_spelled_as_json() -> None:
    result = await run(runner_of(choose), "choose", {"unit": "k"})
    assert result.output.endswith('unit: "k" is not one of ["c", "f"]')


async def test_a_nested_unknown_property_is_named_with_its_path() -> None:
    arguments = {"opts": {"unit": "c", "x_note": 1, "zzz": 2}}  # x_note matches a pattern
    result = await run(runner_of(nested), "nested", arguments)
    assert result.output.endswith('opts: unexpected property "zzz" (known: "unit")')


# --------------------------------------------------------------------------- return values


class Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int
    when: datetime.date


class Model:
    """Shaped like a pydantic model."""

    def model_dump(self) -> dict[str, Any]:
        return {"name": "m", "at": datetime.time(8, 30)}


class BrokenModel:
    def model_dump(self) -> dict[str, Any]:
        raise RuntimeError("cannot dump")


@tool
def rich() -> dict[str, Any]:
    return {
        "datetime": datetime.datetime(2025, 6, 13, 14, 5, 9, tzinfo=datetime.UTC),
        "date": datetime.date(2025, 6, 13),
        "time": datetime.time(14, 5),
        "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "decimal": decimal.Decimal("19.90"),
        "enum": Colour.RED,
        "dataclass": Point(1, datetime.date(2025, 1, 2)),
        "set": {3, 1, 2},
        "tuple": (1, "a"),
        "model": Model(),
        "big": 2**100,
    }


@tool
def opaque() -> dict[str, Any]:
    return {"handle": object()}


@tool
def broken_model() -> Any:
    return BrokenModel()


@tool
def circular() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    return loop


async def test_rich_return_values_are_encoded_as_json() -> None:
    result = await run(runner_of(rich), "rich", "")
    assert result.ok
    assert json.loads(result.output) == {
        "datetime": "2025-06-13T14:05:09+00:00",
        "date": "2025-06-13",
        "time": "14:05:00",
        "uuid": "12345678-1234-5678-1234-567812345678",
        "decimal": "19.90",
        "enum": "red",
        "dataclass": {"x": 1, "when": "2025-01-02"},
        "set": [1, 2, 3],
        "tuple": [1, "a"],
        "model": {"name": "m", "at": "08:30:00"},
        "big": 2**100,
    }


async def test_a_set_of_mixed_types_is_a_list() -> None:
    @tool
    def mixed() -> Any:
        return {1, "a"}

    result = await run(runner_of(mixed), "mixed", "")
    assert sorted(json.loads(result.output), key=str) == [1, "a"]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("opaque", "an object of type object is not JSON-encodable"),
        ("broken_model", "cannot dump"),
        ("circular", "Circular reference detected"),
    ],
)
async def test_a_value_with_no_json_form_is_an_error_result(
    name: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    runner = runner_of(opaque, broken_model, circular)
    with caplog.at_level(logging.WARNING, logger="proxy.tools"):
        result = await run(runner, name, "")
    assert not result.ok
    assert result.output.startswith(
        f"error: {name!r} returned a value that cannot be encoded as JSON ("
    )
    assert reason in result.output
    assert "<object object" not in result.output
    assert name in caplog.text


# --------------------------------------------------------------------------- concurrency bounds


def probe_tool(peak: Peak) -> Any:
    @tool
    async def probe(n: int) -> str:
        peak.enter()
        for _ in range(5):  # let every other call that may start, start
            await asyncio.sleep(0)
        peak.leave()
        return f"#{n}"

    return probe


async def test_calls_of_one_request_run_at_most_per_request_at_once_in_order() -> None:
    peak = Peak()
    runner = runner_of(probe_tool(peak), per_request=3)
    batch = [ToolCall(f"c{n}", "probe", json.dumps({"n": n})) for n in range(50)]
    results = await runner.run_all(batch)
    assert [r.call for r in results] == batch
    assert [r.output for r in results] == [f"#{n}" for n in range(50)]
    assert peak.peak == 3


async def test_calls_of_all_requests_run_at_most_total_at_once() -> None:
    peak = Peak()
    runner = runner_of(probe_tool(peak), per_request=4, total=5)
    batches = [
        [ToolCall(f"{r}-{n}", "probe", json.dumps({"n": n})) for n in range(20)] for r in range(3)
    ]
    answers = await asyncio.gather(*(runner.run_all(b) for b in batches))
    for batch, results in zip(batches, answers, strict=True):
        assert [r.call for r in results] == batch
        assert all(r.ok for r in results)
    assert peak.peak == 5


# --------------------------------------------------------------------------- sync tools' threads


def blocking_tool(gate: threading.Event, entered: threading.Semaphore | None = None) -> Any:
    @tool(timeout=0.05)
    def hang() -> str:
        if entered is not None:
            entered.release()
        gate.wait(10)
        return "late"

    return hang


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()  # the abandoned threads end


request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")


@tool
def where() -> dict[str, Any]:
    thread = threading.current_thread()
    return {"thread": thread.name, "daemon": thread.daemon, "request": request_id.get("")}


async def until(condition: Any) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never met")


async def test_sync_tools_run_on_the_runners_own_daemon_threads_in_the_callers_context() -> None:
    request_id.set("req-7")
    result = await run(runner_of(where), "where", "")
    seen = json.loads(result.output)
    assert seen["thread"].startswith("openai-tool-proxy-tool-")
    assert seen["daemon"] is True  # a hung tool does not hold up the process's exit
    assert seen["request"] == "req-7"


async def test_hung_sync_tools_do_not_starve_the_others(
    gate: threading.Event, caplog: pytest.LogCaptureFixture
) -> None:
    # More hung calls than the pool has threads, and than the loop's default executor has
    # (at most 32): neither may be what sync tools wait on.
    runner = runner_of(blocking_tool(gate), calculate, threads=8, per_request=40, timeout=2)
    hung = [ToolCall(f"h{n}", "hang", "") for n in range(40)]
    caplog.set_level(logging.INFO, logger="proxy.tools")
    async with asyncio.timeout(5):  # each hung call gives its thread's slot back
        results = await runner.run_all(hung)
    assert [r.output for r in results] == ["error: 'hang' timed out after 0.05 seconds"] * 40
    assert runner.hung_threads == 40
    abandoned = [r.getMessage() for r in caplog.records if "abandoned" in r.getMessage()]
    assert len(abandoned) == 40
    assert "(40 hung tool thread(s) now)" in abandoned[-1]
    async with asyncio.timeout(5):  # a thread is free at once, not when a hung tool ends
        answer = await run(runner, "calculate", {"expression": "6 * 7"})
    assert (answer.ok, answer.output) == (True, "42")
    gate.set()  # the hung tools end at last: their threads leave, uncounted
    await until(lambda: runner.hung_threads == 0)
    await until(lambda: "abandoned sync tool hang ended (0 hung" in caplog.text)
    assert (await run(runner, "calculate", {"expression": "1 + 1"})).output == "2"


async def test_at_most_threads_sync_tools_run_at_once(gate: threading.Event) -> None:
    peak = Peak()
    entered = threading.Semaphore(0)

    @tool
    def held(n: int) -> int:
        peak.enter()
        entered.release()
        gate.wait(5)
        peak.leave()
        return n

    runner = runner_of(held, threads=2, per_request=6)
    work = asyncio.ensure_future(
        runner.run_all([ToolCall(f"{n}", "held", f'{{"n": {n}}}') for n in range(6)])
    )
    for _ in range(2):
        await asyncio.to_thread(entered.acquire, timeout=5)
    await asyncio.sleep(0.2)  # room for a third to start, were there no bound
    assert peak.running == 2
    gate.set()
    assert [r.output for r in await work] == [str(n) for n in range(6)]
    assert peak.peak == 2


async def test_waiting_for_a_thread_is_not_counted_in_the_timeout(
    gate: threading.Event,
) -> None:
    entered = threading.Semaphore(0)

    @tool(timeout=5)
    def holder() -> str:
        entered.release()
        gate.wait(5)
        return "held"

    @tool(timeout=0.1)
    def quick() -> str:
        return "quick"

    runner = runner_of(holder, quick, threads=1)
    both = asyncio.ensure_future(
        runner.run_all([ToolCall("1", "holder", ""), ToolCall("2", "quick", "")])
    )
    await asyncio.to_thread(entered.acquire, timeout=5)
    await asyncio.sleep(0.3)  # three times quick's timeout, spent waiting for the thread
    gate.set()
    assert [r.output for r in await both] == ["held", "quick"]


async def test_a_value_arriving_after_its_call_was_cancelled_is_dropped(
    gate: threading.Event,
) -> None:
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    entered = threading.Semaphore(0)

    @tool
    def finishes() -> str:
        entered.release()
        gate.wait(5)
        return "done"

    runner = runner_of(finishes)
    request = asyncio.ensure_future(run(runner, "finishes", ""))
    await asyncio.to_thread(entered.acquire, timeout=5)
    request.cancel()  # the call's future is cancelled now, the task learns it on its next step
    gate.set()
    threading.Event().wait(0.2)  # the loop held on purpose: the thread posts its value meanwhile
    with pytest.raises(asyncio.CancelledError):
        await request
    await asyncio.sleep(0.01)  # the posted value is handled
    loop.set_exception_handler(None)
    assert errors == []
    assert runner.hung_threads == 0  # it had finished: nothing was abandoned


# --------------------------------------------------------------------------- CancelledError


@tool
async def cancels_itself() -> str:
    raise asyncio.CancelledError


@tool
def sync_cancels_itself() -> str:
    raise asyncio.CancelledError


@pytest.mark.parametrize("name", ["cancels_itself", "sync_cancels_itself"])
async def test_a_tool_raising_cancelled_error_is_an_error_result(name: str) -> None:
    runner = runner_of(cancels_itself, sync_cancels_itself, add)
    results = await runner.run_all([ToolCall("1", name, ""), ToolCall("2", "add", '{"a":1,"b":1}')])
    assert [(r.ok, r.output) for r in results] == [
        (False, f"error: {name!r} failed: CancelledError"),
        (True, "2"),
    ]
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0


async def test_cancelling_the_request_cancels_a_running_async_tool() -> None:
    started = asyncio.Event()
    ended: list[str] = []

    @tool
    async def waits() -> str:
        started.set()
        try:
            await asyncio.sleep(10)
        finally:
            ended.append("cancelled")
        return "never"

    runner = runner_of(waits)
    for work in (run(runner, "waits", ""), runner.run_all([ToolCall("1", "waits", "")] * 3)):
        started.clear()
        ended.clear()
        request = asyncio.ensure_future(work)
        await started.wait()
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
        assert request.cancelled()
        assert ended


async def test_cancelling_the_request_abandons_a_running_sync_tool(
    gate: threading.Event,
) -> None:
    entered = threading.Semaphore(0)
    runner = runner_of(blocking_tool(gate, entered), where, threads=1)
    request = asyncio.ensure_future(run(runner, "hang", ""))
    await asyncio.to_thread(entered.acquire, timeout=5)
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request
    assert runner.hung_threads == 1
    assert (await run(runner, "where", "")).ok  # the one slot is free again


# --------------------------------------------------------------------------- through the proxy


@tool
def huge() -> str:
    return "ü" * 1_000_000


def proxy_client(script: ScriptedUpstream, registry: Registry, **settings: Any) -> Any:
    """Start the scripted upstream and the proxy on loopback; yield a real `openai` client."""
    with serve(upstream_app(script)) as upstream_url:
        app = create_app(Settings(upstream=upstream_url + "/v1", **settings), registry)
        with serve(app) as proxy_url:
            yield openai.OpenAI(api_key="sk-test", base_url=proxy_url + "/v1", max_retries=0)


def streamed_text(client: openai.OpenAI, prompt: str) -> str:
    stream = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": prompt}], stream=True
    )
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def tool_messages(request: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in request["messages"] if m["role"] == "tool"]


def test_a_huge_result_reaches_the_upstream_cut_with_the_note() -> None:
    script = ScriptedUpstream(calls_round(("c1", "huge", "{}")), text_round("done"))
    for client in proxy_client(script, Registry.of(huge), max_tool_result_kb=1):
        assert streamed_text(client, "go") == "done"
    [result] = tool_messages(script.requests[1])
    assert result["content"] == "ü" * 512 + (
        "\n\n[truncated by openai-tool-proxy: the tool returned 2000000 bytes; "
        "only the first 1024 are shown]"
    )


def test_hundreds_of_calls_are_all_answered_in_order_within_the_bound() -> None:
    peak = Peak()
    asked = [(f"c{n}", "probe", json.dumps({"n": n})) for n in range(200)]
    script = ScriptedUpstream(calls_round(*asked), text_round("all done"))
    for client in proxy_client(script, Registry.of(probe_tool(peak)), tool_concurrency=4):
        assert streamed_text(client, "go") == "all done"
    results = tool_messages(script.requests[1])
    assert [(m["tool_call_id"], m["content"]) for m in results] == [
        (f"c{n}", f"#{n}") for n in range(200)
    ]
    assert peak.peak == 4


def test_the_calculator_answers_after_hung_sync_tools(gate: threading.Event) -> None:
    script = ScriptedUpstream(
        calls_round(*[(f"h{n}", "hang", "{}") for n in range(4)]),
        calls_round(("c1", "calculate", '{"expression": "2 + 2"}'), id="chatcmpl-2"),
        text_round("4", id="chatcmpl-3"),
    )
    registry = Registry.of(blocking_tool(gate), calculate)
    for client in proxy_client(script, registry, tool_threads=2, tool_timeout=2):
        assert streamed_text(client, "2 + 2?") == "4"
    assert [m["content"] for m in tool_messages(script.requests[1])] == [
        "error: 'hang' timed out after 0.05 seconds"
    ] * 4
    assert tool_messages(script.requests[2])[-1]["content"] == "4"


def tool_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("openai-tool-proxy-tool-")}


async def test_closing_the_runner_ends_its_idle_threads() -> None:
    before = tool_threads()
    runner = runner_of(calculate)
    assert (await run(runner, "calculate", {"expression": "1+1"})).output == "2"
    mine = tool_threads() - before
    assert len(mine) == 1
    runner.close()
    for thread in mine:
        thread.join(5)
        assert not thread.is_alive()


async def test_a_tool_error_is_the_models_result_word_for_word() -> None:
    @tool
    async def lookup(key: str) -> str:
        """Look a key up."""
        raise ToolError(f"no entry {key!r}; try one of 'a', 'b'")

    result = await run(runner_of(lookup), "lookup", {"key": "z"})
    assert (result.output, result.ok) == ("error: no entry 'z'; try one of 'a', 'b'", False)
