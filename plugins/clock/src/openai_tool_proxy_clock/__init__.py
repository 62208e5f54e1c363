"""Clock plugin for openai-tool-proxy: a model has no clock, so the proxy lends it one."""

from __future__ import annotations

import difflib
import functools
import zoneinfo
from datetime import datetime

from proxy import tool

# English names, whatever the process locale (strftime's %A and %B follow the locale).
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")  # fmt: skip


@tool
def current_time(timezone: str = "UTC") -> str:
    """Get the current date and time in a time zone.

    Use this whenever an answer depends on today's date, the time of day or the weekday: you
    have no clock of your own. Returns the weekday, the date, the local time with the zone's
    abbreviation and UTC offset, and an ISO 8601 timestamp.

    Args:
        timezone: IANA time zone name, such as "Europe/Paris", "America/New_York",
            "Asia/Tokyo" or "UTC".
    """
    return describe(datetime.now(find_zone(timezone)))


def describe(moment: datetime) -> str:
    """Render an aware datetime for a model: readable first, then exact and machine-parsable.

    E.g. "Friday, 13 June 2025, 14:05:09 in Europe/Paris (CEST, UTC+02:00).
    ISO 8601: 2025-06-13T14:05:09+02:00" (on one line).
    """
    moment = moment.replace(microsecond=0)
    offset = moment.strftime("%z")
    utc_offset = f"UTC{offset[:3]}:{offset[3:5]}"
    abbreviation = moment.tzname() or ""
    # Zones without a real abbreviation report the offset ("+04"); don't say it twice.
    if abbreviation and abbreviation[0] not in "+-" and abbreviation != "UTC":
        utc_offset = f"{abbreviation}, {utc_offset}"
    return (
        f"{_WEEKDAYS[moment.weekday()]}, {moment.day} {_MONTHS[moment.month - 1]} {moment.year}, "
        f"{moment:%H:%M:%S} in {moment.tzinfo} ({utc_offset}). ISO 8601: {moment.isoformat()}"
    )


def find_zone(name: str) -> zoneinfo.ZoneInfo:
    """The zone called `name`, forgiving case and spaces; a `ValueError` the model can act on.

    Models often write "europe/paris" or "Europe/Pari"; the first is accepted, the second
    gets a suggestion.
    """
    key = name.strip()
    try:
        return zoneinfo.ZoneInfo(key)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        pass  # not found, malformed ("../x", ""), or a directory ("Europe"): look further
    by_lower = _zones_by_lowercase()
    if key.lower() in by_lower:
        return zoneinfo.ZoneInfo(by_lower[key.lower()])
    guesses = difflib.get_close_matches(key.lower(), by_lower, n=3)
    hint = f" Did you mean {', '.join(repr(by_lower[g]) for g in guesses)}?" if guesses else ""
    raise ValueError(
        f"unknown time zone {name!r}: use an IANA time zone name such as 'Europe/Paris', "
        f"'America/New_York' or 'UTC'.{hint}"
    )


@functools.cache
def _zones_by_lowercase() -> dict[str, str]:
    """Every known zone by lower-cased name (listing them reads the disk, so only once)."""
    return {zone.lower(): zone for zone in zoneinfo.available_timezones()}
