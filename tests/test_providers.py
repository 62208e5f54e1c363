"""Tool providers: plugins started before the proxy serves, with their own configuration and a
tool list that may change while they run, closed at shutdown — in process with the real
`openai` client, and live: `serve` and `tools` in subprocesses."""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import sys
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import openai
import pytest

from proxy import Origin, Tool, ToolProvider, tool
from proxy.app import create_app
from proxy.cli import print_tools
from proxy.config import Client, ConfigError, Settings, load_settings
from proxy.tools.registry import Registry, load_registry
from tests.chunks import calls_round, text_round
from tests.conftest import mocked_app, openai_client, weather
from tests.distributions import write_distribution
from tests.processes import clean_env, run_cli, served_proxy
from tests.upstream import ScriptedUpstream


def note(name: str, text: str) -> Tool:
    return tool(name=name, description="A note.")(lambda: text)


class Notes(ToolProvider):
    """Offers one note, named and worded by its configuration; `offer` changes its tools."""

    def __init__(self, fails: Exception | None = None) -> None:
        self.fails = fails
        self.closed = False
        self._tools: Sequence[Tool] = ()

    async def start(self, config: Mapping[str, Any]) -> None:
        if self.fails is not None:
            raise self.fails
        self._tools = (note(config["name"], config["text"]),)

    def tools(self) -> Sequence[Tool]:
        return self._tools

    def offer(self, *tools: Tool) -> None:
        self._tools = tools

    async def close(self) -> None:
        self.closed = True


def registry_with(**providers: ToolProvider) -> Registry:
    registry = Registry.of(weather, plugin="tests")
    for plugin, provider in providers.items():
        registry.provide(provider, plugin)
    return registry


async def ask(client: openai.AsyncOpenAI) -> str:
    stream = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])


def offered(request: dict[str, Any]) -> list[str]:
    return [t["function"]["name"] for t in request.get("tools", [])]


HOURS = {"notes": {"name": "opening_hours", "text": "9 to 5"}}


async def test_a_provider_started_before_serving_runs_with_its_config(
    upstream: Callable[..., ScriptedUpstream],
) -> None:
    script = upstream(calls_round(("call_1", "opening_hours", "{}")), text_round("9 to 5."))
    provider = Notes()
    app = mocked_app(registry_with(notes=provider), plugin_config=HOURS)
    async with app.router.lifespan_context(app):
        assert await ask(openai_client(app)) == "9 to 5."
    assert offered(script.requests[0]) == ["weather", "opening_hours"]
    assert script.requests[1]["messages"][-1]["content"] == "9 to 5"
    assert provider.closed


async def test_the_next_request_sees_the_tools_a_provider_offers_now(
    upstream: Callable[..., ScriptedUpstream],
) -> None:
    script = upstream(text_round("one"), text_round("two"))
    provider = Notes()
    app = mocked_app(registry_with(notes=provider), plugin_config=HOURS)
    async with app.router.lifespan_context(app):
        client = openai_client(app)
        await ask(client)
        provider.offer(note("menu", "soup"), note("prices", "cheap"))
        await ask(client)
    assert offered(script.requests[0]) == ["weather", "opening_hours"]
    assert offered(script.requests[1]) == ["weather", "menu", "prices"]


async def test_a_provider_that_fails_to_start_is_logged_once_and_the_others_serve(
    upstream: Callable[..., ScriptedUpstream], caplog: pytest.LogCaptureFixture
) -> None:
    script = upstream(text_round("one"), text_round("two"))
    broken = Notes(fails=ConnectionRefusedError("no server on port 9"))
    registry = registry_with(broken=broken, notes=Notes())
    app = mocked_app(registry, plugin_config=HOURS)
    with caplog.at_level(logging.WARNING):
        async with app.router.lifespan_context(app):
            client = openai_client(app)
            await ask(client)
            await ask(client)
    assert offered(script.requests[1]) == ["weather", "opening_hours"]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [
        "plugin 'broken' failed to start, its tools are left out: "
        "ConnectionRefusedError: no server on port 9"
    ]
    assert not broken.closed  # never started: nothing to close


async def test_a_provider_tool_whose_name_is_taken_is_left_out_with_a_warning(
    upstream: Callable[..., ScriptedUpstream], caplog: pytest.LogCaptureFixture
) -> None:
    script = upstream(calls_round(("call_1", "weather", "{}")), text_round("sunny"))
    config = {"notes": {"name": "weather", "text": "rain"}}
    app = mocked_app(registry_with(notes=Notes()), plugin_config=config)
    with caplog.at_level(logging.WARNING):
        async with app.router.lifespan_context(app):
            await ask(openai_client(app))
    assert offered(script.requests[0]) == ["weather"]
    assert script.requests[1]["messages"][-1]["content"].startswith("Sunny")
    assert "plugin 'notes' offers tool 'weather', which plugin 'tests' registered: left out" in [
        r.getMessage() for r in caplog.records
    ]


