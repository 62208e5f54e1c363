"""`@tool`, schema derivation, strict mode, and `ToolRunner` (validation, timeouts, errors)."""

import asyncio
import enum
import json
import threading
import time
from typing import Annotated, Any, Literal, Optional

import jsonschema
import pytest

from proxy import Tool, ToolDefinitionError, tool
from proxy.tools.registry import Registry
from proxy.tools.runner import ToolCall, ToolResult, ToolRunner
from proxy.tools.schema import schema_for_type, schema_from_signature, strict_problems


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


def props(t: Tool) -> dict[str, Any]:
    return t.parameters["properties"]


# --------------------------------------------------------------------------- schema derivation


def test_scalar_types_map_to_json_types() -> None:
    @tool
    def f(s: str, i: int, x: float, b: bool) -> str:
        return ""

    assert f.parameters == {
        "type": "object",
        "properties": {
            "s": {"type": "string"},
            "i": {"type": "integer"},
            "x": {"type": "number"},
            "b": {"type": "boolean"},
        },
        "required": ["s", "i", "x", "b"],
        "additionalProperties": False,
    }


def test_containers() -> None:
    @tool
    def f(li: list[int], ls: list[str], bare: list, d: dict, dd: dict[str, int]) -> str:
        return ""

    p = props(f)
    assert p["li"] == {"type": "array", "items": {"type": "integer"}}
    assert p["ls"] == {"type": "array", "items": {"type": "string"}}
    assert p["bare"] == {"type": "array"}
    assert p["d"] == {"type": "object"}
    assert p["dd"] == {"type": "object"}
    assert f.parameters["required"] == ["li", "ls", "bare", "d", "dd"]


def test_literal_and_enum_become_enums() -> None:
    @tool
    def f(unit: Literal["c", "f"], color: Color, level: Level) -> str:
        return ""

    p = props(f)
    assert p["unit"] == {"enum": ["c", "f"]}
    assert p["color"] == {"enum": ["red", "green"]}
    assert p["level"] == {"enum": [1, 2]}
    assert f.parameters["required"] == ["unit", "color", "level"]


def test_optional_and_pipe_none_are_nullable_and_not_required() -> None:
    @tool
    def f(a: Optional[int], b: str | None, c: int) -> str:  # noqa: UP045
        return ""

    p = props(f)
    assert p["a"] == {"type": ["integer", "null"]}
    assert p["b"] == {"type": ["string", "null"]}
    assert f.parameters["required"] == ["c"]


def test_union_of_non_scalars_uses_any_of() -> None:
    assert schema_for_type(list[int] | None) == {
        "anyOf": [{"type": "array", "items": {"type": "integer"}}, {"type": "null"}]
    }
    assert schema_for_type(int | str) == {"type": ["integer", "string"]}


def test_unknown_and_missing_annotations_admit_anything() -> None:
    @tool
    def f(a, b: Any, c: object) -> str:  # type: ignore[no-untyped-def]
        return ""

    assert props(f) == {"a": {}, "b": {}, "c": {}}
    assert f.parameters["required"] == ["a", "b", "c"]


def test_annotated_string_becomes_description() -> None:
    @tool
    def f(city: Annotated[str, "The city name"], n: Annotated[int, "how", "many"] = 1) -> str:
        return ""

    p = props(f)
    assert p["city"] == {"type": "string", "description": "The city name"}
    assert p["n"]["type"] == "integer"
    assert p["n"]["description"] == "how many"
    assert f.parameters["required"] == ["city"]


def test_annotated_optional_is_not_required() -> None:
    @tool
    def f(city: Annotated[str | None, "maybe"]) -> str:
        return ""

    assert props(f)["city"] == {"type": ["string", "null"], "description": "maybe"}
    assert f.parameters["required"] == []


