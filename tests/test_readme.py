"""The README's examples, taken from the README itself and run as a user would copy them: the
quickstart app against `openai-tool-proxy serve`, the plugin package built and installed with
pip, the TOML config, and the settings table."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from proxy.config import SPECS, load_settings
from tests.chunks import calls_round, text_round
from tests.distributions import write_distribution
from tests.events import body_round, call_events, message_events
from tests.processes import clean_env, run_cli, served_proxy
from tests.upstream import ScriptedUpstream

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, re.DOTALL)


def block(language: str, first_line: str) -> str:
    """The one fenced block of `language` whose first line is `first_line`."""
    found = [b for b in blocks(language) if b.splitlines()[0] == first_line]
    assert len(found) == 1, f"README: no single {language} block starting {first_line!r}"
    return found[0]


def run_app(source: str, base_url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    app = tmp_path / "app.py"
    app.write_text(source, encoding="utf-8")
    env = clean_env(OPENAI_BASE_URL=base_url, OPENAI_API_KEY="sk-user")
    return subprocess.run(
        [sys.executable, str(app)], env=env, capture_output=True, text=True, timeout=60
    )


def test_the_quickstart_app_gets_the_answer_from_the_served_proxy(tmp_path: Path) -> None:
    source = block("python", "# app.py — nothing here knows about the proxy")
    script = ScriptedUpstream(
        calls_round(("call_1", "calculate", '{"expression": "2**64 / 3"}')),
        text_round("2**64 / 3 is 6148914691236517205.33…"),
    )
    with served_proxy(script, plugins="calculator,clock") as base_url:
        result = run_app(source, base_url, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "2**64 / 3 is 6148914691236517205.33…"
    assert {"calculate", "current_time"} <= {
        t["function"]["name"] for t in script.requests[0]["tools"]
    }
    answer = script.requests[1]["messages"][-1]
    assert answer["role"] == "tool" and answer["tool_call_id"] == "call_1"
    assert answer["content"].startswith("18446744073709551616/3")
    assert script.headers[0]["authorization"] == "Bearer sk-user"


@pytest.fixture(scope="module")
def my_tools(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The README's plugin package, written out from the README and installed with pip."""
    root = tmp_path_factory.mktemp("readme")
    package = root / "my-tools"
    package.mkdir()
    for language, name in (("python", "my_tools.py"), ("toml", "pyproject.toml")):
        source = block(language, f"# my-tools/{name}")
        (package / name).write_text(source, encoding="utf-8")
    site = root / "site"
    # The proxy it depends on is this checkout, installed already; nothing is downloaded.
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(site), str(package)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return site


def test_the_plugin_guide_installs_as_written(my_tools: Path, tmp_path: Path) -> None:
    assert "pip install ./my-tools && openai-tool-proxy tools" in README
    listing = run_cli(["tools"], clean_env(my_tools, TOOL_PROXY_PLUGINS="my_tools"), tmp_path)
    assert listing.returncode == 0, listing.stderr
    assert "add  (plugin: my_tools)" in listing.stdout
    assert "word_count  (plugin: my_tools, timeout 5s)" in listing.stdout


