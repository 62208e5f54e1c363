"""Plugin discovery through REAL entry points: tmp dist-info folders put on `sys.path`."""

from __future__ import annotations

import importlib
import sys
import types
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from proxy import Tool, tool
from proxy.tools.registry import (
    PluginError,
    Registered,
    Registry,
    collect_tools,
    load_registry,
)
from tests.distributions import write_distribution

TWO_TOOLS = '''
from __future__ import annotations

from typing import Literal

from proxy import tool

NOT_A_TOOL = 42


def helper(x: int) -> int:
    return x


@tool
def {prefix}_add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool(name="{prefix}_weather", timeout=3)
async def weather(location: str, unit: Literal["c", "f"] = "c") -> str:
    """Weather now.

    Args:
        location: where
    """
    return location + unit


TOOLS = [{prefix}_add, weather]


def make_tools():
    return (t for t in TOOLS)
'''


@pytest.fixture
def make_plugin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., tuple[str, str]]]:
    """`make_plugin(source, {ep_name: "{mod}" or "{mod}:attr"})` -> (module name, prefix).

    Writes a uniquely named module and a dist-info declaring the entry points, all in one
    fresh folder prepended to `sys.path`.
    """
    created: list[str] = []
    monkeypatch.syspath_prepend(str(tmp_path))

    def make(source: str, entry_points: dict[str, str]) -> tuple[str, str]:
        prefix = "p" + uuid.uuid4().hex[:10]
        module = f"tp_plugin_{prefix}"
        created.append(module)
        write_distribution(
            tmp_path,
            module,
            source.replace("{prefix}", prefix),
            {name: value.format(mod=module, prefix=prefix) for name, value in entry_points.items()},
        )
        importlib.invalidate_caches()
        return module, prefix

    yield make
    for module in created:
        sys.modules.pop(module, None)
    importlib.invalidate_caches()


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


# --------------------------------------------------------------------------- discovery


def test_module_entry_point_collects_its_tools(make_plugin: Callable[..., tuple[str, str]]) -> None:
    ep = unique("demo")
    module, prefix = make_plugin(TWO_TOOLS, {ep: "{mod}"})
    registry = load_registry(only=[ep])
    assert sorted(registry) == sorted([f"{prefix}_add", f"{prefix}_weather"])
    add = registry[f"{prefix}_add"]
    assert isinstance(add, Registered)
    assert add.plugin == ep
    assert add.tool.description == "Add two integers."
    assert add.tool.parameters["required"] == ["a", "b"]
    assert add.tool(2, 3) == 5
    weather = registry[f"{prefix}_weather"].tool
    assert weather.timeout == 3
    assert weather.is_async
    # `from __future__ import annotations` in the plugin module still yields real types
    assert weather.parameters["properties"]["unit"] == {"enum": ["c", "f"], "default": "c"}
    assert weather.parameters["properties"]["location"] == {
        "type": "string",
        "description": "where",
    }
    assert module in sys.modules


def test_single_tool_entry_point(make_plugin: Callable[..., tuple[str, str]]) -> None:
    ep = unique("single")
    _, prefix = make_plugin(TWO_TOOLS, {ep: "{mod}:weather"})
    registry = load_registry(only=[ep])
    assert list(registry) == [f"{prefix}_weather"]
    assert registry[f"{prefix}_weather"].plugin == ep


def test_iterable_entry_point(make_plugin: Callable[..., tuple[str, str]]) -> None:
    ep = unique("iterable")
    _, prefix = make_plugin(TWO_TOOLS, {ep: "{mod}:TOOLS"})
    registry = load_registry(only=[ep])
    assert list(registry) == [f"{prefix}_add", f"{prefix}_weather"]


def test_callable_entry_point(make_plugin: Callable[..., tuple[str, str]]) -> None:
    ep = unique("factory")
    _, prefix = make_plugin(TWO_TOOLS, {ep: "{mod}:make_tools"})
    registry = load_registry(only=[ep])
    assert list(registry) == [f"{prefix}_add", f"{prefix}_weather"]
    assert {entry.plugin for entry in registry.values()} == {ep}


def test_all_installed_plugins_load_without_only(
    make_plugin: Callable[..., tuple[str, str]],
) -> None:
    ep_a, ep_b = unique("all-a"), unique("all-b")
    _, prefix_a = make_plugin(TWO_TOOLS, {ep_a: "{mod}:weather"})
    _, prefix_b = make_plugin(TWO_TOOLS, {ep_b: "{mod}"})
    registry = load_registry()
    assert registry[f"{prefix_a}_weather"].plugin == ep_a
    assert registry[f"{prefix_b}_add"].plugin == ep_b
    assert registry[f"{prefix_b}_weather"].plugin == ep_b


