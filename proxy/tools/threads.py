"""Threads for sync tools, apart from the event loop's default executor.

Python cannot stop a thread, so a sync tool that hangs past its timeout keeps its thread for as
long as it hangs. Here that thread is abandoned — counted, reported, no longer one of the
pool's — and its slot is given back at once, so the tools after it still get a thread. Threads
are daemons: a hung tool does not hold up the process's exit either.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import itertools
import logging
import queue
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

log = logging.getLogger("proxy.tools")

_names = itertools.count(1)


class ToolThreads:
    """At most `size` sync tools running at once, each on a thread of this pool."""

    def __init__(self, size: int) -> None:
        self._slots = asyncio.Semaphore(size)
        self._idle: list[ToolThread] = []
        self._lock = threading.Lock()
        self._hung = 0

    @property
    def hung(self) -> int:
        """Abandoned threads whose tool still runs after its call ended (it timed out, or its
        request was cancelled)."""
        return self._hung

    def close(self) -> None:
        """End the idle threads (an abandoned one ends when its tool returns)."""
        while self._idle:
            self._idle.pop().stop()

    @contextlib.asynccontextmanager
    async def thread(self, tool: str) -> AsyncIterator[ToolThread]:
        """A thread for one call of `tool`, held until the block ends (waiting for a free slot
        first). If the call still runs then, the thread is abandoned to it."""
        async with self._slots:
            worker = self._idle.pop() if self._idle else ToolThread(self)
            try:
                yield worker
            finally:
                if worker.release(tool):
                    self._idle.append(worker)
                else:
                    log.warning(
                        "sync tool %s still runs after its call ended; its thread is abandoned "
                        "(%d hung tool thread(s) now)",
                        tool,
                        self._hung,
                    )


_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[[], Any]] | None


class ToolThread:
    """One daemon thread of the pool, running the calls handed to it one at a time."""

    def __init__(self, pool: ToolThreads) -> None:
        self._pool = pool
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._tool = ""  # the tool it was abandoned to
        self._busy = False
        self._abandoned = False
        name = f"openai-tool-proxy-tool-{next(_names)}"
        threading.Thread(target=self._serve, name=name, daemon=True).start()

    async def run(self, fn: Callable[[], Any]) -> Any:
        """`fn()` computed on this thread (its exception raised here), in a copy of the
        caller's context as `asyncio.to_thread` does."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._pool._lock:
            self._busy = True
        self._jobs.put((loop, future, functools.partial(contextvars.copy_context().run, fn)))
        return await future

    def release(self, tool: str) -> bool:
        """True if the thread is free again; otherwise it is abandoned to `tool`'s call."""
        with self._pool._lock:
            if self._busy:
                self._abandoned = True
                self._tool = tool
                self._pool._hung += 1
            return not self._abandoned

    def stop(self) -> None:
        self._jobs.put(None)

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            loop, future, call = job
            value: Any = None
            error: BaseException | None = None
            try:
                value = call()
            except BaseException as exc:  # the caller decides what is fatal, not this thread
                error = exc
            with self._pool._lock:
                self._busy = False
                if self._abandoned:
                    self._pool._hung -= 1
                    hung = self._pool._hung
                    break
            loop.call_soon_threadsafe(_resolve, future, value, error)
        log.info("abandoned sync tool %s ended (%d hung tool thread(s) now)", self._tool, hung)


def _resolve(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if future.done():  # the call was cancelled meanwhile
        return
    if error is None:
        future.set_result(value)
    else:
        future.set_exception(error)
