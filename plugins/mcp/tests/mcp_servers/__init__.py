"""MCP servers the plugin's tests run, each also a script (see its docstring)."""
