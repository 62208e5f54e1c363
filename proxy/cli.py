"""`openai-tool-proxy serve` and `openai-tool-proxy tools`."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
from collections.abc import Sequence

from proxy import __version__
from proxy.config import SPECS, ConfigError, Settings, load_settings, warnings_for
from proxy.policy import check_clients
from proxy.tools.registry import PluginError, Registry, load_registry


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings(
            flags={name: getattr(args, name, None) for name in SPECS},
            config_file=args.config,
        )
        registry = load_registry(settings.plugins)
        registry.configure(settings.plugin_config)
        check_clients(settings.clients, registry)
    except (ConfigError, PluginError) as exc:
        print(f"openai-tool-proxy: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    if args.command == "tools":
        try:
            asyncio.run(list_tools(settings, registry, json_output=args.json))
        except BrokenPipeError:  # e.g. `openai-tool-proxy tools | head`
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keep exit quiet
        return 0
    return serve(settings, registry)


async def list_tools(settings: Settings, registry: Registry, json_output: bool) -> None:
    """Print the tools, the tool providers' too: started for it, and closed."""
    await registry.start(settings.plugin_config)
    try:
        print_tools(registry, json_output=json_output)
    finally:
        await registry.close()


def serve(settings: Settings, registry: Registry) -> int:
    """Run the proxy until SIGTERM or Ctrl+C, and drain it; the exit status."""
    from proxy import drain
    from proxy.app import create_app
    from proxy.observe import logs, tracing

    logs.configure(settings.log_level, settings.log_format)  # inherited by forked workers
    names = ", ".join(sorted(registry)) or "none"
    if registry.providers:  # their tools are known once they started, in each worker
        names += f"; and those of {', '.join(registry.providers)} once started"
    for warning in warnings_for(settings):
        print(f"openai-tool-proxy: warning: {warning}", file=sys.stderr)
    print(
        f"openai-tool-proxy {__version__}: http://{settings.host}:{settings.port}/v1 -> "
        f"{settings.upstream} (server tools: {names})",
        file=sys.stderr,
    )

    def serve_one(sockets: list[socket.socket] | None = None) -> int:
        tracing.setup()  # in each worker: its exporter's thread, shut down with its app
        app = create_app(settings, registry)
        return drain.run(
            app,
            app.state.drain,
            settings.host,
            settings.port,
            sockets,
            max_header_bytes=settings.max_header_bytes,
            log_level=settings.log_level,
            log_config=None,  # the proxy's own logging (`logs.configure`), uvicorn's lines too
            access_log=False,  # the proxy logs each request itself, with more in the line
        )

    if settings.workers > 1:
        from proxy import workers

        return workers.run(serve_one, settings.host, settings.port, settings.workers)
    return serve_one()


def print_tools(registry: Registry, json_output: bool = False) -> None:
    if json_output:
        listing = [
            {
                "plugin": entry.plugin,
                **({"server": entry.tool.origin.server} if entry.tool.origin else {}),
                "type": "function",
                "function": entry.tool.openai_function(),
            }
            for entry in registry.values()
        ]
        print(json.dumps(listing, indent=2))
        return
    if not registry:
        print("no tools registered (install a plugin of the 'openai_tool_proxy' entry-point group)")
        return
    for entry in registry.values():
        tool = entry.tool
        timeout = f", timeout {tool.timeout:g}s" if tool.timeout is not None else ""
        strict = ", strict" if tool.strict else ""
        server = f", server: {tool.origin.server}" if tool.origin is not None else ""
        print(f"{tool.name}  (plugin: {entry.plugin}{server}{timeout}{strict})")
        if tool.description:
            for line in tool.description.splitlines():
                print(f"    {line}")
        print("    parameters: " + json.dumps(tool.parameters, indent=2).replace("\n", "\n    "))
        print()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openai-tool-proxy",
        description="OpenAI-compatible reverse proxy that runs registered tools server-side.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    secrets = [spec for spec in SPECS.values() if not spec.flag and not spec.file_only]
    tables = [spec for spec in SPECS.values() if spec.file_only]
    serve_cmd = commands.add_parser(
        "serve",
        help="run the proxy",
        description="Run the proxy. Every setting can also come from its environment variable "
        "or the TOML config file (flags win over the environment, which wins over the file).",
        epilog="kept off the command line (environment or config file only): "
        + "; ".join(f"{s.env} ({s.name}): {s.help}" for s in secrets)
        + ". Config file only: "
        + "; ".join(f"[{s.name}.NAME]: {s.help}" for s in tables),
    )
    for spec in SPECS.values():
        if spec.flag:
            default = spec.default if spec.default is not None else "unset"
            serve_cmd.add_argument(
                spec.option,
                metavar=spec.kind.upper(),
                help=f"{spec.help} (${spec.env}; default: {default})",
            )
    tools_cmd = commands.add_parser("tools", help="list the registered tools and their schemas")
    tools_cmd.add_argument("--json", action="store_true", help="print JSON")
    for sub in (serve_cmd, tools_cmd):
        sub.add_argument("--config", help="TOML config file ($TOOL_PROXY_CONFIG)")
    return parser