def test_defaults_are_optional_and_recorded() -> None:
    @tool
    def f(
        a: int,
        b: int = 3,
        c: str = "x",
        d: bool = False,
        e: float = 1.5,
        f_: list[int] | None = None,
        g: Literal["a", "b"] = "a",
    ) -> str:
        return ""

    p = props(f)
    assert f.parameters["required"] == ["a"]
    assert p["b"] == {"type": "integer", "default": 3}
    assert p["c"] == {"type": "string", "default": "x"}
    assert p["d"] == {"type": "boolean", "default": False}
    assert p["e"] == {"type": "number", "default": 1.5}
    assert p["g"] == {"enum": ["a", "b"], "default": "a"}
    assert p["f_"]["default"] is None


def test_non_json_default_is_not_recorded() -> None:
    sentinel = object()

    @tool
    def f(a: Any = sentinel, b: list[int] = [1, 2]) -> str:  # noqa: B006
        return ""

    assert "default" not in props(f)["a"]
    assert f.parameters["required"] == []


def test_var_args_and_kwargs_are_skipped() -> None:
    @tool
    def f(a: int, *rest: int, **extra: Any) -> str:
        return ""

    assert list(props(f)) == ["a"]
    assert "additionalProperties" not in f.parameters  # **extra takes any other argument


def test_derived_schema_is_a_valid_json_schema() -> None:
    @tool
    def f(s: str, li: list[int], c: Color, o: int | None = None) -> str:
        return ""

    jsonschema.Draft202012Validator.check_schema(f.parameters)
    v = jsonschema.Draft202012Validator(f.parameters)
    assert v.is_valid({"s": "a", "li": [1], "c": "red"})
    assert v.is_valid({"s": "a", "li": [1], "c": "red", "o": None})
    assert not v.is_valid({"s": "a", "li": ["x"], "c": "red"})
    assert not v.is_valid({"s": "a", "li": [1], "c": "blue"})
    assert not v.is_valid({"li": [1], "c": "red"})


# --------------------------------------------------------------------------- docstrings


def test_google_docstring() -> None:
    @tool
    def get_weather(location: str, unit: str = "c") -> str:
        """Get the current weather.

        Uses a made-up service.

        Args:
            location: City and country, e.g. Paris, France.
            unit: Temperature unit.

        Returns:
            The weather as text.
        """
        return ""

    assert get_weather.description == "Get the current weather.\n\nUses a made-up service."
    p = props(get_weather)
    assert p["location"] == {
        "type": "string",
        "description": "City and country, e.g. Paris, France.",
    }
    assert p["unit"] == {"type": "string", "description": "Temperature unit.", "default": "c"}
    assert "Returns" not in get_weather.description
    assert "Args" not in get_weather.description


def test_sphinx_docstring() -> None:
    @tool
    def add(a: int, b: int) -> int:
        """Add two integers.

        :param a: the first addend
        :param b: the second addend
        :returns: the sum
        """
        return a + b

    assert add.description == "Add two integers."
    assert props(add)["a"] == {"type": "integer", "description": "the first addend"}
    assert props(add)["b"] == {"type": "integer", "description": "the second addend"}


def test_annotated_description_wins_over_docstring() -> None:
    @tool
    def f(a: Annotated[int, "from annotation"], b: int) -> str:
        """F.

        Args:
            a: from docstring
            b: b from docstring
        """
        return ""

    assert props(f)["a"]["description"] == "from annotation"
    assert props(f)["b"]["description"] == "b from docstring"


def test_no_docstring_gives_empty_description() -> None:
    @tool
    def f(a: int) -> str:
        return ""

    assert f.description == ""
    assert "description" not in props(f)["a"]


def test_one_line_docstring() -> None:
    @tool
    def f() -> str:
        """Return the time."""
        return ""

    assert f.description == "Return the time."
    assert f.parameters == {
        "type": "object",
        "properties": {},
        "required": [],
        "additionalProperties": False,
    }


def test_schema_from_signature_returns_description_and_schema() -> None:
    def f(a: int) -> None:
        """Hello."""

    description, schema = schema_from_signature(f)
    assert description == "Hello."
    assert schema["required"] == ["a"]


# --------------------------------------------------------------------------- the decorator


