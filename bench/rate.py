"""Requests per second per core with p99 added latency under 5 ms, and the tool-round overhead (built in issue 13)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from bench.processes import Server


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This section's options."""


async def section(
    upstream: Server, up_url: str, say: Callable[[str], None], args: argparse.Namespace
) -> None:
    """Measure, and `say` the table."""