class Unclosable(Notes):
    async def close(self) -> None:
        raise RuntimeError("the server hung up")


async def test_a_provider_that_fails_to_close_is_logged_and_the_others_are_closed(
    upstream: Callable[..., ScriptedUpstream], caplog: pytest.LogCaptureFixture
) -> None:
    upstream()
    notes = Notes()
    config = {"notes": HOURS["notes"], "stuck": {"name": "menu", "text": "soup"}}
    app = mocked_app(registry_with(stuck=Unclosable(), notes=notes), plugin_config=config)
    async with app.router.lifespan_context(app):
        pass
    assert notes.closed
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == [
        "plugin 'stuck' failed to close: RuntimeError: the server hung up"
    ]


class Waiting(Notes):
    """Starts once `started` is set: by another provider's start, when they start together."""

    def __init__(self, started: asyncio.Event) -> None:
        super().__init__()
        self.started = started

    async def start(self, config: Mapping[str, Any]) -> None:
        await asyncio.wait_for(self.started.wait(), 5)
        await super().start(config)


class Starting(Notes):
    def __init__(self, started: asyncio.Event) -> None:
        super().__init__()
        self.started = started

    async def start(self, config: Mapping[str, Any]) -> None:
        await super().start(config)
        self.started.set()


async def test_providers_start_together() -> None:
    started = asyncio.Event()
    registry = registry_with(first=Waiting(started), second=Starting(started))
    await registry.start({"first": HOURS["notes"], "second": {"name": "menu", "text": "soup"}})
    assert list(registry) == ["weather", "opening_hours", "menu"]
    await registry.close()


LIVE_PROVIDER = """
from pathlib import Path

from proxy import ConfigError, ToolProvider, tool


class Notes(ToolProvider):
    def configure(self, config):
        if not isinstance(config.get("name"), str):
            raise ConfigError("notes.name: must be a string, the note's tool name")

    async def start(self, config):
        self.closed = Path(config["closed"])
        text = config["text"]
        self._tools = (tool(name=config["name"], description="A note.")(lambda: text),)

    def tools(self):
        return self._tools

    async def close(self):
        self.closed.write_text("closed", encoding="utf-8")
"""


def live_notes(tmp_path: Path) -> tuple[Path, Path, Path]:
    """The provider installed as the plugin `notes`, and its config file; where it writes
    when it is closed."""
    site = tmp_path / "site"
    write_distribution(site, "live_notes", LIVE_PROVIDER, {"notes": "live_notes:Notes"})
    closed = tmp_path / "closed"
    config = tmp_path / "proxy.toml"
    config.write_text(
        f'[plugin_config.notes]\nname = "opening_hours"\ntext = "9 to 5"\nclosed = "{closed}"\n',
        encoding="utf-8",
    )
    return site, config, closed


def test_serve_starts_the_provider_and_closes_it_on_sigterm(tmp_path: Path) -> None:
    site, config, closed = live_notes(tmp_path)
    script = ScriptedUpstream(calls_round(("call_1", "opening_hours", "{}")), text_round("9-5"))
    printed: list[str] = []
    with served_proxy(
        script, site, plugins="notes", output=printed, TOOL_PROXY_CONFIG=str(config)
    ) as url:
        client = openai.OpenAI(base_url=url, api_key="sk-user", max_retries=0)
        stream = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hours?"}], stream=True
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "9-5"
        assert not closed.exists()
    assert script.requests[1]["messages"][-1]["content"] == "9 to 5"
    assert closed.read_text(encoding="utf-8") == "closed"
    assert "(server tools: none; and those of notes once started)\n" in printed[1]


def test_the_tools_command_lists_a_providers_tools_and_closes_it(tmp_path: Path) -> None:
    site, config, closed = live_notes(tmp_path)
    env = clean_env(site, TOOL_PROXY_PLUGINS="notes")
    listing = run_cli(["tools", "--config", str(config)], env, tmp_path)
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.startswith("opening_hours  (plugin: notes)\n    A note.\n")
    assert closed.read_text(encoding="utf-8") == "closed"