def test_bare_decorator_makes_a_tool_named_after_the_function() -> None:
    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    assert isinstance(add, Tool)
    assert add.name == "add"
    assert add.description == "Add two integers."
    assert add.timeout is None
    assert add.strict is False
    assert add(2, 3) == 5
    assert add(a=4, b=5) == 9


async def test_decorated_async_function_still_callable() -> None:
    @tool
    async def double(x: int) -> int:
        return 2 * x

    assert double.is_async
    assert await double(21) == 42


def test_decorator_with_arguments() -> None:
    schema = {
        "type": "object",
        "properties": {"location": {"type": "string"}},
        "required": ["location"],
    }

    @tool(name="get_weather", description="Weather now.", parameters=schema, timeout=5)
    async def weather(location: str, ignored: int = 0) -> str:
        """Docstring that is not used."""
        return location

    assert weather.name == "get_weather"
    assert weather.description == "Weather now."
    assert weather.parameters == schema
    assert weather.timeout == 5
    assert weather.strict is False
    assert weather.is_async


def test_decorator_with_only_some_arguments_derives_the_rest() -> None:
    @tool(timeout=2.5)
    def f(a: int) -> str:
        """Derived."""
        return ""

    assert f.name == "f"
    assert f.description == "Derived."
    assert f.parameters["required"] == ["a"]
    assert f.timeout == 2.5


def test_empty_description_is_kept() -> None:
    @tool(description="")
    def f() -> str:
        """Would be derived."""
        return ""

    assert f.description == ""


def test_openai_function_shape() -> None:
    @tool
    def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    spec = add.openai_function()
    assert spec == {"name": "add", "description": "Add.", "parameters": add.parameters}
    assert "strict" not in spec
    json.dumps(spec)

    @tool(strict=True)
    def sub(a: int, b: int) -> int:
        """Subtract."""
        return a - b

    spec = sub.openai_function()
    assert spec["strict"] is True
    assert spec["name"] == "sub"
    assert spec["parameters"] is sub.parameters


# --------------------------------------------------------------------------- strict mode


def test_strict_derived_schema_complies() -> None:
    @tool(strict=True)
    def f(
        a: int,
        b: str = "x",
        c: int | None = None,
        d: list[int] | None = None,
        e: Literal["a", "b"] = "a",
        g: Optional[str] = None,  # noqa: UP045
    ) -> str:
        return ""

    params = f.parameters
    assert params["additionalProperties"] is False
    assert params["required"] == ["a", "b", "c", "d", "e", "g"]
    assert strict_problems(params) == []
    p = params["properties"]
    assert p["a"] == {"type": "integer"}
    # optional parameters admit null and carry no default (strict mode forbids it)
    for name in "bcdeg":
        assert "default" not in json.dumps(p[name]), name
        assert jsonschema.Draft202012Validator(p[name]).is_valid(None), name
    assert not jsonschema.Draft202012Validator(p["a"]).is_valid(None)
    assert jsonschema.Draft202012Validator(p["b"]).is_valid("y")
    assert not jsonschema.Draft202012Validator(p["b"]).is_valid(3)
    assert jsonschema.Draft202012Validator(p["e"]).is_valid("b")
    assert not jsonschema.Draft202012Validator(p["e"]).is_valid("z")


def test_strict_given_compliant_schema_is_accepted() -> None:
    schema = {
        "type": "object",
        "properties": {
            "loc": {"type": "string"},
            "opts": {
                "type": "object",
                "properties": {"unit": {"type": ["string", "null"]}},
                "required": ["unit"],
                "additionalProperties": False,
            },
        },
        "required": ["loc", "opts"],
        "additionalProperties": False,
    }

    @tool(strict=True, parameters=schema)
    def f(loc: str, opts: dict) -> str:
        return ""

    assert f.parameters == schema
    assert f.openai_function()["strict"] is True


