"""Cost as the work grows (DESIGN §7, growth): the time the proxy adds to the first token
against the request's size, the number of server tools registered and the rounds of a
request — each against the same work done direct — and the proxy's memory per open, idle
stream. Each table has a column of the cost per unit of work beyond its first row: the same
(or falling) down the table is linear, rising is worse."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import subprocess
from collections.abc import Callable, Iterator, Sequence
from math import nan
from typing import Any

from bench.client import Connection
from bench.figures import ms, pct, us
from bench.measure import CHAT, RESPONSES
from bench.processes import Server, start
from bench.serve import bench_echo, catalogue
from proxy.tools.tool import Tool

CHUNKS = 20
WARM_UP = 5
# The call the bench upstream makes in a tool round (`bench.upstream`), and its echoed result.
CALL_ID, ARGUMENTS, OUTPUT = "call_bench", '{"text": "hello world"}', "hello world"
PROSE = (
    "the model answered with a summary of the report, and the user asked for the figures "
    'behind it: revenue rose "sharply" in the third quarter — 12% year on year — while '
    "costs fell; café naïve résumé\nwhich region grew fastest, and why did the forecast miss?"
)
WORDS = PROSE.split(" ")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This section's options."""
    group = parser.add_argument_group("growth (cost as the work grows)")
    group.add_argument(
        "--growth-sizes", type=int, nargs="*", default=[1, 10, 100, 1000], help="history, KB"
    )
    group.add_argument(
        "--growth-tools", type=int, nargs="*", default=[1, 10, 100, 500], help="tools registered"
    )
    group.add_argument(
        "--growth-rounds", type=int, nargs="*", default=[1, 2, 4, 8], help="server-tool rounds"
    )
    group.add_argument(
        "--growth-rounds-kb", type=int, default=10, help="history of the rounds table, KB"
    )
    group.add_argument(
        "--growth-requests", type=int, default=200, help="interleaved requests per figure"
    )
    group.add_argument(
        "--growth-streams",
        type=int,
        nargs="*",
        default=[1000, 10000],
        help="idle streams open at once (at most what the open-file limit allows)",
    )
    group.add_argument(
        "--growth-stream-kb",
        type=int,
        nargs="+",
        default=[1, 100],
        help="history of an idle stream, KB (those after the first at the first count only)",
    )


async def section(
    upstream: Server, up_url: str, say: Callable[[str], None], args: argparse.Namespace
) -> None:
    """Measure, and `say` the tables."""
    limit = raise_fd_limit()  # before any process starts: they inherit it
    direct = Server("direct", upstream.port, upstream.process)
    n = args.growth_requests
    if args.growth_sizes:
        await size_table(direct, up_url, say, args.growth_sizes, n)
    if args.growth_tools:
        await tools_table(direct, up_url, say, args.growth_tools, n)
    if args.growth_rounds:
        await rounds_table(direct, up_url, say, args.growth_rounds, args.growth_rounds_kb, n)
    if args.growth_streams:
        await memory_table(say, args.growth_streams, args.growth_stream_kb, limit)


def raise_fd_limit() -> int:
    """The soft limit on open files raised to the hard one (for this process and those it
    starts); the limit now."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


@contextlib.contextmanager
def serving(kind: str, up_url: str, tools: int = 1, max_rounds: int = 8) -> Iterator[Server]:
    """A `bench.serve` process of its own (`proxy` with `tools` server tools registered and
    `max_rounds`, or `stack`), stopped when done."""
    env = {"BENCH_TOOLS": str(tools), "BENCH_MAX_ROUNDS": str(max_rounds)}
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)  # `start` passes the environment on
    try:
        server = start(f"{kind}[{tools} tools]", ["-m", "bench.serve", kind, up_url])
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name)
            else:
                os.environ[name] = value
    try:
        yield server
    finally:
        server.process.terminate()
        try:
            server.process.wait(10)
        except subprocess.TimeoutExpired:  # still draining streams: no need to wait
            server.process.kill()
            server.process.wait(10)


# Requests


def history(kb: int, path: str) -> list[dict[str, Any]]:
    """A conversation of about `kb` KB of JSON (turns of 0.2-2 KB of prose, with quotes,
    newlines and accents), ending with the user's question."""
    rng = random.Random(kb)
    items: list[dict[str, Any]] = []
    size, target = 0, kb * 1024
    while size < target - 64:
        text = " ".join(rng.choices(WORDS, k=rng.randint(30, 300)))
        item = {"role": ("user", "assistant")[len(items) % 2], "content": text}
        if path == RESPONSES:
            item = {"type": "message", **item}
        frame = len(json.dumps({**item, "content": ""}))
        item["content"] = text.encode()[: target - size - frame].decode("utf-8", "ignore")
        items.append(item)
        size += len(json.dumps(item, ensure_ascii=False).encode())
    items.append({"role": "user", "content": "Say something."})
    return items


