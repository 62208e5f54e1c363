"""openai-tool-proxy: an OpenAI-compatible reverse proxy that runs registered tools server-side.

Plugin authors need only `tool` (and `RequestContext`, for a tool that acts as its caller;
`ToolProvider`, for a plugin whose tools come from something that runs):

    from proxy import tool

    @tool
    def add(a: int, b: int) -> int:
        \"\"\"Add two integers.\"\"\"
        return a + b
"""

from proxy.config import ConfigError
from proxy.tools.context import RequestContext
from proxy.tools.provider import ToolProvider
from proxy.tools.tool import Origin, Tool, ToolDefinitionError, ToolError, tool

__all__ = [
    "ConfigError",
    "Origin",
    "RequestContext",
    "Tool",
    "ToolDefinitionError",
    "ToolError",
    "ToolProvider",
    "tool",
]
__version__ = "0.1.0"
