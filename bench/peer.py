"""LiteLLM's proxy, the peer users would otherwise pick, as a pass-through beside ours (built in issue 13)."""

from __future__ import annotations

import argparse

from bench.processes import Server


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This section's options."""


def start_peer(up_url: str) -> tuple[Server | None, str]:
    """The peer started against `up_url`, or None and the line that says why not."""
    return None, "peer: not built yet"
