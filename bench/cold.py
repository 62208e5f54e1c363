"""The time to the first token with the CPU caches cold: the proxy's app against the stack
floor's, in one process, so the interleaved figure's gap (README, Performance) can be
reproduced, and a change to it measured, in a minute rather than a full run.

In the interleaved figure every process wakes up cold: between two requests to the proxy the
other targets run, and evict its code and data from the caches. Here both apps are driven
directly as ASGI apps — no client and no server, so what is timed is the apps' own work —
against the bench's loopback upstream; before each request a buffer larger than the
last-level cache is copied. What is timed is the CPU time (`time.process_time`) from calling
the app to the first body bytes with content in them (the upstream's content chunks carry
`t=`, as the interleaved figure counts them); the two apps alternate, the event loop is left
idle before each request, and the figures are medians. Warm: the same with no copy.

`python -m bench.cold [--requests N] [--evict-mb M]`
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import time
from typing import Any

from bench.measure import CHAT, RESPONSES, request_body
from bench.processes import start
from bench.serve import bench_echo, stack_app
from proxy.app import create_app
from proxy.config import Settings
from proxy.tools.registry import Registry

App = Any  # an ASGI application


CHUNKS = 50  # content chunks in the stream, as in the interleaved figure


async def first_token(app: App, path: str, body: bytes) -> float:
    """CPU seconds from calling `app` with a streaming request to its first content."""
    received = False
    first = 0.0
    status = 0
    contents = 0

    async def receive() -> dict[str, Any]:
        nonlocal received
        if received:  # the client stays: the relay's disconnect watcher waits here
            await asyncio.Event().wait()
        received = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal first, status, contents
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body" and b"t=" in message.get("body", b""):
            if not first:
                first = time.process_time() - started
            contents += message["body"].count(b"t=")

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"authorization", b"Bearer sk-bench"),
            (b"x-bench", b"chunks=%d" % CHUNKS),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    started = time.process_time()
    await app(scope, receive, send)
    if status != 200 or contents != CHUNKS:  # an error, or a stream cut short
        raise RuntimeError(f"{path} answered {status} with {contents} of {CHUNKS} chunks")
    return first


async def settled() -> None:
    """Let the event loop run what the last request left (its relay's tasks, cancelled, end
    at their next turn), so none of it is timed in the next request."""
    left = asyncio.all_tasks() - {asyncio.current_task()}
    await asyncio.gather(*left, return_exceptions=True)


async def compare(
    apps: dict[str, App], path: str, requests: int, evict: tuple[bytearray, bytes] | None
) -> dict[str, float]:
    """Median CPU seconds to the first token of each app, taking turns (the order
    alternating); with `evict`, the caches are evicted before every request: the second buffer
    is copied into the first (no allocation, so no page faults)."""
    body = json.dumps(request_body(path)).encode()
    times: dict[str, list[float]] = {name: [] for name in apps}
    for i in range(requests):
        for name in list(apps)[:: 1 if i % 2 else -1]:
            await settled()
            if evict is not None:
                evict[0][:] = evict[1]
            times[name].append(await first_token(apps[name], path, body))
    return {name: statistics.median(values) for name, values in times.items()}


async def run(requests: int, evict_mb: int) -> None:
    upstream = start("upstream", ["-m", "bench.upstream"])
    try:
        url = f"http://127.0.0.1:{upstream.port}/v1"
        proxy = create_app(Settings(upstream=url), Registry.of(bench_echo, plugin="bench"))
        apps = {"stack": stack_app(url), "proxy": proxy}
        size = evict_mb * 1024 * 1024
        # Not zeros: a buffer of zeros can be one page, mapped over and over, that no cache drops.
        evict = (bytearray(size), bytes(range(256)) * (size // 256))
        print(f"{requests} requests an app a figure, {CHUNKS} chunks each; evicting {evict_mb} MB")
        async with proxy.router.lifespan_context(proxy):
            for path, api in ((CHAT, "Chat"), (RESPONSES, "Responses")):
                await compare(apps, path, 200, None)  # warm-up
                for label, evicting in (("warm", None), ("cold", evict)):
                    medians = await compare(apps, path, requests, evicting)
                    stack, ours = medians["stack"] * 1e3, medians["proxy"] * 1e3
                    print(
                        f"{api}, {label}: CPU to the first token, stack {stack:.2f} ms, proxy "
                        f"{ours:.2f} ms: the proxy's own work {ours - stack:+.2f} ms",
                        flush=True,
                    )
    finally:
        upstream.process.terminate()
        try:
            upstream.process.wait(10)
        except subprocess.TimeoutExpired:
            upstream.process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cold", description=__doc__)
    parser.add_argument("--requests", type=int, default=500, help="requests per app a figure")
    parser.add_argument(
        "--evict-mb",
        type=int,
        default=48,
        help="MB copied from one buffer into another before each request (2 x M MB touched: "
        "more than the last-level cache)",
    )
    args = parser.parse_args()
    import uvloop

    uvloop.install()
    asyncio.run(run(args.requests, args.evict_mb))


if __name__ == "__main__":
    main()