@pytest.mark.parametrize(
    ("schema", "fragment"),
    [
        (
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
            "additionalProperties",
        ),
        (
            {
                "type": "object",
                "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
                "required": ["a"],
                "additionalProperties": False,
            },
            "'b'",
        ),
        (
            {
                "type": "object",
                "properties": {
                    "o": {
                        "type": "object",
                        "properties": {"x": {"type": "integer"}},
                        "required": ["x"],
                    }
                },
                "required": ["o"],
                "additionalProperties": False,
            },
            "parameters.o",
        ),
        (
            {
                "type": "object",
                "properties": {
                    "l": {"type": "array", "items": {"type": "object", "properties": {}}}
                },
                "required": ["l"],
                "additionalProperties": False,
            },
            "parameters.l[]",
        ),
        ({"type": "string"}, "root must be an object"),
    ],
)
def test_strict_with_non_compliant_schema_raises_at_definition(
    schema: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(ToolDefinitionError) as info:

        @tool(name="bad_strict", strict=True, parameters=schema)
        def f(**kwargs: Any) -> str:
            return ""

    message = str(info.value)
    assert "bad_strict" in message
    assert "strict" in message
    assert fragment in message


def test_non_strict_tool_accepts_non_compliant_schema() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}

    @tool(parameters=schema)
    def f(a: str = "") -> str:
        return a

    assert f.parameters == schema


def test_strict_derived_with_free_form_dict_raises() -> None:
    with pytest.raises(ToolDefinitionError, match="additionalProperties"):

        @tool(strict=True)
        def f(d: dict) -> str:
            return ""


def test_strict_nesting_too_deep() -> None:
    node: dict[str, Any] = {"type": "string"}
    for _ in range(12):
        node = {"type": "array", "items": node}
    schema = {
        "type": "object",
        "properties": {"deep": node},
        "required": ["deep"],
        "additionalProperties": False,
    }
    assert any("deeper than 10" in p for p in strict_problems(schema))


# --------------------------------------------------------------------------- bad definitions


@pytest.mark.parametrize("name", ["has space", "dot.ted", "x" * 65, "naïve", "slash/no"])
def test_invalid_tool_name_raises(name: str) -> None:
    with pytest.raises(ToolDefinitionError, match="tool name"):

        @tool(name=name)
        def f() -> str:
            return ""


def test_empty_tool_name_raises() -> None:
    with pytest.raises(ToolDefinitionError, match="tool name"):
        Tool(name="", description="", parameters={"type": "object"}, handler=print)


@pytest.mark.parametrize("name", ["a", "get_weather", "Get-Weather-2", "x" * 64])
def test_valid_tool_names(name: str) -> None:
    @tool(name=name)
    def f() -> str:
        return ""

    assert f.name == name


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "objekt"},
        {"type": "object", "properties": {"a": {"type": 12}}},
        {"type": "object", "required": "a"},
    ],
)
def test_invalid_json_schema_raises(schema: dict[str, Any]) -> None:
    with pytest.raises(ToolDefinitionError, match="invalid parameters schema"):

        @tool(name="bad_schema", parameters=schema)
        def f() -> str:
            return ""


@pytest.mark.parametrize("timeout", [0, -1])
def test_non_positive_timeout_raises(timeout: float) -> None:
    with pytest.raises(ToolDefinitionError, match="timeout"):

        @tool(timeout=timeout)
        def f() -> str:
            return ""


def test_tool_definition_error_is_a_value_error() -> None:
    assert issubclass(ToolDefinitionError, ValueError)
    with pytest.raises(ValueError):
        Tool(name="bad name", description="", parameters={"type": "object"}, handler=print)


# --------------------------------------------------------------------------- the runner


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
async def aadd(a: int, b: int) -> int:
    """Add two integers, asynchronously."""
    await asyncio.sleep(0)
    return a + b


@tool
def echo(text: str) -> str:
    return text


@tool
def as_dict(city: str) -> dict[str, Any]:
    return {"city": city, "temp": 21.5, "tags": ["sunny", "café"], "none": None}


@tool
def as_list() -> list[int]:
    return [1, 2, 3]


@tool
def as_none() -> None:
    return None


@tool
def boom(x: int = 0) -> str:
    raise ValueError(f"bad value {x}")


