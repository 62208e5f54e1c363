"""The measurements: interleaved latency, CPU per chunk, the concurrency sweep, the server-tool
round and the soak — each against servers started by `bench.processes`."""

from __future__ import annotations

import asyncio
import json
import random

from bench.client import Connection, Result
from bench.figures import pct
from bench.processes import Server

CHAT = "/v1/chat/completions"
RESPONSES = "/v1/responses"


def request_body(path: str) -> dict:
    if path == CHAT:
        return {
            "model": "bench",
            "stream": True,
            "messages": [{"role": "user", "content": "Say something."}],
        }
    return {"model": "bench", "stream": True, "input": "Say something."}


async def one(conn: Connection, path: str, scenario: str, bench_id: str = "") -> Result:
    headers = {"x-bench": scenario}
    if bench_id:
        headers["x-bench-id"] = bench_id
    return await conn.request(path, request_body(path), headers)


async def latency(targets: dict[str, Server], path: str, rounds: int) -> dict[str, dict]:
    """Interleaved sequential requests to every target. Time to first token on an instant
    stream of 50 chunks; chunk latency (upstream write -> client read) on a stream of 50
    chunks one every 1 ms, so that each chunk travels alone."""
    conns = {name: Connection("127.0.0.1", s.port) for name, s in targets.items()}
    ttft: dict[str, list[int]] = {name: [] for name in targets}
    chunk: dict[str, list[int]] = {name: [] for name in targets}
    errors = {name: 0 for name in targets}
    order = list(targets)
    for i in range(rounds):
        random.shuffle(order)
        for name in order:
            instant = await one(conns[name], path, "chunks=50")
            spaced = await one(conns[name], path, "chunks=50;interval_ms=1")
            if any(r.error or len(r.chunk_latency_ns) != 50 for r in (instant, spaced)):
                errors[name] += 1
                continue
            if i >= 5:  # warm-up
                ttft[name].append(instant.first_content - instant.started)
                chunk[name].extend(spaced.chunk_latency_ns[1:])
    warm: dict[str, list[int]] = {name: [] for name in targets}
    for name in targets:  # back to back, one target at a time: caches warm, CPU awake
        for i in range(rounds):
            r = await one(conns[name], path, "chunks=50")
            if i >= 5 and not r.error:
                warm[name].append(r.first_content - r.started)
    for c in conns.values():
        c.close()
    return {
        name: {
            "ttft_p50": pct(ttft[name], 50),
            "ttft_p99": pct(ttft[name], 99),
            "warm_p50": pct(warm[name], 50),
            "chunk_p50": pct(chunk[name], 50),
            "chunk_p99": pct(chunk[name], 99),
            "errors": errors[name],
        }
        for name in targets
    }


async def cpu_per_chunk(server: Server, path: str, requests: int, chunks: int) -> float:
    """Server CPU time per relayed chunk, streaming as fast as the upstream can write."""
    conns = [Connection("127.0.0.1", server.port) for _ in range(4)]
    await asyncio.gather(*(one(c, path, f"chunks={chunks}") for c in conns))  # warm-up
    before = server.cpu_ns()
    relayed = 0

    async def worker(conn: Connection) -> None:
        nonlocal relayed
        for _ in range(requests // len(conns)):
            r = await one(conn, path, f"chunks={chunks}")
            relayed += len(r.chunk_latency_ns)

    await asyncio.gather(*(worker(c) for c in conns))
    spent = server.cpu_ns() - before
    for c in conns:
        c.close()
    return spent / max(relayed, 1)


async def concurrency(server: Server, path: str, streams: int, interval_ms: int) -> dict:
    """`streams` at once, 20 chunks each one every `interval_ms`: errors and stalls."""
    chunks = 20

    async def stream(i: int) -> Result:
        await asyncio.sleep(random.random() * interval_ms / 1000)  # spread the starts
        conn = Connection("127.0.0.1", server.port)
        try:
            return await one(conn, path, f"chunks={chunks};interval_ms={interval_ms}")
        finally:
            conn.close()

    results = await asyncio.gather(*(stream(i) for i in range(streams)), return_exceptions=True)
    errors = stalls = 0
    gaps: list[int] = []
    latencies: list[int] = []
    for r in results:
        if isinstance(r, BaseException) or r.error or len(r.arrivals) != chunks:
            errors += 1
            continue
        steps = [b - a for a, b in zip(r.arrivals, r.arrivals[1:], strict=False)]
        gaps.extend(steps)
        latencies.extend(r.chunk_latency_ns)
        if max(steps) > 2 * interval_ms * 1e6:
            stalls += 1
    return {
        "streams": streams,
        "errors": errors,
        "stalls": stalls,
        "max_gap_ms": max(gaps) / 1e6 if gaps else float("nan"),
        "chunk_p50": pct(latencies, 50),
        "chunk_p99": pct(latencies, 99),
    }


async def tool_loop(proxy: Server, upstream: Server, path: str, requests: int) -> dict:
    """Requests whose first round calls an instant server tool: turnaround at the upstream."""
    conn = Connection("127.0.0.1", proxy.port)
    ttft = []
    errors = 0
    for i in range(requests):
        r = await one(conn, path, "chunks=20;tool=1", bench_id=f"b{i}")
        if r.error or len(r.chunk_latency_ns) != 20:
            errors += 1
        elif i >= 5:
            ttft.append(r.first_content - r.started)
    conn.close()
    turnarounds = json.loads(await fetch(upstream.port, "/turnaround"))[5:]
    return {
        "turnaround_p50": pct(turnarounds, 50),
        "turnaround_p99": pct(turnarounds, 99),
        "ttft_p50": pct(ttft, 50),
        "errors": errors,
    }


async def fetch(port: int, path: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    body = await reader.readexactly(length)
    writer.close()
    return body


async def soak(proxy: Server, requests: int, concurrency_: int) -> None:
    """Many requests of every kind, to see whether memory grows."""
    kinds = [
        (CHAT, "chunks=20"),
        (CHAT, "chunks=20;tool=1"),
        (RESPONSES, "chunks=20"),
        (RESPONSES, "chunks=20;tool=1"),
    ]
    counter = iter(range(requests))

    async def worker() -> None:
        conn = Connection("127.0.0.1", proxy.port)
        for i in counter:
            path, scenario = kinds[i % len(kinds)]
            await one(conn, path, scenario, bench_id=f"s{i}")
        conn.close()

    await asyncio.gather(*(worker() for _ in range(concurrency_)))
