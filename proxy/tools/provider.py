"""Tool providers: plugins with a life — configured, started before the proxy serves, offering
tools that may change while they run, and closed at shutdown."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

from proxy.tools.tool import Tool


class ToolProvider(ABC):
    """A plugin whose tools come from something that runs (a server, a connection, a file).

    `configure` checks the plugin's `[plugin_config.<entry point name>]` table (empty when
    absent) as the proxy loads; `start` gets the same table and runs before the proxy serves;
    `tools` is asked for the tools now — return the same sequence object while they are
    unchanged, as the proxy rebuilds its view only when it differs; `close` runs at shutdown.
    """

    def configure(self, config: Mapping[str, Any]) -> None:  # noqa: B027 - optional hook
        """Check the configuration before anything starts: raise `ConfigError` (or another
        `ValueError`) naming what is wrong, and the proxy refuses to start with that message."""

    def servers(self) -> Sequence[str]:
        """The servers this provider's tools come from (`Tool.origin.server`), known even
        while one has no tools (starting, or down): a Responses request's hosted `mcp` tool
        whose `server_label` names one is run by the proxy, never sent upstream."""
        return ()

    async def start(self, config: Mapping[str, Any]) -> None:  # noqa: B027 - optional hook
        """Get ready to serve; an exception leaves this provider's tools out."""

    @abstractmethod
    def tools(self) -> Sequence[Tool]:
        """The tools this provider offers now."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Let go of what `start` acquired."""