@tool
async def aboom() -> str:
    raise KeyError("missing")


@tool
def silent_boom() -> str:
    raise RuntimeError


@tool
def thread_name() -> str:
    return threading.current_thread().name


@tool
def no_args() -> str:
    return "called"


@tool(timeout=0.1)
async def slow(seconds: float = 5.0) -> str:
    await asyncio.sleep(seconds)
    return "finished"


@tool
async def slow_default(seconds: float = 5.0) -> str:
    await asyncio.sleep(seconds)
    return "finished"


@tool(timeout=0.1)
def slow_sync() -> str:
    time.sleep(0.6)
    return "finished"


@tool
async def nap(seconds: float, label: str) -> str:
    await asyncio.sleep(seconds)
    return label


@tool
def sync_nap(seconds: float, label: str) -> str:
    time.sleep(seconds)
    return label


@tool(strict=True)
def greet(name: str, punctuation: str = "!") -> str:
    return name + punctuation


@tool
async def raises_own_timeout() -> str:
    raise TimeoutError("the weather service did not answer")


REGISTRY = Registry.of(
    add,
    aadd,
    echo,
    as_dict,
    as_list,
    as_none,
    boom,
    aboom,
    silent_boom,
    thread_name,
    no_args,
    slow,
    slow_default,
    slow_sync,
    nap,
    sync_nap,
    greet,
    raises_own_timeout,
    plugin="tests",
)


@pytest.fixture
def runner() -> ToolRunner:
    return ToolRunner(REGISTRY, default_timeout=0.2)


async def run(runner: ToolRunner, name: str, arguments: str | dict[str, Any]) -> ToolResult:
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    call = ToolCall(id="call_1", name=name, arguments=args)
    result = await runner.run(call)
    assert result.call is call
    return result


async def test_sync_tool(runner: ToolRunner) -> None:
    result = await run(runner, "add", {"a": 2, "b": 40})
    assert result.ok
    assert result.output == "42"


async def test_async_tool(runner: ToolRunner) -> None:
    result = await run(runner, "aadd", {"a": 2, "b": 3})
    assert result.ok
    assert result.output == "5"


async def test_sync_tool_runs_off_the_event_loop(runner: ToolRunner) -> None:
    result = await run(runner, "thread_name", "{}")
    assert result.ok
    assert result.output != threading.current_thread().name


async def test_string_result_is_sent_as_is(runner: ToolRunner) -> None:
    result = await run(runner, "echo", {"text": 'plain "text"\nwith newline'})
    assert result.ok
    assert result.output == 'plain "text"\nwith newline'


async def test_dict_result_is_json_encoded(runner: ToolRunner) -> None:
    result = await run(runner, "as_dict", {"city": "Paris"})
    assert result.ok
    assert json.loads(result.output) == {
        "city": "Paris",
        "temp": 21.5,
        "tags": ["sunny", "café"],
        "none": None,
    }


async def test_list_and_none_results_are_json_encoded(runner: ToolRunner) -> None:
    assert (await run(runner, "as_list", "")).output == "[1, 2, 3]"
    none = await run(runner, "as_none", "")
    assert none.ok
    assert none.output == "null"


@pytest.mark.parametrize("arguments", ["", "   ", "\n"])
async def test_empty_arguments_mean_no_arguments(runner: ToolRunner, arguments: str) -> None:
    result = await run(runner, "no_args", arguments)
    assert result.ok
    assert result.output == "called"


async def test_empty_arguments_still_validated(runner: ToolRunner) -> None:
    result = await run(runner, "add", "")
    assert not result.ok
    assert result.output.startswith("error:")
    assert "required" in result.output


async def test_invalid_json_arguments(runner: ToolRunner) -> None:
    result = await run(runner, "add", '{"a": 1, "b":')
    assert not result.ok
    assert result.output.startswith("error:")
    assert "'add'" in result.output
    assert "not valid JSON" in result.output


