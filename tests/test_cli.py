"""The real command line, run in subprocesses, with plugins from tmp dist-info folders."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from proxy.config import SPECS, load_settings
from tests.distributions import write_distribution
from tests.processes import (
    clean_env,
    console_script,
    free_port,
    get,
    run_cli,
    spawn,
    stop,
    wait_healthy,
)

PLUGIN_SOURCE = '''
from typing import Literal

from tests.distributions import write_distribution
from proxy import tool


@tool(timeout=4)
def {name}(city: str, unit: Literal["c", "f"] = "c") -> str:
    """Weather in a city.

    Args:
        city: The city to look up.
    """
    return city


@tool(strict=True)
def {name}_strict(a: int) -> int:
    """Strictly one integer."""
    return a
'''


class Plugin:
    def __init__(self, root: Path, ep: str, module: str, tool: str) -> None:
        self.root = root
        self.ep = ep
        self.module = module
        self.tool = tool


def make_plugin(root: Path, source: str = PLUGIN_SOURCE, target: str = "{mod}") -> Plugin:
    ident = uuid.uuid4().hex[:8]
    ep, module, tool_name = f"cli-demo-{ident}", f"tp_cli_plugin_{ident}", f"cli_weather_{ident}"
    write_distribution(
        root, module, source.replace("{name}", tool_name), {ep: target.format(mod=module)}
    )
    return Plugin(root, ep, module, tool_name)


# --------------------------------------------------------------------------- tools


def test_tools_lists_a_plugin(tmp_path: Path) -> None:
    plugin = make_plugin(tmp_path / "site")
    env = clean_env(plugin.root, TOOL_PROXY_PLUGINS=plugin.ep)
    result = run_cli(["tools"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert plugin.tool in out
    assert f"{plugin.tool}_strict" in out
    assert f"plugin: {plugin.ep}" in out
    assert "timeout 4s" in out
    assert "strict" in out
    assert "Weather in a city." in out
    assert "The city to look up." in out
    assert '"enum"' in out
    assert '"required"' in out


def test_tools_lists_every_installed_plugin_without_filter(tmp_path: Path) -> None:
    a = make_plugin(tmp_path / "a")
    b = make_plugin(tmp_path / "b")
    result = run_cli(["tools"], clean_env(a.root, b.root), tmp_path)
    assert result.returncode == 0, result.stderr
    assert a.tool in result.stdout
    assert b.tool in result.stdout


def test_tools_filter_excludes_other_plugins(tmp_path: Path) -> None:
    a = make_plugin(tmp_path / "a")
    b = make_plugin(tmp_path / "b")
    env = clean_env(a.root, b.root, TOOL_PROXY_PLUGINS=b.ep)
    result = run_cli(["tools"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert a.tool not in result.stdout
    assert b.tool in result.stdout


def test_tools_json(tmp_path: Path) -> None:
    plugin = make_plugin(tmp_path / "site")
    env = clean_env(plugin.root, TOOL_PROXY_PLUGINS=plugin.ep)
    result = run_cli(["tools", "--json"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    listing: list[dict[str, Any]] = json.loads(result.stdout)
    by_name = {item["function"]["name"]: item for item in listing}
    assert set(by_name) == {plugin.tool, f"{plugin.tool}_strict"}
    weather = by_name[plugin.tool]
    assert weather["plugin"] == plugin.ep
    assert weather["type"] == "function"
    assert weather["function"]["description"] == "Weather in a city."
    assert weather["function"]["parameters"] == {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "The city to look up."},
            "unit": {"enum": ["c", "f"], "default": "c"},
        },
        "required": ["city"],
        "additionalProperties": False,
    }
    assert "strict" not in weather["function"]
    strict = by_name[f"{plugin.tool}_strict"]["function"]
    assert strict["strict"] is True
    assert strict["parameters"]["additionalProperties"] is False


def test_tools_json_with_no_plugins_is_an_empty_list(tmp_path: Path) -> None:
    plugin = make_plugin(tmp_path / "site")
    env = clean_env(plugin.root, TOOL_PROXY_PLUGINS=",")
    result = run_cli(["tools", "--json"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
    text = run_cli(["tools"], env, tmp_path)
    assert text.returncode == 0
    assert "no tools registered" in text.stdout


def test_tools_reads_plugins_from_config_file(tmp_path: Path) -> None:
    a = make_plugin(tmp_path / "a")
    b = make_plugin(tmp_path / "b")
    config = tmp_path / "proxy.toml"
    config.write_text(f'plugins = ["{a.ep}"]\n', encoding="utf-8")
    result = run_cli(["tools", "--config", str(config)], clean_env(a.root, b.root), tmp_path)
    assert result.returncode == 0, result.stderr
    assert a.tool in result.stdout
    assert b.tool not in result.stdout
    # and the same file named by $TOOL_PROXY_CONFIG
    env = clean_env(a.root, b.root, TOOL_PROXY_CONFIG=str(config))
    result = run_cli(["tools"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert b.tool not in result.stdout


def test_console_script(tmp_path: Path) -> None:
    plugin = make_plugin(tmp_path / "site")
    env = clean_env(plugin.root, TOOL_PROXY_PLUGINS=plugin.ep)
    result = subprocess.run(
        [console_script(), "tools", "--json"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    names = [item["function"]["name"] for item in json.loads(result.stdout)]
    assert sorted(names) == sorted([plugin.tool, f"{plugin.tool}_strict"])


def test_version_and_help(tmp_path: Path) -> None:
    version = run_cli(["--version"], clean_env(), tmp_path)
    assert version.returncode == 0
    assert "openai-tool-proxy" in version.stdout
    helped = run_cli(["--help"], clean_env(), tmp_path)
    assert helped.returncode == 0
    assert "serve" in helped.stdout
    assert "tools" in helped.stdout
    serve_help = run_cli(["serve", "--help"], clean_env(), tmp_path)
    text = " ".join(serve_help.stdout.split())  # argparse wraps lines
    for flag in ("--host", "--port", "--upstream", "--config"):
        assert flag in text
    for spec in SPECS.values():  # every setting: its variable, and its flag and default
        if spec.file_only:
            assert f"[{spec.name}.NAME]" in text and spec.env not in text
            continue
        assert spec.env in text
        if spec.flag:
            default = spec.default if spec.default is not None else "unset"
            assert f"{spec.option} " in text
            assert f"${spec.env}; default: {default})" in text
        else:
            assert not re.search(rf"{spec.option}(?![-\w])", text)  # off the process list


def test_every_flag_reaches_the_settings() -> None:
    from proxy.cli import _parser

    for spec in SPECS.values():
        if spec.flag:
            other = [c for c in spec.choices if c != spec.default]
            value = other[0] if other else {"bool": "true", "list": "a,b", "str": "http://h/v1"}
            value = value if isinstance(value, str) else value.get(spec.kind, "3")
            args = _parser().parse_args(["serve", spec.option, value])
            flags = {name: getattr(args, name, None) for name in SPECS}
            environ = {"TOOL_PROXY_STORE": "redis://127.0.0.1:9"}  # more workers need it
            assert getattr(load_settings(flags, environ=environ), spec.name) != spec.default


def test_no_command_fails(tmp_path: Path) -> None:
    result = run_cli([], clean_env(), tmp_path)
    assert result.returncode != 0
    assert "usage" in result.stderr.lower()


# --------------------------------------------------------------------------- failures


BROKEN_SOURCE = "raise RuntimeError('plugin exploded on import')\n"


@pytest.mark.parametrize("command", [["tools"], ["tools", "--json"], ["serve", "--port", "0"]])
def test_broken_plugin_fails_with_a_clear_message(tmp_path: Path, command: list[str]) -> None:
    plugin = make_plugin(tmp_path / "site", source=BROKEN_SOURCE)
    result = run_cli(command, clean_env(plugin.root), tmp_path)
    assert result.returncode != 0
    assert plugin.ep in result.stderr
    assert "RuntimeError" in result.stderr
    assert "plugin exploded on import" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_plugin_giving_no_tools_fails(tmp_path: Path) -> None:
    plugin = make_plugin(tmp_path / "site", source="X = 1\n")
    result = run_cli(["tools"], clean_env(plugin.root), tmp_path)
    assert result.returncode != 0
    assert plugin.ep in result.stderr
    assert "no tools" in result.stderr


def test_unknown_plugin_name_fails(tmp_path: Path) -> None:
    plugin = make_plugin(tmp_path / "site")
    env = clean_env(plugin.root, TOOL_PROXY_PLUGINS="definitely-not-installed")
    result = run_cli(["tools"], env, tmp_path)
    assert result.returncode != 0
    assert "definitely-not-installed" in result.stderr
    assert plugin.ep in result.stderr  # the installed ones are listed


def test_serve_port_not_a_number(tmp_path: Path) -> None:
    result = run_cli(["serve", "--port", "notanumber"], clean_env(), tmp_path)
    assert result.returncode != 0
    assert "--port" in result.stderr
    assert "notanumber" in result.stderr


def test_serve_bad_port_env(tmp_path: Path) -> None:
    result = run_cli(["serve"], clean_env(TOOL_PROXY_PORT="http"), tmp_path)
    assert result.returncode != 0
    assert "TOOL_PROXY_PORT" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_bad_upstream(tmp_path: Path) -> None:
    result = run_cli(["serve", "--upstream", "ftp://127.0.0.1/v1"], clean_env(), tmp_path)
    assert result.returncode != 0
    assert "upstream" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_config_file(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("colour = 'blue'\n", encoding="utf-8")
    for command in (["tools"], ["serve"]):
        result = run_cli([*command, "--config", str(config)], clean_env(), tmp_path)
        assert result.returncode != 0
        assert "colour" in result.stderr
        assert str(config) in result.stderr


def test_client_keys_without_an_upstream_key_refuse_to_start(tmp_path: Path) -> None:
    result = run_cli(["serve", "--port", "0"], clean_env(TOOL_PROXY_API_KEYS="k1"), tmp_path)
    assert result.returncode == 2
    assert "TOOL_PROXY_API_KEYS" in result.stderr
    assert "TOOL_PROXY_UPSTREAM_API_KEY" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    result = run_cli(["tools"], clean_env(TOOL_PROXY_CONFIG=str(missing)), tmp_path)
    assert result.returncode != 0
    assert str(missing) in result.stderr


# --------------------------------------------------------------------------- serve


@pytest.mark.parametrize("how", ["flags", "env"])
def test_serve_starts_and_answers_health(tmp_path: Path, how: str) -> None:
    plugin = make_plugin(tmp_path / "site")
    port = free_port()
    upstream = "http://127.0.0.1:9/v1"
    if how == "flags":
        env = clean_env(plugin.root, TOOL_PROXY_PLUGINS=plugin.ep, TOOL_PROXY_PORT="1")
        args = ["serve", "--host", "127.0.0.1", "--port", str(port), "--upstream", upstream]
    else:
        env = clean_env(
            plugin.root,
            TOOL_PROXY_PLUGINS=plugin.ep,
            TOOL_PROXY_HOST="127.0.0.1",
            TOOL_PROXY_PORT=str(port),
            TOOL_PROXY_UPSTREAM=upstream,
        )
        args = ["serve"]
    proc = spawn(args, env, tmp_path)
    try:
        body = wait_healthy(proc, f"http://127.0.0.1:{port}/health")
        health = json.loads(body)
        assert health["status"] == "ok"
        assert health["tools"] == sorted([plugin.tool, f"{plugin.tool}_strict"])
        status, _ = get(f"http://127.0.0.1:{port}/not-a-route")
        assert status == 404
    finally:
        _, err = stop(proc)
    assert f"127.0.0.1:{port}" in err
    assert upstream in err
    assert plugin.tool in err
    assert "warning" not in err


def test_serve_warns_of_an_upstream_without_a_path(tmp_path: Path) -> None:
    port = free_port()
    proc = spawn(
        ["serve", "--port", str(port), "--upstream", "http://127.0.0.1:9"], clean_env(), tmp_path
    )
    try:
        wait_healthy(proc, f"http://127.0.0.1:{port}/health")
    finally:
        _, err = stop(proc)
    assert "warning: upstream http://127.0.0.1:9 has no path" in err
    assert "http://127.0.0.1:9/v1" in err


def test_serve_bounds_request_heads_by_its_setting_while_they_arrive(tmp_path: Path) -> None:
    port = free_port()
    proc = spawn(["serve", "--port", str(port), "--max-header-kb", "1"], clean_env(), tmp_path)
    try:
        wait_healthy(proc, f"http://127.0.0.1:{port}/health")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            # A head still arriving (no blank line yet), past 1 KiB: only the protocol sees it.
            sock.sendall(b"GET /v1/models HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 4096)
            answer = sock.recv(4096)
    finally:
        stop(proc)
    assert answer.startswith(b"HTTP/1.1 431 ")


def test_an_allow_list_naming_an_unknown_tool_stops_the_command_cleanly(tmp_path: Path) -> None:
    config = tmp_path / "proxy.toml"
    config.write_text(
        'upstream_api_key = "u"\n[clients.team-a]\nkey = "sk-a"\ntools = ["nope"]\n',
        encoding="utf-8",
    )
    env = clean_env(TOOL_PROXY_PLUGINS="clock,calculator")  # no tool providers
    for command in (["tools"], ["serve", "--port", "0"]):
        result = run_cli([*command, "--config", str(config)], env, tmp_path)
        assert result.returncode == 2
        assert "clients.team-a" in result.stderr and "'nope'" in result.stderr
        assert "Traceback" not in result.stderr and "sk-a" not in result.stderr