def body(path: str, items: list[dict[str, Any]], tools: Sequence[Tool] = ()) -> dict[str, Any]:
    """A streaming request with `items` as its history, offering `tools` as the proxy
    would offer them (a direct request carries the tools the proxy adds)."""
    if path == CHAT:
        request: dict[str, Any] = {"model": "bench", "stream": True, "messages": items}
        specs: list[dict[str, Any]] = [
            {"type": "function", "function": t.openai_function()} for t in tools
        ]
    else:
        request = {"model": "bench", "stream": True, "input": items}
        specs = [{"type": "function", **t.openai_function(), "strict": t.strict} for t in tools]
    if specs:
        request["tools"] = specs
    return request


def answered(path: str, items: list[dict[str, Any]], rounds: int) -> list[dict[str, Any]]:
    """`items` followed by `rounds` of the upstream's call and its result, as a client
    running the rounds itself sends them."""
    if path == CHAT:
        call = {"name": "bench_echo", "arguments": ARGUMENTS}
        turn: list[dict[str, Any]] = [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": CALL_ID, "type": "function", "function": call}],
            },
            {"role": "tool", "tool_call_id": CALL_ID, "content": OUTPUT},
        ]
    else:
        turn = [
            {
                "type": "function_call",
                "id": "fc_bench",
                "call_id": CALL_ID,
                "name": "bench_echo",
                "arguments": ARGUMENTS,
                "status": "completed",
            },
            {"type": "function_call_output", "call_id": CALL_ID, "output": OUTPUT},
        ]
    return [*items, *(turn * rounds)]


# Time to first token


Target = tuple[Server, list[dict[str, Any]]]  # a server, and the requests of one turn


async def compare(
    targets: dict[str, Target], path: str, rounds: int, requests: int
) -> dict[str, dict[str, float]]:
    """Time to first token of a request whose upstream asks for `rounds` server-tool rounds,
    at each target, interleaved: a target's turn sends its requests one after the other —
    each call round whole, then the text round to its first token (direct, that is a client
    running the rounds itself, with no time of its own). p50s, each server's CPU time per
    turn (direct's would be the upstream's: not read), and the turns that failed."""
    scenario = {"x-bench": f"chunks={CHUNKS};tool={rounds}"}
    conns = {name: Connection("127.0.0.1", server.port) for name, (server, _) in targets.items()}
    times: dict[str, list[float]] = {name: [] for name in targets}
    cpu: dict[str, int] = {}
    errors = 0
    order = list(targets)
    for i in range(requests + WARM_UP):
        if i == WARM_UP:
            cpu = {name: server.cpu_ns() for name, (server, _) in targets.items()}
        random.shuffle(order)
        for name in order:
            bodies = targets[name][1]
            spent = 0
            for n, request in enumerate(bodies):
                r = await conns[name].request(path, request, scenario)
                last = n == len(bodies) - 1
                if r.error or (last and len(r.chunk_latency_ns) != CHUNKS):
                    errors += 1
                    break
                spent += (r.first_content if last else r.ended) - r.started
            else:
                if i >= WARM_UP:
                    times[name].append(spent)
    for conn in conns.values():
        conn.close()
    figures = {
        name: {
            "ttft": pct(times[name], 50),
            "cpu": (server.cpu_ns() - cpu[name]) / requests if name != "direct" else nan,
        }
        for name, (server, _) in targets.items()
    }
    for name in targets:
        figures[name]["added"] = figures[name]["ttft"] - figures["direct"]["ttft"]
    figures["direct"]["errors"] = errors
    return figures


def pair(
    proxy: Server,
    direct: Server,
    path: str,
    items: list[dict[str, Any]],
    tools: list[Tool],
    rounds: int,
) -> dict[str, Target]:
    """The proxy given the client's request; direct, the requests the upstream gets from it."""
    return {
        "proxy": (proxy, [body(path, items)]),
        "direct": (
            direct,
            [body(path, answered(path, items, i), tools) for i in range(rounds + 1)],
        ),
    }


def per_unit(added: float, first: tuple[float, float] | None, units: float, unit: str) -> str:
    """The added time per unit of work beyond the first row's: the same on every row is
    linear, rising is worse."""
    if first is None:
        return "—"
    base, base_units = first
    return f"{(added - base) / (units - base_units) / 1000:.2f} µs/{unit}"


