"""Settings layering: defaults < TOML file < TOOL_PROXY_* environment < CLI flags."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from proxy.config import Client, ConfigError, Settings, load_settings, warnings_for


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def toml(tmp_path: Path) -> Path:
    return write(
        tmp_path / "proxy.toml",
        """
upstream = "http://file.example:1234/v1"
host = "0.0.0.0"
port = 9001
upstream_api_key = "sk-file"
api_keys = ["k1", "k2"]
plugins = ["clock", "calculator"]
max_rounds = 3
tool_timeout = 2.5
""",
    )


# --------------------------------------------------------------------------- layers


def test_defaults() -> None:
    settings = load_settings(environ={})
    assert settings == Settings()
    assert settings.upstream == "https://api.openai.com/v1"
    assert settings.host == "127.0.0.1"
    assert settings.port == 8080
    assert settings.upstream_api_key is None
    assert settings.api_keys is None
    assert settings.plugins is None
    assert settings.max_rounds == 8
    assert settings.tool_timeout == 30


def test_unrelated_environment_is_ignored() -> None:
    env = {"PORT": "1", "OPENAI_BASE_URL": "http://x/v1", "TOOL_PROXY_NONSENSE": "1"}
    assert load_settings(environ=env) == Settings()


def test_process_environment_is_the_default_source(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("TOOL_PROXY_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TOOL_PROXY_PORT", "7777")
    assert load_settings().port == 7777


def test_file_values(toml: Path) -> None:
    settings = load_settings(environ={}, config_file=toml)
    assert settings == Settings(
        upstream="http://file.example:1234/v1",
        host="0.0.0.0",
        port=9001,
        upstream_api_key="sk-file",
        api_keys=("k1", "k2"),
        plugins=("clock", "calculator"),
        max_rounds=3,
        tool_timeout=2.5,
    )


def test_partial_file_keeps_other_defaults(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", "port = 1234\n")
    settings = load_settings(environ={}, config_file=str(path))
    assert settings.port == 1234
    assert settings.host == "127.0.0.1"
    assert settings.upstream == "https://api.openai.com/v1"


def test_empty_file_is_defaults(tmp_path: Path) -> None:
    path = write(tmp_path / "empty.toml", "# nothing here\n")
    assert load_settings(environ={}, config_file=path) == Settings()


def test_env_overrides_file(toml: Path) -> None:
    env = {
        "TOOL_PROXY_UPSTREAM": "http://env.example/v1",
        "TOOL_PROXY_PORT": "9002",
        "TOOL_PROXY_MAX_ROUNDS": "4",
        "TOOL_PROXY_TOOL_TIMEOUT": "0.5",
        "TOOL_PROXY_UPSTREAM_API_KEY": "sk-env",
        "TOOL_PROXY_API_KEYS": "e1",
        "TOOL_PROXY_PLUGINS": "clock",
    }
    settings = load_settings(environ=env, config_file=toml)
    assert settings.upstream == "http://env.example/v1"
    assert settings.port == 9002
    assert settings.max_rounds == 4
    assert settings.tool_timeout == 0.5
    assert settings.upstream_api_key == "sk-env"
    assert settings.api_keys == ("e1",)
    assert settings.plugins == ("clock",)
    assert settings.host == "0.0.0.0"  # not in the environment: the file's value stays


def test_empty_env_value_defers_to_the_file(toml: Path) -> None:
    env = {"TOOL_PROXY_PORT": "", "TOOL_PROXY_HOST": ""}
    settings = load_settings(environ=env, config_file=toml)
    assert settings.port == 9001
    assert settings.host == "0.0.0.0"


def test_flags_override_env_and_file(toml: Path) -> None:
    env = {"TOOL_PROXY_PORT": "9002", "TOOL_PROXY_HOST": "10.0.0.1"}
    flags = {"port": 9003, "host": "127.0.0.2", "upstream": "http://flag.example/v1"}
    settings = load_settings(flags=flags, environ=env, config_file=toml)
    assert settings.port == 9003
    assert settings.host == "127.0.0.2"
    assert settings.upstream == "http://flag.example/v1"
    assert settings.max_rounds == 3  # from the file


def test_flags_left_unset_defer(toml: Path) -> None:
    env = {"TOOL_PROXY_PORT": "9002"}
    flags = {"port": None, "host": None, "upstream": None}
    settings = load_settings(flags=flags, environ=env, config_file=toml)
    assert settings.port == 9002
    assert settings.host == "0.0.0.0"
    assert settings.upstream == "http://file.example:1234/v1"


def test_config_file_named_by_env(toml: Path) -> None:
    settings = load_settings(environ={"TOOL_PROXY_CONFIG": str(toml)})
    assert settings.port == 9001
    assert settings.plugins == ("clock", "calculator")


def test_config_file_argument_wins_over_env(toml: Path, tmp_path: Path) -> None:
    other = write(tmp_path / "other.toml", "port = 5555\n")
    settings = load_settings(environ={"TOOL_PROXY_CONFIG": str(toml)}, config_file=other)
    assert settings.port == 5555
    assert settings.host == "127.0.0.1"


def test_comma_lists_from_env() -> None:
    env = {
        "TOOL_PROXY_API_KEYS": "sk-a, sk-b ,,sk-c",
        "TOOL_PROXY_UPSTREAM_API_KEY": "sk-up",
        "TOOL_PROXY_PLUGINS": "clock,calculator",
    }
    settings = load_settings(environ=env)
    assert settings.api_keys == ("sk-a", "sk-b", "sk-c")
    assert settings.plugins == ("clock", "calculator")


def test_comma_list_that_is_only_commas_is_empty() -> None:
    settings = load_settings(environ={"TOOL_PROXY_PLUGINS": " , "})
    assert settings.plugins == ()


def test_toml_lists_and_comma_string(tmp_path: Path) -> None:
    path = write(
        tmp_path / "c.toml", 'api_keys = ["a", " b "]\nupstream_api_key = "u"\nplugins = "x, y"\n'
    )
    settings = load_settings(environ={}, config_file=path)
    assert settings.api_keys == ("a", "b")
    assert settings.plugins == ("x", "y")


def test_numbers_as_strings_are_accepted(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", 'port = "8181"\nmax_rounds = "2"\ntool_timeout = 3\n')
    settings = load_settings(environ={}, config_file=path)
    assert settings.port == 8181
    assert settings.max_rounds == 2
    assert settings.tool_timeout == 3.0
    assert isinstance(settings.tool_timeout, float)


def test_settings_are_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().port = 1  # type: ignore[misc]


# --------------------------------------------------------------------------- errors


def test_bad_port_from_env() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ={"TOOL_PROXY_PORT": "eighty"})
    message = str(info.value)
    assert "$TOOL_PROXY_PORT" in message
    assert "integer" in message
    assert "'eighty'" in message


def test_bad_port_from_file(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", "port = 80.5\n")
    with pytest.raises(ConfigError) as info:
        load_settings(environ={}, config_file=path)
    message = str(info.value)
    assert str(path) in message
    assert "port" in message
    assert "80.5" in message


def test_bool_port_from_file_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", "port = true\n")
    with pytest.raises(ConfigError, match="port"):
        load_settings(environ={}, config_file=path)


def test_bad_port_from_flag() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(flags={"port": "x"}, environ={})
    assert "--port" in str(info.value)


@pytest.mark.parametrize("port", ["70000", "-1"])
def test_port_out_of_range_names_the_setting(port: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ={"TOOL_PROXY_PORT": port})
    assert "port" in str(info.value)
    assert port in str(info.value)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TOOL_PROXY_PORT", "70000"),
        ("TOOL_PROXY_MAX_ROUNDS", "0"),
        ("TOOL_PROXY_TOOL_TIMEOUT", "-1"),
    ],
)
def test_out_of_range_value_names_the_source(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ={variable: value})
    assert variable in str(info.value)


@pytest.mark.parametrize(
    "url", ["ftp://example.com/v1", "api.openai.com/v1", "http://", "not a url", "https:///v1"]
)
def test_bad_upstream_url(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ={"TOOL_PROXY_UPSTREAM": url})
    assert "upstream" in str(info.value)
    assert repr(url) in str(info.value)


def test_bad_upstream_type_in_file(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", "upstream = 12\n")
    with pytest.raises(ConfigError) as info:
        load_settings(environ={}, config_file=path)
    assert str(path) in str(info.value)
    assert "upstream" in str(info.value)


@pytest.mark.parametrize("source", ["file", "env", "flag"])
def test_bad_upstream_url_names_the_source(tmp_path: Path, source: str) -> None:
    path = write(tmp_path / "c.toml", 'upstream = "ftp://example.com/v1"\n')
    with pytest.raises(ConfigError) as info:
        if source == "file":
            load_settings(environ={}, config_file=path)
        elif source == "env":
            load_settings(environ={"TOOL_PROXY_UPSTREAM": "ftp://example.com/v1"})
        else:
            load_settings(flags={"upstream": "ftp://example.com/v1"}, environ={})
    expected = {"file": str(path), "env": "TOOL_PROXY_UPSTREAM", "flag": "--upstream"}[source]
    assert expected in str(info.value)


def test_unknown_toml_key(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", 'port = 1\nprot = 2\nupstrem = "x"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(environ={}, config_file=path)
    message = str(info.value)
    assert str(path) in message
    assert "prot" in message
    assert "upstrem" in message
    assert "unknown" in message


def test_toml_table_is_an_unknown_key(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", "[proxy]\nport = 1\n")
    with pytest.raises(ConfigError, match="proxy"):
        load_settings(environ={}, config_file=path)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_settings(environ={}, config_file=path)
    assert str(path) in str(info.value)
    assert "cannot read" in str(info.value)


def test_missing_file_named_by_env(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_settings(environ={"TOOL_PROXY_CONFIG": str(path)})
    assert str(path) in str(info.value)


def test_directory_as_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ={}, config_file=tmp_path)
    assert str(tmp_path) in str(info.value)


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "c.toml", "port = 1\n")

    def refuse(self: Path, *args: object, **kwargs: object) -> str:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_text", refuse)  # chmod 0 means nothing to root, as CI runs
    with pytest.raises(ConfigError) as info:
        load_settings(environ={}, config_file=path)
    assert str(path) in str(info.value)
    assert "Permission denied" in str(info.value)


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'host = "caf\xe9"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(environ={}, config_file=path)
    assert str(path) in str(info.value)


def test_invalid_toml(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", "port = = 1\n")
    with pytest.raises(ConfigError) as info:
        load_settings(environ={}, config_file=path)
    assert str(path) in str(info.value)
    assert "not valid TOML" in str(info.value)


@pytest.mark.parametrize("value", ["0", "-3"])
def test_max_rounds_below_one(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ={"TOOL_PROXY_MAX_ROUNDS": value})
    assert "max_rounds" in str(info.value)
    assert value in str(info.value)


def test_max_rounds_zero_in_file(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", "max_rounds = 0\n")
    with pytest.raises(ConfigError, match="max_rounds"):
        load_settings(environ={}, config_file=path)


def test_max_rounds_not_a_number() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ={"TOOL_PROXY_MAX_ROUNDS": "many"})
    assert "$TOOL_PROXY_MAX_ROUNDS" in str(info.value)


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_bad_tool_timeout(value: str) -> None:
    with pytest.raises(ConfigError, match=r"(?i)tool_timeout"):
        load_settings(environ={"TOOL_PROXY_TOOL_TIMEOUT": value})


def test_nan_tool_timeout_is_rejected() -> None:
    with pytest.raises(ConfigError):
        load_settings(environ={"TOOL_PROXY_TOOL_TIMEOUT": "nan"})


def test_list_with_non_strings_in_file(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", "api_keys = [1, 2]\n")
    with pytest.raises(ConfigError) as info:
        load_settings(environ={}, config_file=path)
    assert "api_keys" in str(info.value)
    assert str(path) in str(info.value)


def test_store_setting(tmp_path: Path) -> None:
    assert load_settings(environ={}).store == "memory"
    path = write(tmp_path / "c.toml", 'store = "memory"\n')
    assert load_settings(environ={}, config_file=path).store == "memory"
    env = {"TOOL_PROXY_STORE": "redis://127.0.0.1:6379/0"}
    assert load_settings(environ=env).store == env["TOOL_PROXY_STORE"]


def test_a_bad_store_is_named_by_its_scheme_never_its_password() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"TOOL_PROXY_STORE": "mysql://user:hunter2@db/0"})
    assert "'mysql'" in str(caught.value) and "hunter2" not in str(caught.value)


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


# --------------------------------------------------------------------------- start-up checks


def test_client_keys_need_an_upstream_key() -> None:
    with pytest.raises(ConfigError, match="TOOL_PROXY_UPSTREAM_API_KEY") as caught:
        load_settings(environ={"TOOL_PROXY_API_KEYS": "k1"})
    assert "TOOL_PROXY_API_KEYS" in str(caught.value)
    settings = load_settings(
        environ={"TOOL_PROXY_API_KEYS": "k1", "TOOL_PROXY_UPSTREAM_API_KEY": "none"}
    )
    assert settings.api_keys == ("k1",)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, []),
        ({"upstream": "http://localhost:11434"}, ["has no path"]),
        ({"upstream": "http://localhost:11434/"}, ["has no path"]),
        ({"upstream": "https://example.test/openai/v1"}, []),
        ({"host": "0.0.0.0"}, ["without client keys"]),
        ({"host": "::"}, ["without client keys"]),
        ({"host": "localhost"}, []),
        ({"host": "127.0.0.2"}, []),
        ({"host": "0.0.0.0", "api_keys": ("k",), "upstream_api_key": "u"}, []),
    ],
)
def test_start_up_warnings(changes: dict[str, object], expected: list[str]) -> None:
    found = warnings_for(dataclasses.replace(Settings(), **changes))
    assert len(found) == len(expected)
    for warning, words in zip(found, expected, strict=True):
        assert words in warning


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("TOOL_PROXY_MAX_BODY_MB", "0", "positive"),
        ("TOOL_PROXY_MAX_HEADER_KB", "-1", "positive"),
        ("TOOL_PROXY_TOOL_CONCURRENCY", "0", "at least 1"),
        ("TOOL_PROXY_KEEPALIVE_INTERVAL", "-1", "at least 0"),
        ("TOOL_PROXY_READ_TIMEOUT", "inf", "finite"),
        ("TOOL_PROXY_DRAIN_TIMEOUT", "soon", "a number"),
    ],
)
def test_new_limits_are_checked(variable: str, value: str, words: str) -> None:
    with pytest.raises(ConfigError, match=variable.replace("$", r"\$")) as caught:
        load_settings(environ={variable: value})
    assert words in str(caught.value)


def test_workers_beyond_one_need_a_shared_store() -> None:
    with pytest.raises(ConfigError, match="TOOL_PROXY_STORE to a redis:// URL") as caught:
        load_settings(environ={"TOOL_PROXY_WORKERS": "2"})
    assert "workers is 2" in str(caught.value)
    shared = {"TOOL_PROXY_WORKERS": "2", "TOOL_PROXY_STORE": "redis://127.0.0.1:6379/0"}
    assert load_settings(environ=shared).workers == 2


def test_a_setting_with_choices_names_them() -> None:
    with pytest.raises(ConfigError, match="one of text, json, got 'yaml'"):
        load_settings(environ={"TOOL_PROXY_LOG_FORMAT": "yaml"})


# --------------------------------------------------------------------------- client keys

CLIENTS = """
upstream_api_key = "sk-up"