@pytest.mark.parametrize("arguments", ["[1, 2]", '"text"', "3", "null", "true"])
async def test_non_object_arguments(runner: ToolRunner, arguments: str) -> None:
    result = await run(runner, "add", arguments)
    assert not result.ok
    assert result.output.startswith("error:")
    assert "must be a JSON object" in result.output


async def test_missing_required_argument(runner: ToolRunner) -> None:
    result = await run(runner, "add", {"a": 1})
    assert not result.ok
    assert result.output.startswith("error:")
    assert "invalid arguments for 'add'" in result.output
    assert 'missing required argument "b"' in result.output


async def test_wrong_type_argument_names_the_field(runner: ToolRunner) -> None:
    result = await run(runner, "add", {"a": 1, "b": "two"})
    assert not result.ok
    assert result.output.startswith("error:")
    assert result.output.endswith(': b: "two" is not of type "integer"')


async def test_nested_violation_names_the_path(runner: ToolRunner) -> None:
    @tool
    def total(values: list[int]) -> int:
        return sum(values)

    r = ToolRunner(Registry.of(total), default_timeout=1)
    result = await run(r, "total", {"values": [1, "x"]})
    assert not result.ok
    assert "values/1" in result.output
    ok = await run(r, "total", {"values": [1, 2]})
    assert ok.output == "3"


async def test_strict_tool_rejects_extra_arguments(runner: ToolRunner) -> None:
    result = await run(runner, "greet", {"name": "Bob", "punctuation": "?", "extra": 1})
    assert not result.ok
    assert result.output.startswith("error:")
    assert "extra" in result.output


async def test_strict_tool_with_all_arguments(runner: ToolRunner) -> None:
    result = await run(runner, "greet", {"name": "Bob", "punctuation": "?"})
    assert result.ok
    assert result.output == "Bob?"


async def test_strict_tool_null_for_defaulted_parameter_uses_default(runner: ToolRunner) -> None:
    result = await run(runner, "greet", {"name": "Bob", "punctuation": None})
    assert result.output == "Bob!"
    assert result.ok


async def test_sync_exception(runner: ToolRunner) -> None:
    result = await run(runner, "boom", {"x": 7})
    assert not result.ok
    assert result.output.startswith("error:")
    assert "'boom'" in result.output
    assert "ValueError" in result.output
    assert "bad value 7" in result.output


async def test_async_exception(runner: ToolRunner) -> None:
    result = await run(runner, "aboom", "{}")
    assert not result.ok
    assert result.output.startswith("error:")
    assert "KeyError" in result.output
    assert "missing" in result.output


async def test_exception_without_message(runner: ToolRunner) -> None:
    result = await run(runner, "silent_boom", "")
    assert not result.ok
    assert result.output.startswith("error:")
    assert "RuntimeError" in result.output


async def test_tool_raising_timeout_error_itself_is_reported_as_exception(
    runner: ToolRunner,
) -> None:
    result = await run(runner, "raises_own_timeout", "")
    assert not result.ok
    assert result.output.startswith("error:")
    assert "the weather service did not answer" in result.output


async def test_per_tool_timeout() -> None:
    runner = ToolRunner(REGISTRY, default_timeout=5)
    started = time.monotonic()
    result = await run(runner, "slow", {"seconds": 5})
    elapsed = time.monotonic() - started
    assert not result.ok
    assert result.output.startswith("error:")
    assert "'slow'" in result.output
    assert "timed out" in result.output
    assert "0.1 seconds" in result.output  # the per-tool 0.1 s wins over the 5 s default
    assert elapsed < 1


async def test_per_tool_timeout_longer_than_default_is_honoured() -> None:
    @tool(timeout=1)
    async def patient() -> str:
        await asyncio.sleep(0.15)
        return "done"

    r = ToolRunner(Registry.of(patient), default_timeout=0.05)
    result = await run(r, "patient", "")
    assert result.ok
    assert result.output == "done"


