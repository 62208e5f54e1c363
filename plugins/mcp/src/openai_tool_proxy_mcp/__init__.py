"""MCP plugin for openai-tool-proxy: the tools of MCP servers — configured in the `mcpServers`
format other MCP clients use — as server tools any model behind the proxy can call."""

from openai_tool_proxy_mcp.provider import MCPServers

__all__ = ["MCPServers"]
