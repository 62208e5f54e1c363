"""openai-tool-proxy: an OpenAI-compatible reverse proxy that runs registered tools server-side.

Plugin authors need only `tool`:

    from proxy import tool

    @tool
    def add(a: int, b: int) -> int:
        \"\"\"Add two integers.\"\"\"
        return a + b
"""

from proxy.tools.tool import Tool, ToolDefinitionError, tool

__all__ = ["Tool", "ToolDefinitionError", "tool"]
__version__ = "0.1.0"
