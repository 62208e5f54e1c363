"""Tests of the clock plugin: the tool's text, its errors, and how the proxy sees it."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from importlib.metadata import PackageNotFoundError, distribution
from zoneinfo import ZoneInfo

import openai_tool_proxy_clock
import pytest
from openai_tool_proxy_clock import current_time, describe, find_zone

from proxy.tools.registry import collect_tools, load_registry

_ISO = re.compile(r"ISO 8601: (\S+)$")


def _timestamp(text: str) -> datetime:
    match = _ISO.search(text)
    assert match, text
    return datetime.fromisoformat(match.group(1))


def test_describe_summer_and_winter() -> None:
    paris = ZoneInfo("Europe/Paris")
    assert describe(datetime(2025, 6, 13, 14, 5, 9, 123456, tzinfo=paris)) == (
        "Friday, 13 June 2025, 14:05:09 in Europe/Paris (CEST, UTC+02:00). "
        "ISO 8601: 2025-06-13T14:05:09+02:00"
    )
    assert describe(datetime(2025, 1, 1, 0, 0, 0, tzinfo=paris)) == (
        "Wednesday, 1 January 2025, 00:00:00 in Europe/Paris (CET, UTC+01:00). "
        "ISO 8601: 2025-01-01T00:00:00+01:00"
    )


def test_describe_negative_fractional_offset_and_numeric_abbreviation() -> None:
    st_johns = datetime(2025, 12, 24, 18, 30, tzinfo=ZoneInfo("America/St_Johns"))
    assert "(NST, UTC-03:30)" in describe(st_johns)
    dubai = describe(datetime(2025, 3, 1, 9, 0, tzinfo=ZoneInfo("Asia/Dubai")))
    assert "in Asia/Dubai (UTC+04:00)." in dubai  # tzname is "+04": not repeated


def test_current_time_is_now_in_the_zone() -> None:
    text = current_time("Asia/Tokyo")
    stamp = _timestamp(text)
    assert stamp.utcoffset() == timedelta(hours=9)
    assert abs(stamp - datetime.now(UTC)) < timedelta(seconds=5)
    assert "in Asia/Tokyo (JST, UTC+09:00)" in text
    assert text.startswith(stamp.strftime("%A"))  # the weekday


def test_current_time_defaults_to_utc() -> None:
    text = current_time()
    assert " in UTC (UTC+00:00). " in text
    assert _timestamp(text).utcoffset() == timedelta(0)


def test_zone_names_forgive_case_and_spaces() -> None:
    assert find_zone(" europe/paris ").key == "Europe/Paris"
    assert find_zone("utc").key == "UTC"


@pytest.mark.parametrize("name", ["Mars/Olympus_Mons", "", "Europe", "../../etc/passwd", "/etc/x"])
def test_unknown_zone_is_an_actionable_error(name: str) -> None:
    with pytest.raises(ValueError, match="unknown time zone") as info:
        current_time(name)
    assert "Europe/Paris" in str(info.value)  # an example of a valid name


def test_unknown_zone_suggests_close_names() -> None:
    with pytest.raises(ValueError, match="Did you mean 'America/New_York'"):
        current_time("America/NewYork")


def test_module_is_collected_as_one_tool() -> None:
    (found,) = collect_tools(openai_tool_proxy_clock)
    assert found is current_time
    assert found.name == "current_time"
    assert found.description.startswith("Get the current date and time in a time zone.")
    assert found.parameters == {
        "type": "object",
        "properties": {
            "timezone": {
                "type": "string",
                "description": found.parameters["properties"]["timezone"]["description"],
                "default": "UTC",
            }
        },
        "required": [],
        "additionalProperties": False,
    }
    assert "IANA" in found.parameters["properties"]["timezone"]["description"]
    found.validator.validate({"timezone": "Europe/Paris"})
    found.validator.validate({})


def test_entry_point_loads_the_tool() -> None:
    try:
        distribution("openai-tool-proxy-clock")
    except PackageNotFoundError:  # the README's test command installs it: never skipped
        pytest.fail("plugin not installed (pip install -e ./plugins/clock)")
    registry = load_registry(["clock"])
    assert registry["current_time"].tool is current_time
    assert registry["current_time"].plugin == "clock"
