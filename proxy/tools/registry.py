"""Finding tools: entry points of the `openai_tool_proxy` group, collected into a registry."""

from __future__ import annotations

import types
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from proxy.tools.tool import Tool

ENTRY_POINT_GROUP = "openai_tool_proxy"


class PluginError(RuntimeError):
    """A plugin could not be loaded; start-up stops with this message."""


@dataclass(frozen=True)
class Registered:
    tool: Tool
    plugin: str


class Registry(Mapping[str, Registered]):
    """The server tools by name, each with the plugin that registered it."""

    def __init__(self, entries: Iterable[Registered] = ()) -> None:
        self._entries: dict[str, Registered] = {}
        for entry in entries:
            self.add(entry.tool, entry.plugin)

    def add(self, tool: Tool, plugin: str) -> None:
        existing = self._entries.get(tool.name)
        if existing is not None and existing.tool is not tool:
            raise PluginError(
                f"tool name {tool.name!r} is registered twice: by plugin {existing.plugin!r} "
                f"and by plugin {plugin!r}"
            )
        self._entries[tool.name] = Registered(tool, plugin)

    def __getitem__(self, name: str) -> Registered:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    @classmethod
    def of(cls, *tools: Tool, plugin: str = "local") -> Registry:
        """A registry of the given tools (handy for embedding and tests)."""
        return cls(Registered(t, plugin) for t in tools)


def load_registry(only: Iterable[str] | None = None) -> Registry:
    """Load every installed plugin (or only the named ones) into a registry.

    Raises `PluginError` naming the entry point and the cause when one fails.
    """
    available = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    if only is None:
        chosen = list(available.values())
    else:
        wanted = list(dict.fromkeys(only))
        unknown = [name for name in wanted if name not in available]
        if unknown:
            raise PluginError(
                f"plugin(s) {', '.join(map(repr, unknown))} not installed; installed plugins: "
                f"{', '.join(sorted(available)) or 'none'}"
            )
        chosen = [available[name] for name in wanted]
    registry = Registry()
    for ep in chosen:
        for found in tools_of_entry_point(ep):
            registry.add(found, ep.name)
    return registry


def tools_of_entry_point(ep: EntryPoint) -> list[Tool]:
    """Load one entry point: a module, a tool, an iterable of tools, or a callable of them."""
    where = f"plugin {ep.name!r} ({ep.value})"
    try:
        target = ep.load()
        found = collect_tools(target)
    except PluginError as exc:
        raise PluginError(f"{where}: {exc}") from exc
    except Exception as exc:
        raise PluginError(f"{where} failed to load: {type(exc).__name__}: {exc}") from exc
    if not found:
        raise PluginError(f"{where} provides no tools")
    return found


def collect_tools(target: Any) -> list[Tool]:
    """The tools a plugin object stands for (see `tools_of_entry_point`)."""
    if isinstance(target, Tool):
        return [target]
    if isinstance(target, types.ModuleType):
        return [value for value in vars(target).values() if isinstance(value, Tool)]
    if callable(target):
        return collect_tools(target())
    if isinstance(target, Iterable) and not isinstance(target, str | bytes | Mapping):
        items = list(target)
        bad = [item for item in items if not isinstance(item, Tool)]
        if bad:
            raise PluginError(f"expected tools, got {type(bad[0]).__name__}: {bad[0]!r}")
        return items
    raise PluginError(
        f"expected a module, a tool, an iterable of tools or a callable returning them, "
        f"got {type(target).__name__}"
    )
