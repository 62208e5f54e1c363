"""Cost as the work grows: request size, tools registered, rounds, memory per idle stream (built in issue 13)."""

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