async def size_table(
    direct: Server, up_url: str, say: Callable[[str], None], sizes: list[int], requests: int
) -> None:
    say("")
    say(
        f"### growth: request size (message history), streaming, {requests} interleaved "
        "requests a figure, p50 (stack: the proxy's server and transport relaying the bytes, "
        "no logic)"
    )
    say(
        "| history | api | direct TTFT | proxy TTFT | added TTFT | stack added | "
        "proxy CPU per request | added per KB (beyond the first row) | errors |"
    )
    say("|---|---|---|---|---|---|---|---|---|")
    with serving("proxy", up_url) as proxy, serving("stack", up_url) as stack:
        for api, path, rounds in (
            ("chat", CHAT, 0),
            ("chat, 1 tool round", CHAT, 1),
            ("responses", RESPONSES, 0),
        ):
            first = None
            for kb in sizes:
                targets = pair(proxy, direct, path, history(kb, path), [bench_echo], rounds)
                if not rounds:  # the stack relays the upstream's request, and has no rounds
                    targets["stack"] = (stack, targets["direct"][1])
                fig = await compare(targets, path, rounds, requests)
                added = fig["proxy"]["added"]
                floor = ms(fig["stack"]["added"]) if "stack" in fig else "—"
                say(
                    f"| {kb:,} KB | {api} | {ms(fig['direct']['ttft'])} | "
                    f"{ms(fig['proxy']['ttft'])} | {ms(added)} | {floor} | "
                    f"{us(fig['proxy']['cpu'])} | {per_unit(added, first, kb, 'KB')} | "
                    f"{fig['direct']['errors']} |"
                )
                first = first or (added, kb)


async def tools_table(
    direct: Server, up_url: str, say: Callable[[str], None], counts: list[int], requests: int
) -> None:
    say("")
    say(
        "### growth: server tools registered (a proxy process each; the direct requests carry "
        f"the same tool definitions), streaming, {requests} interleaved requests a figure, p50"
    )
    say(
        "| tools | api | definitions sent | direct TTFT | proxy TTFT | added TTFT | "
        "proxy CPU per request | added per tool (beyond the first row) | errors |"
    )
    say("|---|---|---|---|---|---|---|---|---|")
    rows: dict[str, list[str]] = {"chat": [], "responses": []}
    first: dict[str, tuple[float, float] | None] = {"chat": None, "responses": None}
    for count in counts:
        tools = [bench_echo, *catalogue(count - 1)]
        with serving("proxy", up_url, tools=count) as proxy:
            for api, path in (("chat", CHAT), ("responses", RESPONSES)):
                items = history(1, path)
                sent = len(json.dumps(body(path, items, tools)["tools"])) / 1024
                fig = await compare(pair(proxy, direct, path, items, tools, 0), path, 0, requests)
                added = fig["proxy"]["added"]
                rows[api].append(
                    f"| {count:,} | {api} | {sent:,.0f} KB | {ms(fig['direct']['ttft'])} | "
                    f"{ms(fig['proxy']['ttft'])} | {ms(added)} | {us(fig['proxy']['cpu'])} | "
                    f"{per_unit(added, first[api], count, 'tool')} | "
                    f"{fig['direct']['errors']} |"
                )
                first[api] = first[api] or (added, count)
    for lines in rows.values():
        for line in lines:
            say(line)


async def rounds_table(
    direct: Server,
    up_url: str,
    say: Callable[[str], None],
    counts: list[int],
    kb: int,
    requests: int,
) -> None:
    say("")
    say(
        f"### growth: server-tool rounds per request ({kb} KB history; direct: the client runs "
        f"the rounds itself, with no time of its own), streaming, {requests} interleaved "
        "requests a figure, p50"
    )
    say(
        "| rounds | api | direct TTFT | proxy TTFT | added TTFT | added per round | "
        "proxy CPU per request | added per round (beyond the first row) | errors |"
    )
    say("|---|---|---|---|---|---|---|---|---|")
    with serving("proxy", up_url, max_rounds=max(counts) + 1) as proxy:
        for api, path in (("chat", CHAT), ("responses", RESPONSES)):
            items = history(kb, path)
            first = None
            for rounds in counts:
                targets = pair(proxy, direct, path, items, [bench_echo], rounds)
                fig = await compare(targets, path, rounds, requests)
                added = fig["proxy"]["added"]
                say(
                    f"| {rounds} | {api} | {ms(fig['direct']['ttft'])} | "
                    f"{ms(fig['proxy']['ttft'])} | {ms(added)} | {ms(added / rounds)} | "
                    f"{us(fig['proxy']['cpu'])} | {per_unit(added, first, rounds, 'round')} | "
                    f"{fig['direct']['errors']} |"
                )
                first = first or (added, rounds)


# Memory per idle stream