def test_only_filters_plugins(make_plugin: Callable[..., tuple[str, str]]) -> None:
    ep_a, ep_b, ep_c = unique("only-a"), unique("only-b"), unique("only-c")
    _, prefix_a = make_plugin(TWO_TOOLS, {ep_a: "{mod}:weather"})
    _, prefix_b = make_plugin(TWO_TOOLS, {ep_b: "{mod}:weather", ep_c: "{mod}:{prefix}_add"})
    registry = load_registry(only=[ep_b, ep_c])
    assert sorted(registry) == sorted([f"{prefix_b}_weather", f"{prefix_b}_add"])
    assert f"{prefix_a}_weather" not in registry
    assert registry[f"{prefix_b}_weather"].plugin == ep_b
    assert registry[f"{prefix_b}_add"].plugin == ep_c
    # naming a plugin twice loads it once
    assert len(load_registry(only=[ep_a, ep_a])) == 1


def test_only_empty_loads_nothing(make_plugin: Callable[..., tuple[str, str]]) -> None:
    make_plugin(TWO_TOOLS, {unique("unused"): "{mod}"})
    assert len(load_registry(only=[])) == 0
    assert len(load_registry(only=())) == 0


def test_unwanted_broken_plugin_is_not_loaded(
    make_plugin: Callable[..., tuple[str, str]],
) -> None:
    good, broken = unique("good"), unique("broken")
    _, prefix = make_plugin(TWO_TOOLS, {good: "{mod}:weather"})
    make_plugin("raise RuntimeError('never import me')\n", {broken: "{mod}"})
    assert list(load_registry(only=[good])) == [f"{prefix}_weather"]


# --------------------------------------------------------------------------- failures


def test_unknown_plugin_lists_installed_ones(make_plugin: Callable[..., tuple[str, str]]) -> None:
    ep = unique("installed")
    make_plugin(TWO_TOOLS, {ep: "{mod}"})
    with pytest.raises(PluginError) as info:
        load_registry(only=[ep, "no-such-plugin"])
    message = str(info.value)
    assert "'no-such-plugin'" in message
    assert "not installed" in message
    assert ep in message.split("installed plugins:")[1]


def test_plugin_whose_import_raises(make_plugin: Callable[..., tuple[str, str]]) -> None:
    ep = unique("explodes")
    module, _ = make_plugin("raise RuntimeError('kaboom at import')\n", {ep: "{mod}"})
    with pytest.raises(PluginError) as info:
        load_registry(only=[ep])
    message = str(info.value)
    assert repr(ep) in message
    assert module in message
    assert "RuntimeError" in message
    assert "kaboom at import" in message
    assert isinstance(info.value.__cause__, RuntimeError)


def test_plugin_with_missing_dependency(make_plugin: Callable[..., tuple[str, str]]) -> None:
    ep = unique("missing-dep")
    make_plugin("import tp_no_such_module_anywhere\n", {ep: "{mod}"})
    with pytest.raises(PluginError) as info:
        load_registry(only=[ep])
    assert ep in str(info.value)
    assert "ModuleNotFoundError" in str(info.value)
    assert "tp_no_such_module_anywhere" in str(info.value)


def test_plugin_missing_attribute(make_plugin: Callable[..., tuple[str, str]]) -> None:
    ep = unique("missing-attr")
    make_plugin(TWO_TOOLS, {ep: "{mod}:not_there"})
    with pytest.raises(PluginError) as info:
        load_registry(only=[ep])
    assert ep in str(info.value)
    assert "not_there" in str(info.value)


def test_plugin_with_bad_tool_definition(make_plugin: Callable[..., tuple[str, str]]) -> None:
    ep = unique("bad-def")
    source = "from proxy import tool\n\n@tool(name='bad name')\ndef f() -> str:\n    return ''\n"
    make_plugin(source, {ep: "{mod}"})
    with pytest.raises(PluginError) as info:
        load_registry(only=[ep])
    assert ep in str(info.value)
    assert "ToolDefinitionError" in str(info.value)
    assert "bad name" in str(info.value)


def test_plugin_factory_that_raises(make_plugin: Callable[..., tuple[str, str]]) -> None:
    ep = unique("factory-raises")
    source = "def make():\n    raise ValueError('no api key configured')\n"
    make_plugin(source, {ep: "{mod}:make"})
    with pytest.raises(PluginError) as info:
        load_registry(only=[ep])
    assert ep in str(info.value)
    assert "ValueError: no api key configured" in str(info.value)


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("from proxy import tool\nX = 1\n", "{mod}"),
        ("TOOLS = []\n", "{mod}:TOOLS"),
        ("def make():\n    return []\n", "{mod}:make"),
    ],
    ids=["module-without-tools", "empty-list", "factory-returning-nothing"],
)
def test_entry_point_giving_no_tools(
    make_plugin: Callable[..., tuple[str, str]], source: str, target: str
) -> None:
    ep = unique("empty")
    make_plugin(source, {ep: target})
    with pytest.raises(PluginError) as info:
        load_registry(only=[ep])
    assert ep in str(info.value)
    assert "provides no tools" in str(info.value)