async def test_an_entry_point_may_name_a_provider_instance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = "notes_" + uuid.uuid4().hex[:10]
    source = "from tests.test_providers import Notes\n\nPROVIDER = Notes()\n"
    write_distribution(tmp_path, module, source, {module: f"{module}:PROVIDER"})
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    registry = load_registry([module])
    assert list(registry) == []  # nothing until it started
    await registry.start({module: HOURS["notes"]})
    assert registry["opening_hours"].plugin == module
    await registry.close()
    assert list(registry) == []
    sys.modules.pop(module, None)


def test_plugin_config_is_the_config_files_tables_kept_out_of_reprs(tmp_path: Path) -> None:
    config = tmp_path / "proxy.toml"
    config.write_text('[plugin_config.notes]\ntoken = "s3cret"\n', encoding="utf-8")
    settings = load_settings(environ={"TOOL_PROXY_PLUGIN_CONFIG": "x"}, config_file=config)
    assert settings.plugin_config == {"notes": {"token": "s3cret"}}
    assert "s3cret" not in repr(settings)
    assert load_settings(environ={}).plugin_config == {}
    config.write_text("[plugin_config]\nnotes = 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"plugin_config\.notes \(from config file .*\) must be"):
        load_settings(environ={}, config_file=config)
    config.write_text("plugin_config = 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"plugin_config \(from config file .*\) must be tables"):
        load_settings(environ={}, config_file=config)


def test_an_allow_list_may_name_a_tool_a_provider_offers_once_started(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from proxy.app import create_app
    from proxy.config import Client, Settings

    client = Client("team-a", "sk-team-a", ("weather", "later_note"))
    settings = Settings(clients=(client,), upstream_api_key="sk-up")
    with caplog.at_level(logging.WARNING, "proxy"):
        create_app(settings, registry_with(notes=Notes()))  # no error: a provider may offer it
    assert "'later_note'" in caplog.text and "notes" in caplog.text
    with pytest.raises(ConfigError, match="'later_note'"):
        create_app(settings, Registry.of(weather, plugin="tests"))  # none could: refused


def test_a_provider_refusing_its_config_stops_start_up_naming_what_is_wrong(
    tmp_path: Path,
) -> None:
    site, config, _ = live_notes(tmp_path)
    config.write_text('[plugin_config.notes]\nname = 3\ntext = "x"\n', encoding="utf-8")
    env = clean_env(site, TOOL_PROXY_PLUGINS="notes")
    for command in (["tools"], ["serve", "--upstream", "http://127.0.0.1:9/v1"]):
        run = run_cli([*command, "--config", str(config)], env, tmp_path)
        assert (run.returncode, run.stdout) == (2, "")
        assert run.stderr == (
            "openai-tool-proxy: plugin 'notes': notes.name: must be a string, the note's tool "
            "name\n"
        )


class Configured(Notes):
    """Checks its table once, and names the servers its tools come from."""

    def __init__(self) -> None:
        super().__init__()
        self.checked: list[Mapping[str, Any]] = []

    def configure(self, config: Mapping[str, Any]) -> None:
        self.checked.append(config)
        if "text" not in config:
            raise ValueError("text: missing")

    def servers(self) -> Sequence[str]:
        return ["archive", "ledger"]


async def test_providers_are_configured_once_before_they_start() -> None:
    provider = Configured()
    registry = registry_with(notes=provider)
    registry.configure(HOURS)
    await registry.start(HOURS)  # configured already: not again
    assert provider.checked == [HOURS["notes"]]
    assert registry.servers() == {"archive": "notes", "ledger": "notes"}
    with pytest.raises(ConfigError, match=r"^plugin 'notes': text: missing$"):
        registry_with(notes=Configured()).configure({"notes": {"name": "x"}})
    await registry.close()


def test_the_tools_listing_names_a_tools_server(capsys: pytest.CaptureFixture[str]) -> None:
    remote = Tool("get_time", "The time.", {"type": "object"}, lambda: "", origin=Origin("t", "x"))
    print_tools(Registry.of(remote, plugin="mcp"))
    assert capsys.readouterr().out.startswith("get_time  (plugin: mcp, server: t)\n")
    print_tools(Registry.of(remote, plugin="mcp"), json_output=True)
    assert json.loads(capsys.readouterr().out)[0]["server"] == "t"


async def test_an_allow_list_naming_no_tool_a_started_provider_offers_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    team = Client("team", "sk-t", ("opening_hours", "closing_hours"))
    settings = Settings(upstream_api_key="u", clients=(team,), plugin_config=HOURS)
    app = create_app(settings, registry_with(notes=Notes()))
    with caplog.at_level(logging.ERROR, logger="proxy"):
        async with app.router.lifespan_context(app):
            pass
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "clients.team may use tool(s) 'closing_hours' that no plugin offers" in record.message