def test_the_plugin_guide_tools_answer_through_the_proxy(my_tools: Path, tmp_path: Path) -> None:
    script = ScriptedUpstream(
        calls_round(
            ("call_1", "add", '{"a": 2, "b": 3}'),
            ("call_2", "word_count", '{"text": "one two three"}'),
        ),
        text_round("5, and three words."),
    )
    source = block("python", "# app.py — nothing here knows about the proxy")
    with served_proxy(script, my_tools, plugins="my_tools") as base_url:
        result = run_app(source, base_url, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "5, and three words."
    results = {m["tool_call_id"]: m["content"] for m in script.requests[1]["messages"][-2:]}
    assert results == {"call_1": "5", "call_2": '{"words": 3}'}


def test_the_config_file_example_loads(tmp_path: Path) -> None:
    config = tmp_path / "proxy.toml"
    config.write_text(block("toml", "# proxy.toml"), encoding="utf-8")
    settings = load_settings(environ={}, config_file=config)
    assert settings.upstream.startswith("http://localhost:11434")


def test_every_setting_is_in_the_configuration_table() -> None:
    table = README[README.index("## Configuration") :]
    for spec in SPECS.values():
        if spec.file_only:  # a table of the file: no variable
            assert f"`[{spec.name}.NAME]`" in table, spec.name
            continue
        assert f"`{spec.env}`" in table, spec.env
        assert f"`{spec.name}`" in table, spec.name


def test_the_tool_provider_example_serves_its_configured_tools(tmp_path: Path) -> None:
    pyproject = block("toml", "# my-answers/pyproject.toml: as my-tools', with this entry point")
    entry_points = tomllib.loads(pyproject)["project"]["entry-points"]["openai_tool_proxy"]
    site = tmp_path / "site"
    write_distribution(site, "my_answers", block("python", "# my_answers.py"), entry_points)
    config = tmp_path / "answers.toml"
    config.write_text(
        block("toml", "# answers.toml: the proxy's config file (--config, or $TOOL_PROXY_CONFIG)"),
        encoding="utf-8",
    )
    assert "`openai-tool-proxy tools --config answers.toml`" in README
    listing = run_cli(["tools", "--config", "answers.toml"], clean_env(site), tmp_path)
    assert listing.returncode == 0, listing.stderr
    assert "opening_hours  (plugin: answers)\n    Our opening hours." in listing.stdout
    assert "delivery  (plugin: answers)\n    Our delivery." in listing.stdout


def test_the_request_context_example_runs_as_written(tmp_path: Path) -> None:
    import importlib.util

    from proxy import RequestContext

    source = tmp_path / "my_orders.py"
    source.write_text(block("python", "# my_orders.py"), encoding="utf-8")
    spec = importlib.util.spec_from_file_location("my_orders", source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tool = module.my_orders
    assert list(tool.parameters["properties"]) == ["status"]  # the model never sees ctx
    ctx = RequestContext(request_id="r-1", client="team-a", headers={"x-user-id": "u-7"})
    assert tool("open", ctx) == "u-7 (client team-a, request r-1) has no open orders"


def test_the_derived_image_shown_is_the_linted_one() -> None:
    shown = block("dockerfile", "FROM openai-tool-proxy:0.1.0").splitlines()
    linted = Path(__file__).parent.parent / "deploy" / "examples" / "plugin.Dockerfile"
    instructions = [
        line for line in linted.read_text(encoding="utf-8").splitlines() if not line.startswith("#")
    ]
    assert shown == instructions


def test_the_mcp_example_serves_the_time_servers_tools_to_the_approval_app(
    tmp_path: Path,
) -> None:
    """The README's `mcpServers` file as written (its `docs` server is not running: it is
    reported, and the `time` server serves), and the approval app against it."""
    config = tmp_path / "mcp.json"
    config.write_text(block("json", "{"), encoding="utf-8")
    tokyo = json.dumps({"timezone": "Asia/Tokyo"})
    script = ScriptedUpstream(
        body_round("resp_1", call_events(0, "call_1", "get_current_time", tokyo)[1]),
        body_round("resp_2", message_events(0, "It is 9:00 in Tokyo.")[1]),
    )
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    with served_proxy(
        script, plugins="mcp", TOOL_PROXY_MCP_CONFIG=str(config), PATH=path
    ) as base_url:
        result = run_app(block("python", APPROVE), base_url, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "It is 9:00 in Tokyo.\n"
    assert {"get_current_time", "convert_time"} <= {
        t.get("name") for t in script.requests[0]["tools"]
    }
    assert script.requests[1]["previous_response_id"] == "resp_1"
    (answer,) = script.requests[1]["input"]
    assert (answer["type"], answer["call_id"]) == ("function_call_output", "call_1")
    assert json.loads(answer["output"])["timezone"] == "Asia/Tokyo"


APPROVE = "# approve.py — OpenAI's hosted MCP tool, run by the proxy with its own MCP server"
