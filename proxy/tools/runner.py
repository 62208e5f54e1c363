"""Running server tool calls: validate, run concurrently (within bounds) under timeouts, turn
every outcome into text the model can read — a failing tool never breaks the stream."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from time import perf_counter
from typing import Any

from proxy.observe import tracing
from proxy.observe.record import current
from proxy.tools.context import CALLER
from proxy.tools.registry import Registry
from proxy.tools.schema import first_problem, unexpected
from proxy.tools.text import NotJSON, as_text, truncated
from proxy.tools.threads import ToolThread, ToolThreads
from proxy.tools.tool import Tool, ToolError

log = logging.getLogger("proxy.tools")

# What went wrong in a call, as its span's `error.type` (else the exception's type).
TIMEOUT = "timeout"
INVALID_ARGUMENTS = "invalid_arguments"
UNKNOWN = "unknown"  # the name a call to no registered tool is counted under


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
    """Runs calls at most `per_request` at once per `run_all` and `total` at once in the
    process, sync tools on `threads` threads of their own; a result never exceeds
    `max_result_bytes` (UTF-8)."""

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
        self._total = asyncio.Semaphore(total)
        self._threads = ToolThreads(threads)

    @property
    def hung_threads(self) -> int:
        """Threads still running a sync tool whose call already ended (timed out, or its
        request was cancelled): Python cannot stop them, so they are counted."""
        return self._threads.hung

    def close(self) -> None:
        """At shutdown: the sync tools' idle threads end."""
        self._threads.close()

    async def run_all(self, calls: Sequence[ToolCall]) -> list[ToolResult]:
        """Run every call concurrently, `per_request` at a time; results keep the order of
        `calls`."""
        if len(calls) == 1:
            return [await self.run(calls[0])]
        results: dict[int, ToolResult] = {}
        pending = iter(enumerate(calls))

        async def work() -> None:
            for i, call in pending:
                results[i] = await self.run(call)

        async with asyncio.TaskGroup() as group:
            for _ in range(min(self.per_request, len(calls))):
                group.create_task(work())
        return [results[i] for i in range(len(calls))]

    async def run(self, call: ToolCall) -> ToolResult:
        """One call's result, whatever happens in the tool; only a cancellation of the
        request itself escapes. Timed, counted and traced under the tool's name (or
        `UNKNOWN`: metric labels stay bounded whatever names a model makes up)."""
        name = call.name if call.name in self.registry else UNKNOWN
        started = perf_counter()
        with tracing.tool_call(name, call.id) as span:
            output, error = await self._outcome(call)
            tracing.finish(span, {}, error)
        outcome = "ok" if error is None else "timeout" if error == TIMEOUT else "error"
        current().tool_called(name, outcome, perf_counter() - started, self.hung_threads)
        cut = truncated(output, self.max_result_bytes)
        if cut is not None:
            output, size = cut
            log.warning(
                "tool %s returned %d bytes; only the first %d are sent",
                call.name,
                size,
                self.max_result_bytes,
            )
        return ToolResult(call, output, error is None)

    async def _outcome(self, call: ToolCall) -> tuple[str, str | None]:
        """The call's text for the model, and what went wrong (an `error.type`), if anything."""
        entry = self.registry.get(call.name)
        if entry is None:
            return f"error: no tool named {call.name!r} is available", "tool_not_found"
        tool = entry.tool
        try:
            arguments = json.loads(call.arguments) if call.arguments.strip() else {}
        except json.JSONDecodeError as exc:
            text = f"error: the arguments for {call.name!r} are not valid JSON ({exc})"
            return text, INVALID_ARGUMENTS
        if not isinstance(arguments, dict):
            text = f"error: the arguments for {call.name!r} must be a JSON object"
            return text, INVALID_ARGUMENTS
        problem = first_problem(tool.validator, arguments)
        if problem is None and tool.accepts is not None:  # a given schema may allow more
            extra = [name for name in arguments if name not in tool.accepts]
            problem = unexpected(extra, tool.accepts) if extra else None
        if problem is not None:
            return f"error: invalid arguments for {call.name!r}: {problem}", INVALID_ARGUMENTS
        async with self._total:
            return await self._call(tool, arguments)

    def _thread_for(self, tool: Tool) -> AbstractAsyncContextManager[ToolThread | None]:
        """A thread of the pool for a sync tool; none for an async one."""
        return contextlib.nullcontext() if tool.is_async else self._threads.thread(tool.name)

    async def _call(self, tool: Tool, arguments: dict[str, Any]) -> tuple[str, str | None]:
        timeout = tool.timeout if tool.timeout is not None else self.default_timeout
        deadline = asyncio.timeout(None)  # set once it runs: waiting for a thread is not running
        try:
            async with self._thread_for(tool) as thread, deadline:
                deadline.reschedule(asyncio.get_running_loop().time() + timeout)
                kwargs = tool.prepare(arguments, CALLER.get())
                if thread is None:
                    value = await tool.handler(**kwargs)
                else:
                    value = await thread.run(functools.partial(tool.handler, **kwargs))
        except TimeoutError as exc:
            if not deadline.expired():  # the tool's own TimeoutError, not ours
                return _failed(tool, exc)
            log.warning("tool %s timed out after %ss", tool.name, timeout)
            return f"error: {tool.name!r} timed out after {timeout:g} seconds", TIMEOUT
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():  # the request is cancelled: let it go
                raise
            return _failed(tool, exc)  # the tool raised it itself
        except ToolError as exc:
            log.info("tool %s answered an error: %s", tool.name, exc)
            return f"error: {exc}", "tool_error"
        except (Exception, SystemExit) as exc:
            return _failed(tool, exc)
        try:
            return as_text(value), None
        except NotJSON as exc:
            log.warning("tool %s returned a value with no JSON form: %s", tool.name, exc)
            return (
                f"error: {tool.name!r} returned a value that cannot be encoded as JSON "
                f"({exc}); this is a bug in the tool",
                "invalid_result",
            )


def _failed(tool: Tool, exc: BaseException) -> tuple[str, str]:
    log.warning("tool %s raised %s: %s", tool.name, type(exc).__name__, exc)
    log.debug("tool %s traceback", tool.name, exc_info=exc)
    text = str(exc)
    described = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return f"error: {tool.name!r} failed: {described}", type(exc).__qualname__