class IdleStreams:
    """Streams through a proxy that got their head and first frame, and then nothing."""

    def __init__(self, port: int, path: str, kb: int = 1) -> None:
        self.port, self.path = port, path
        self.data = json.dumps(body(path, history(kb, path))).encode()
        self.writers: list[asyncio.StreamWriter] = []
        self.errors = 0

    async def open(self, count: int, at_once: int = 200) -> None:
        """Open streams until `count` are open (or failed), `at_once` at a time."""
        gate = asyncio.Semaphore(at_once)

        async def one() -> None:
            async with gate:
                try:
                    self.writers.append(await asyncio.wait_for(self._open(), 60))
                except (TimeoutError, OSError, RuntimeError, ValueError):
                    self.errors += 1

        await asyncio.gather(*(one() for _ in range(count - len(self.writers) - self.errors)))

    async def _open(self) -> asyncio.StreamWriter:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(
            f"POST {self.path} HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
            f"authorization: Bearer sk-bench\r\nx-bench: idle=1\r\n"
            f"content-length: {len(self.data)}\r\n\r\n".encode()
            + self.data
        )
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head.split(b"\r\n", 1)[0].decode())
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            await reader.readexactly(size + 2)  # the first frame
        except BaseException:
            writer.close()
            raise
        return writer

    def close(self) -> None:
        for writer in self.writers:
            writer.close()


async def memory_table(
    say: Callable[[str], None], counts: list[int], sizes: list[int], limit: int
) -> None:
    """Streams opened up to each count, the proxy's RSS read with them all open (a fresh
    proxy for each API and history size; a larger history at the first count only). The
    proxy holds two descriptors a stream (the client's, the upstream's): the limit on open
    files bounds how many one process can hold."""
    most = (limit - 200) // 2 // 100 * 100
    targets = sorted({min(count, most) for count in counts})
    say("")
    say(
        "### growth: memory per open idle stream (head and first frame sent, then silence; "
        f"open-file limit {limit:,}: at most {most:,} streams a proxy process)"
    )
    say(
        "| api | history | streams open | proxy RSS | added RSS | per 1,000 streams | "
        "10,000 streams at this rate | errors |"
    )
    say("|---|---|---|---|---|---|---|---|")
    upstream = start("upstream[idle]", ["-m", "bench.upstream"])  # after the limit was raised
    up_url = f"http://127.0.0.1:{upstream.port}/v1"
    after: list[str] = []
    try:
        for api, path in (("chat", CHAT), ("responses", RESPONSES)):
            for n, kb in enumerate(sizes):
                levels = targets if n == 0 else targets[:1]
                with serving("proxy", up_url) as proxy:
                    rows, note = await hold_idle(proxy, path, kb, levels)
                after.append(f"{api}, {kb} KB: {note}")
                for row in rows:
                    say(f"| {api} | {kb:,} KB | {row} |")
    finally:
        upstream.process.terminate()
        upstream.process.wait(10)
    say("")
    say(f"once the clients closed every stream, the proxy: {'; '.join(after)}")


async def hold_idle(proxy: Server, path: str, kb: int, targets: list[int]) -> tuple[list[str], str]:
    """The table's rows for idle streams of `kb` KB requests, opened up to each target; and
    what the proxy holds once they closed, and once as many opened again (a leak grows)."""
    warm = Connection("127.0.0.1", proxy.port)
    for _ in range(50):
        await warm.request(path, body(path, history(kb, path)), {"x-bench": "chunks=20"})
    warm.close()
    await asyncio.sleep(0.5)
    idle = proxy.rss_mb()
    rows = [f"0 | {idle:.1f} MB | | | | "]
    streams = IdleStreams(proxy.port, path, kb)
    try:
        for target in targets:
            await streams.open(target)
            await asyncio.sleep(1)
            rss, held = proxy.rss_mb(), len(streams.writers)
            per = (rss - idle) / (held / 1000) if held else nan
            rows.append(
                f"{held:,} | {rss:.1f} MB | {rss - idle:+.1f} MB | {per:.1f} MB | "
                f"{idle + 10 * per:,.0f} MB | {streams.errors}"
            )
    finally:
        streams.close()
    await asyncio.sleep(2)  # the closes reach the proxy, which lets the streams go
    files = len(os.listdir(f"/proc/{proxy.process.pid}/fd"))
    note = f"{proxy.rss_mb():.1f} MB and {files} open files"
    again = IdleStreams(proxy.port, path, kb)
    try:
        await again.open(len(streams.writers))
        await asyncio.sleep(1)
        note += f", {proxy.rss_mb():.1f} MB with {len(again.writers):,} open again"
    finally:
        again.close()
    await asyncio.sleep(2)
    return rows, note


def main() -> None:
    """`python -m bench.growth`: this section alone, against an upstream of its own."""
    parser = argparse.ArgumentParser(prog="python -m bench.growth", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args()
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    raise_fd_limit()
    upstream = start("upstream", ["-m", "bench.upstream"])
    try:
        asyncio.run(section(upstream, f"http://127.0.0.1:{upstream.port}/v1", print, args))
    finally:
        upstream.process.terminate()
        upstream.process.wait(10)


if __name__ == "__main__":
    main()