[clients.team-a]
key = "sk-team-a"
tools = ["calculate", " clock "]

[clients.ops]
key = "sk-ops"
"""


def test_client_keys_from_the_file(tmp_path: Path) -> None:
    settings = load_settings(environ={}, config_file=write(tmp_path / "c.toml", CLIENTS))
    assert settings.clients == (
        Client("team-a", "sk-team-a", ("calculate", "clock")),
        Client("ops", "sk-ops", None),  # every tool
    )
    assert "sk-team-a" not in repr(settings)  # a key never reaches a log line


def test_client_keys_come_from_the_file_only(tmp_path: Path) -> None:
    environ = {"TOOL_PROXY_CLIENTS": "team-a=sk-x", "TOOL_PROXY_UPSTREAM_API_KEY": "u"}
    assert load_settings(environ=environ).clients == ()


def test_client_keys_need_an_upstream_key_too(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", CLIENTS.replace('upstream_api_key = "sk-up"', ""))
    with pytest.raises(ConfigError, match=r"clients \(config file\) is set but upstream_api_key"):
        load_settings(environ={}, config_file=path)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('clients = "sk-secret"', "must be tables: [clients.NAME]"),
        ('[clients]\nteam-a = "sk-secret"', "clients.team-a (from config file"),
        ("[clients.team-a]\ntools = []", "clients.team-a (from config file"),
        ('[clients.team-a]\nkey = " "', "needs a key"),
        ('[clients.team-a]\nkey = "sk-secret"\ntools = "calculate"', "list of tool names"),
        ('[clients.team-a]\nkey = "sk-secret"\nmodels = []', "unknown field(s) models"),
        (
            '[clients.a]\nkey = "sk-secret"\n[clients.b]\nkey = "sk-secret"',
            "'a' and 'b' have the same key",
        ),
    ],
)
def test_bad_client_keys_are_named_never_shown(tmp_path: Path, text: str, words: str) -> None:
    path = write(tmp_path / "c.toml", f'upstream_api_key = "u"\n{text}\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={}, config_file=path)
    assert words in str(caught.value)
    assert "sk-secret" not in str(caught.value)


def test_a_key_is_one_client_s(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", CLIENTS)
    environ = {"TOOL_PROXY_API_KEYS": "sk-other,sk-ops"}
    with pytest.raises(ConfigError, match="client 'ops' has a key that is also in api_keys"):
        load_settings(environ=environ, config_file=path)


def test_client_keys_count_as_client_auth_beyond_loopback() -> None:
    settings = Settings(host="0.0.0.0", clients=(Client("a", "k"),), upstream_api_key="u")
    assert warnings_for(settings) == []
