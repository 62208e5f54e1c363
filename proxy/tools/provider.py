"""Tool providers: plugins with a life — configured, started before the proxy serves, offering
tools that may change while they run, and closed at shutdown."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

from proxy.tools.tool import Tool


class ToolProvider(ABC):
    """A plugin whose tools come from something that runs (a server, a connection, a file).

    `start` gets the plugin's `[plugin_config.<entry point name>]` table (empty when absent)
    and runs before the proxy serves; `tools` is asked for the tools now — return the same
    sequence object while they are unchanged, as the proxy rebuilds its view only when it
    differs; `close` runs at shutdown.
    """

    async def start(self, config: Mapping[str, Any]) -> None:  # noqa: B027 - optional hook
        """Get ready to serve; an exception leaves this provider's tools out."""

    @abstractmethod
    def tools(self) -> Sequence[Tool]:
        """The tools this provider offers now."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Let go of what `start` acquired."""