async def test_default_timeout(runner: ToolRunner) -> None:
    started = time.monotonic()
    result = await run(runner, "slow_default", {"seconds": 5})
    elapsed = time.monotonic() - started
    assert not result.ok
    assert result.output.startswith("error:")
    assert "timed out" in result.output
    assert "0.2 seconds" in result.output
    assert 0.15 < elapsed < 1


async def test_fast_enough_call_is_not_timed_out(runner: ToolRunner) -> None:
    result = await run(runner, "slow", {"seconds": 0.01})
    assert result.ok
    assert result.output == "finished"


async def test_sync_tool_timeout(runner: ToolRunner) -> None:
    started = time.monotonic()
    result = await run(runner, "slow_sync", "")
    assert time.monotonic() - started < 0.5  # does not wait for the thread
    assert not result.ok
    assert result.output.startswith("error:")
    assert "timed out" in result.output


async def test_unknown_tool(runner: ToolRunner) -> None:
    result = await run(runner, "nope", "{}")
    assert not result.ok
    assert result.output.startswith("error:")
    assert "'nope'" in result.output


async def test_run_all_is_concurrent_and_keeps_order(runner: ToolRunner) -> None:
    calls = [
        ToolCall("c1", "nap", json.dumps({"seconds": 0.3, "label": "first"})),
        ToolCall("c2", "nap", json.dumps({"seconds": 0.05, "label": "second"})),
        ToolCall("c3", "sync_nap", json.dumps({"seconds": 0.3, "label": "third"})),
        ToolCall("c4", "add", json.dumps({"a": 1, "b": 1})),
    ]
    r = ToolRunner(REGISTRY, default_timeout=5)
    started = time.monotonic()
    results = await r.run_all(calls)
    elapsed = time.monotonic() - started
    assert elapsed < 0.5
    assert [res.call for res in results] == calls
    assert [res.output for res in results] == ["first", "second", "third", "2"]
    assert all(res.ok for res in results)


async def test_run_all_two_async_sleepers() -> None:
    r = ToolRunner(REGISTRY, default_timeout=5)
    calls = [
        ToolCall("a", "nap", json.dumps({"seconds": 0.3, "label": "A"})),
        ToolCall("b", "nap", json.dumps({"seconds": 0.3, "label": "B"})),
    ]
    started = time.monotonic()
    results = await r.run_all(calls)
    assert time.monotonic() - started < 0.5
    assert [res.output for res in results] == ["A", "B"]


async def test_run_all_mixes_failures_and_successes(runner: ToolRunner) -> None:
    calls = [
        ToolCall("1", "boom", ""),
        ToolCall("2", "add", '{"a": 1, "b": 2}'),
        ToolCall("3", "missing_tool", ""),
        ToolCall("4", "add", "not json"),
        ToolCall("5", "slow", '{"seconds": 3}'),
    ]
    results = await runner.run_all(calls)
    assert [res.call.id for res in results] == ["1", "2", "3", "4", "5"]
    assert [res.ok for res in results] == [False, True, False, False, False]
    assert results[1].output == "3"
    assert all(res.output.startswith("error:") for res in results if not res.ok)


async def test_run_all_single_and_empty(runner: ToolRunner) -> None:
    assert await runner.run_all([]) == []
    [only] = await runner.run_all([ToolCall("x", "add", '{"a": 1, "b": 1}')])
    assert only.output == "2"
    assert only.ok


async def test_enum_parameters_arrive_as_members() -> None:
    import enum as enum_module

    class Unit(enum_module.Enum):
        CELSIUS = "c"
        FAHRENHEIT = "f"

    seen = []

    @tool
    def temperature(unit: Unit = Unit.CELSIUS) -> str:
        """Temperature."""
        seen.append(unit)
        return unit.name

    assert temperature.parameters["properties"]["unit"]["enum"] == ["c", "f"]
    r = ToolRunner(Registry.of(temperature), default_timeout=1)
    assert (await run(r, "temperature", {"unit": "f"})).output == "FAHRENHEIT"
    assert (await run(r, "temperature", {})).output == "CELSIUS"
    assert seen == [Unit.FAHRENHEIT, Unit.CELSIUS]
