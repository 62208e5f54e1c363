"""Finding tools: entry points of the `openai_tool_proxy` group, collected into a registry."""

from __future__ import annotations

import asyncio
import logging
import types
from collections.abc import ItemsView, Iterable, Iterator, KeysView, Mapping, Sequence, ValuesView
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from proxy.config import ConfigError
from proxy.tools.provider import ToolProvider
from proxy.tools.tool import Tool

log = logging.getLogger("proxy.tools")

ENTRY_POINT_GROUP = "openai_tool_proxy"


class PluginError(RuntimeError):
    """A plugin could not be loaded; start-up stops with this message."""


@dataclass(frozen=True)
class Registered:
    tool: Tool
    plugin: str


class Registry(Mapping[str, Registered]):
    """The server tools by name, each with the plugin that registered it: the static tools,
    and those the started providers offer now (`now`)."""

    def __init__(self, entries: Iterable[Registered] = ()) -> None:
        self._entries: dict[str, Registered] = {}
        for entry in entries:
            self.add(entry.tool, entry.plugin)
        self._providers: list[tuple[str, ToolProvider]] = []
        self._running: list[tuple[str, ToolProvider]] = []
        self._seen: list[Sequence[Tool]] = []  # the providers' lists `_view` was built from
        self._view: Registry | None = None
        self._configured = True  # nothing to configure until a provider is added

    def add(self, tool: Tool, plugin: str) -> None:
        existing = self._entries.get(tool.name)
        if existing is not None and existing.tool is not tool:
            raise PluginError(
                f"tool name {tool.name!r} is registered twice: by plugin {existing.plugin!r} "
                f"and by plugin {plugin!r}"
            )
        self._entries[tool.name] = Registered(tool, plugin)

    @property
    def providers(self) -> list[str]:
        """The plugins that provide tools once started (their tools unknown before)."""
        return [plugin for plugin, _ in self._providers]

    def provide(self, provider: ToolProvider, plugin: str) -> None:
        """Register a provider: its tools are served once `start` started it."""
        self._providers.append((plugin, provider))
        self._configured = False

    def configure(self, configs: Mapping[str, Mapping[str, Any]]) -> None:
        """Have every provider check its plugin's table of `configs` (once); raises
        `ConfigError` naming the plugin and what its provider found wrong."""
        if self._configured:
            return
        for plugin, provider in self._providers:
            try:
                provider.configure(configs.get(plugin, {}))
            except ValueError as exc:
                raise ConfigError(f"plugin {plugin!r}: {exc}") from exc
        self._configured = True

    def servers(self) -> dict[str, str]:
        """The providers' servers (see `ToolProvider.servers`), each with its plugin."""
        return {
            server: plugin for plugin, provider in self._providers for server in provider.servers()
        }

    async def start(self, configs: Mapping[str, Mapping[str, Any]]) -> None:
        """Start every provider with its plugin's table of `configs`, all at once; one that
        fails is logged once, naming it and the cause, and served without."""
        self.configure(configs)
        results = await asyncio.gather(
            *(provider.start(configs.get(plugin, {})) for plugin, provider in self._providers),
            return_exceptions=True,
        )
        for (plugin, provider), result in zip(self._providers, results, strict=True):
            if isinstance(result, BaseException):  # its own cancellation too: a failure
                log.error(
                    "plugin %r failed to start, its tools are left out: %s: %s",
                    plugin,
                    type(result).__name__,
                    result,
                )
            else:
                self._running.append((plugin, provider))
        self._view = None

    async def close(self) -> None:
        """Close every started provider; an error is logged, never raised."""
        running, self._running, self._view = self._running, [], None
        for plugin, provider in running:
            try:
                await provider.close()
            except Exception as exc:
                log.error("plugin %r failed to close: %s: %s", plugin, type(exc).__name__, exc)

    def now(self) -> Registry:
        """The tools at this moment, kept until a provider's `tools()` is another object; a
        provider's tool whose name is taken is left out with a warning."""
        if not self._running:
            return self
        lists = [provider.tools() for _, provider in self._running]
        if self._view is None or any(a is not b for a, b in zip(lists, self._seen, strict=True)):
            self._view, self._seen = self._merged(lists), lists
        return self._view

    def _merged(self, lists: list[Sequence[Tool]]) -> Registry:
        view = Registry(self._entries.values())
        for (plugin, _), tools in zip(self._running, lists, strict=True):
            for tool in tools:
                taken = view._entries.get(tool.name)
                if taken is not None:
                    log.warning(
                        "plugin %r offers tool %r, which plugin %r registered: left out",
                        plugin,
                        tool.name,
                        taken.plugin,
                    )
                    continue
                view._entries[tool.name] = Registered(tool, plugin)
        return view

    def __getitem__(self, name: str) -> Registered:
        return self.now()._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.now()._entries)

    def __len__(self) -> int:
        return len(self.now()._entries)

    # The dict's own views: a request walks every tool, and the views `Mapping` derives
    # would look each one up again.

    def keys(self) -> KeysView[str]:
        return self.now()._entries.keys()

    def items(self) -> ItemsView[str, Registered]:
        return self.now()._entries.items()

    def values(self) -> ValuesView[Registered]:
        return self.now()._entries.values()

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
            if isinstance(found, ToolProvider):
                registry.provide(found, ep.name)
            else:
                registry.add(found, ep.name)
    return registry


def tools_of_entry_point(ep: EntryPoint) -> list[Tool | ToolProvider]:
    """Load one entry point: a module, a tool, an iterable of tools, or a callable of them;
    or a tool provider, or a callable returning one (its class)."""
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


def collect_tools(target: Any) -> list[Tool | ToolProvider]:
    """The tools, or the provider, a plugin object stands for (see `tools_of_entry_point`)."""
    if isinstance(target, Tool | ToolProvider):
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
        return list(items)
    raise PluginError(
        f"expected a module, a tool, an iterable of tools, a tool provider or a callable "
        f"returning them, got {type(target).__name__}"
    )