@pytest.mark.parametrize(
    ("source", "target", "fragment"),
    [
        ("VALUE = 42\n", "{mod}:VALUE", "got int"),
        ("NAME = 'add'\n", "{mod}:NAME", "got str"),
        ("MAPPING = {'a': 1}\n", "{mod}:MAPPING", "got dict"),
        ("ITEMS = ['add', 'sub']\n", "{mod}:ITEMS", "expected tools, got str"),
        ("def make():\n    return 7\n", "{mod}:make", "got int"),
    ],
    ids=["int", "str", "dict", "list-of-str", "factory-returning-int"],
)
def test_entry_point_giving_a_non_tool(
    make_plugin: Callable[..., tuple[str, str]], source: str, target: str, fragment: str
) -> None:
    ep = unique("nontool")
    make_plugin(source, {ep: target})
    with pytest.raises(PluginError) as info:
        load_registry(only=[ep])
    assert ep in str(info.value)
    assert fragment in str(info.value)


def test_duplicate_tool_names_across_plugins(make_plugin: Callable[..., tuple[str, str]]) -> None:
    source = (
        "from proxy import tool\n\n"
        "@tool(name='shared_name_{ident}')\n"
        "def f() -> str:\n    return 'x'\n"
    )
    ident = uuid.uuid4().hex[:8]
    ep_a, ep_b = unique("dup-a"), unique("dup-b")
    make_plugin(source.replace("{ident}", ident), {ep_a: "{mod}"})
    make_plugin(source.replace("{ident}", ident), {ep_b: "{mod}"})
    with pytest.raises(PluginError) as info:
        load_registry(only=[ep_a, ep_b])
    message = str(info.value)
    assert f"shared_name_{ident}" in message
    assert repr(ep_a) in message
    assert repr(ep_b) in message
    # each one alone is fine
    assert len(load_registry(only=[ep_a])) == 1
    assert len(load_registry(only=[ep_b])) == 1


def test_same_tool_through_two_entry_points_is_not_a_duplicate(
    make_plugin: Callable[..., tuple[str, str]],
) -> None:
    ep_a, ep_b = unique("same-a"), unique("same-b")
    _, prefix = make_plugin(TWO_TOOLS, {ep_a: "{mod}:weather", ep_b: "{mod}:TOOLS"})
    registry = load_registry(only=[ep_a, ep_b])
    assert sorted(registry) == sorted([f"{prefix}_add", f"{prefix}_weather"])


# --------------------------------------------------------------------------- collect_tools


@tool
def alpha() -> str:
    return "a"


@tool
def beta() -> str:
    return "b"


def test_collect_tools_shapes() -> None:
    assert collect_tools(alpha) == [alpha]
    assert collect_tools([alpha, beta]) == [alpha, beta]
    assert collect_tools((alpha,)) == [alpha]
    assert collect_tools(lambda: [beta]) == [beta]
    assert collect_tools(lambda: alpha) == [alpha]
    module = types.ModuleType("tp_synthetic")
    module.alpha = alpha  # type: ignore[attr-defined]
    module.beta = beta  # type: ignore[attr-defined]
    module.other = 3  # type: ignore[attr-defined]
    module.tool = tool  # type: ignore[attr-defined]
    module.Tool = Tool  # type: ignore[attr-defined]
    assert collect_tools(module) == [alpha, beta]
    with pytest.raises(PluginError, match="expected tools"):
        collect_tools([alpha, "beta"])
    with pytest.raises(PluginError, match="expected a module"):
        collect_tools(None)


# --------------------------------------------------------------------------- Registry


def test_registry_of() -> None:
    registry = Registry.of(alpha, beta)
    assert list(registry) == ["alpha", "beta"]
    assert len(registry) == 2
    assert "alpha" in registry
    assert "gamma" not in registry
    assert registry["alpha"] == Registered(alpha, "local")
    assert registry.get("gamma") is None
    named = Registry.of(alpha, plugin="mine")
    assert named["alpha"].plugin == "mine"
    assert len(Registry.of()) == 0
    with pytest.raises(KeyError):
        registry["gamma"]


def test_registry_rejects_two_tools_with_one_name() -> None:
    @tool(name="alpha")
    def other_alpha() -> str:
        return "other"

    with pytest.raises(PluginError) as info:
        Registry.of(alpha, other_alpha, plugin="p1")
    assert "'alpha'" in str(info.value)

    registry = Registry.of(alpha, plugin="first")
    with pytest.raises(PluginError) as info:
        registry.add(other_alpha, "second")
    assert "'first'" in str(info.value)
    assert "'second'" in str(info.value)
    assert registry["alpha"].tool is alpha


def test_registry_same_tool_twice_is_fine() -> None:
    registry = Registry.of(alpha, alpha, beta)
    assert list(registry) == ["alpha", "beta"]
