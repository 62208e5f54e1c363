"""Running server tool calls: validate, run concurrently under timeouts, turn every outcome
into text the model can read — a failing tool never breaks the stream."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jsonschema

from proxy.tools.registry import Registry

log = logging.getLogger("proxy.tools")


@dataclass(frozen=True)
class ToolCall:
    """One call the model asked for, its arguments still the raw JSON text it produced."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ToolResult:
    call: ToolCall
    output: str
    ok: bool


class ToolRunner:
    def __init__(
        self,
        registry: Registry,
        default_timeout: float,
        *,
        max_result_bytes: int = 100 * 1024,
        per_request: int = 8,
        total: int = 64,
        threads: int = 32,
    ) -> None:
        self.registry = registry
        self.default_timeout = default_timeout
        self.max_result_bytes = max_result_bytes
        self.per_request = per_request
        self.total = total
        self.threads = threads

    async def run_all(self, calls: Sequence[ToolCall]) -> list[ToolResult]:
        """Run every call concurrently; results keep the order of `calls`."""
        if len(calls) == 1:
            return [await self.run(calls[0])]
        return list(await asyncio.gather(*(self.run(call) for call in calls)))

    async def run(self, call: ToolCall) -> ToolResult:
        entry = self.registry.get(call.name)
        if entry is None:
            return ToolResult(call, f"error: no tool named {call.name!r} is available", False)
        tool = entry.tool
        try:
            arguments = json.loads(call.arguments) if call.arguments.strip() else {}
        except json.JSONDecodeError as exc:
            return ToolResult(
                call, f"error: the arguments for {call.name!r} are not valid JSON ({exc})", False
            )
        if not isinstance(arguments, dict):
            return ToolResult(
                call, f"error: the arguments for {call.name!r} must be a JSON object", False
            )
        problem = _first_error(tool.validator, arguments)
        if problem is not None:
            return ToolResult(call, f"error: invalid arguments for {call.name!r}: {problem}", False)
        timeout = tool.timeout if tool.timeout is not None else self.default_timeout
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                value = await tool.invoke(arguments)
        except TimeoutError as exc:
            if not deadline.expired():  # the tool's own TimeoutError, not ours
                return ToolResult(call, f"error: {call.name!r} failed: {_describe(exc)}", False)
            log.warning("tool %s timed out after %ss", call.name, timeout)
            return ToolResult(
                call, f"error: {call.name!r} timed out after {timeout:g} seconds", False
            )
        except (Exception, SystemExit) as exc:
            log.warning("tool %s raised %s: %s", call.name, type(exc).__name__, exc)
            return ToolResult(call, f"error: {call.name!r} failed: {_describe(exc)}", False)
        return ToolResult(call, _as_text(value), True)


def _first_error(validator: jsonschema.protocols.Validator, instance: Any) -> str | None:
    error = jsonschema.exceptions.best_match(validator.iter_errors(instance))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return f"{where}: {error.message}" if where else error.message


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError) as exc:
        return f"error: the tool's result could not be encoded as JSON ({exc})"
