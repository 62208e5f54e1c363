"""`python -m bench`: the proxy against a direct connection, a bare pass-through proxy and
two floors (its own stack with no logic, and a byte pipe), in one interleaved run on
loopback, with the figures of DESIGN §7. See the README's Performance section for what each
figure means."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.client import Connection, Result

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]

    def cpu_ns(self) -> int:
        """CPU time of every thread of the process so far (/proc/PID/task/*/schedstat)."""
        total = 0
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                total += int((task / "schedstat").read_text().split()[0])
        return total

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0


def start(name: str, args: list[str]) -> Server:
    """Start `python ARGS` listening on a free port (passed as $BENCH_PORT)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        env={**os.environ, "BENCH_PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return Server(name, port, process)
        except OSError as exc:
            if process.poll() is not None:
                stderr = process.stderr.read().decode() if process.stderr else ""
                raise RuntimeError(f"{name} exited: {stderr}") from exc
            time.sleep(0.05)
    raise RuntimeError(f"{name} did not start")


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


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


# -- measurements ---------------------------------------------------------------------------


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


# -- the run --------------------------------------------------------------------------------


def us(ns: float) -> str:
    return f"{ns / 1000:.1f} µs"


def ms(ns: float) -> str:
    return f"{ns / 1e6:.2f} ms"


async def run(args: argparse.Namespace) -> list[str]:
    upstream = start("upstream", ["-m", "bench.upstream"])
    up_url = f"http://127.0.0.1:{upstream.port}/v1"
    proxies = {"proxy": start("proxy", ["-m", "bench.serve", "proxy", up_url])}
    proxies["bare"] = start("bare", ["-m", "bench.serve", "bare", up_url])
    proxies["stack"] = start("stack", ["-m", "bench.serve", "stack", up_url])
    proxies["floor"] = start("floor", ["-m", "bench.serve", "floor", up_url])
    for name in args.transports:
        proxies[f"proxy[{name}]"] = start(name, ["-m", "bench.serve", f"proxy-{name}", up_url])
    direct = Server("direct", upstream.port, upstream.process)
    proxy = proxies["proxy"]
    lines: list[str] = []

    def say(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    try:
        await asyncio.sleep(0.5)
        idle = proxy.rss_mb()
        say(
            f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
            f"{platform.python_version()}, {platform.system()} {platform.release()}"
        )
        say(f"command: python -m bench {' '.join(sys.argv[1:])}".rstrip())
        say("")
        for api, path in (("chat", CHAT), ("responses", RESPONSES)):
            targets = {"direct": direct, **proxies}
            lat = await latency(targets, path, args.rounds)
            base = lat["direct"]
            say(f"### {api}: pass-through, {args.rounds} interleaved rounds of requests")
            say(
                "| target | TTFT p50 | TTFT p99 | added TTFT p50 | added TTFT p50, warm | "
                "chunk latency p50 | chunk p99 | added per chunk p50 | CPU per chunk | errors |"
            )
            say("|---|---|---|---|---|---|---|---|---|---|")
            for name, fig in lat.items():
                cpu = "-"
                if name not in ("direct", "stack", "floor"):
                    cpu = us(await cpu_per_chunk(targets[name], path, args.cpu_requests, 500))
                say(
                    f"| {name} | {ms(fig['ttft_p50'])} | {ms(fig['ttft_p99'])} | "
                    f"{ms(fig['ttft_p50'] - base['ttft_p50'])} | "
                    f"{ms(fig['warm_p50'] - base['warm_p50'])} | {us(fig['chunk_p50'])} | "
                    f"{us(fig['chunk_p99'])} | {us(fig['chunk_p50'] - base['chunk_p50'])} | "
                    f"{cpu} | {fig['errors']} |"
                )
            loop = await tool_loop(proxy, upstream, path, args.tool_requests)
            say(
                f"\n{api}, server-tool round ({args.tool_requests} requests, instant tool): "
                f"turnaround p50 {ms(loop['turnaround_p50'])}, p99 "
                f"{ms(loop['turnaround_p99'])} (last call fragment written upstream → next "
                f"request read upstream); TTFT through both rounds p50 "
                f"{ms(loop['ttft_p50'])}; errors {loop['errors']}"
            )
            say("")
        say(
            f"### concurrency: 20 chunks per stream, one every {args.interval} ms "
            f"(stall = a gap over {2 * args.interval} ms)"
        )
        say(
            "| streams | api | target | errors | stalled streams | max gap | chunk p50 | "
            "chunk p99 |"
        )
        say("|---|---|---|---|---|---|---|---|")
        for streams in args.streams:
            for api, path in (("chat", CHAT), ("responses", RESPONSES)):
                for name, target in (
                    ("direct", direct),
                    ("bare", proxies["bare"]),
                    ("proxy", proxy),
                ):
                    c = await concurrency(target, path, streams, args.interval)
                    say(
                        f"| {streams} | {api} | {name} | {c['errors']} | {c['stalls']} | "
                        f"{c['max_gap_ms']:.1f} ms | {us(c['chunk_p50'])} | "
                        f"{us(c['chunk_p99'])} |"
                    )
        await soak(proxy, args.soak, 32)
        first = proxy.rss_mb()
        await soak(proxy, args.soak, 32)
        second = proxy.rss_mb()
        say("")
        say(
            f"memory (proxy RSS): idle {idle:.1f} MB; after {args.soak} mixed requests "
            f"{first:.1f} MB; after {args.soak} more {second:.1f} MB "
            f"(growth {second - first:+.1f} MB)"
        )
    finally:
        for server in [*proxies.values(), upstream]:
            server.process.terminate()
        for server in [*proxies.values(), upstream]:
            server.process.wait(10)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--rounds", type=int, default=200, help="interleaved latency requests")
    parser.add_argument("--cpu-requests", type=int, default=40, help="requests x 500 chunks")
    parser.add_argument("--tool-requests", type=int, default=200)
    parser.add_argument("--streams", type=int, nargs="+", default=[100, 250, 500, 1000])
    parser.add_argument("--interval", type=int, default=100, help="ms between chunks")
    parser.add_argument("--soak", type=int, default=5000, help="requests per soak")
    parser.add_argument(
        "--transports",
        nargs="*",
        default=[],
        help="also measure the proxy on these upstream transports: httpx, aiohttp",
    )
    parser.add_argument("--output", help="also write the tables to this file")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    lines = asyncio.run(run(args))
    if args.output:
        Path(args.output).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
