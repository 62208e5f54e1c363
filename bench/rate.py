"""Requests per second per core, and the time a server-tool round adds.

Rate: the most requests per second a proxy sustains with p99 *added* latency under 5 ms —
its p99 minus a direct connection's at the same offered rate. The load is open-loop: requests
start on a fixed schedule whatever the answers (on as many keep-alive connections as that
takes), and each one's latency counts from when it was due, so a server that falls behind
shows it. The rate is searched on a grid (doubled until a step fails, then bisected), each
step a short burst measured after a warm-up. Direct with a server-tool round, the client runs
the round itself (the call round, then the request with its result): what it would do
without the proxy. The client, the upstream and the proxy share this machine's cores, so each
step also reads the CPU each of them used: the table says what limited the rate, and the
client's own ceiling (direct, p99 under 5 ms) is measured too.

Tool round: `bench.measure.tool_loop`'s turnaround (last call fragment written upstream →
next request read upstream, with an instant tool), alone and beside a moderate load.

`python -m bench.rate` runs this section alone; `python -m bench.rate serve UPSTREAM WORKERS
[STORE]` is the proxy it measures: `openai-tool-proxy serve` (`--workers` and all) with the
bench's instant tool registered.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import httptools

from bench.figures import ms, pct
from bench.measure import CHAT, RESPONSES, fetch, tool_loop
from bench.processes import Server, free_port, start

LIMIT_NS = 5_000_000  # p99 added latency a rate must stay under
CHUNKS = 5  # a short answer
GRID = 2 ** (1 / 6)  # rates tried: 100 x GRID**k, ~12% apart
DOUBLE = 6  # grid steps in a doubling
TOP = 48  # 100 x 2**8 rps: beyond anything a process serves here
MAX_CONNECTIONS = 512  # per target: beyond, requests wait for one (long past 5 ms)
TICKS = os.sysconf("SC_CLK_TCK")  # /proc/stat's unit


@dataclass(frozen=True)
class Scenario:
    name: str
    path: str
    stream: bool
    tool: bool

    def plan(self, port: int, direct: bool) -> tuple[bytes, ...]:
        """The requests one client request is: one through the proxy; direct with a tool
        round, two — the call round, then the request with its result."""
        scenario = f"chunks={CHUNKS}" + (";tool=1" if self.tool else "")
        first = encode(port, self.path, self.body(answered=False), scenario)
        if not (direct and self.tool):
            return (first,)
        return (first, encode(port, self.path, self.body(answered=True), scenario))

    def body(self, answered: bool) -> dict:
        arguments = json.dumps({"text": "hello world"})
        if self.path == CHAT:
            messages: list[dict] = [{"role": "user", "content": "Say something."}]
            if answered:
                call = {"name": "bench_echo", "arguments": arguments}
                messages += [
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [{"id": "call_bench", "type": "function", "function": call}],
                    },
                    {"role": "tool", "tool_call_id": "call_bench", "content": "hello world"},
                ]
            return {"model": "bench", "stream": self.stream, "messages": messages}
        given: str | list[dict] = "Say something."
        if answered:
            given = [
                {"role": "user", "content": "Say something."},
                {
                    "type": "function_call",
                    "call_id": "call_bench",
                    "name": "bench_echo",
                    "arguments": arguments,
                },
                {"type": "function_call_output", "call_id": "call_bench", "output": "hello world"},
            ]
        return {"model": "bench", "stream": self.stream, "input": given}


SCENARIOS = {
    "chat": Scenario("chat, non-streaming", CHAT, stream=False, tool=False),
    "chat-tool": Scenario("chat, non-streaming, 1 tool round", CHAT, stream=False, tool=True),
    "chat-stream": Scenario("chat, streaming", CHAT, stream=True, tool=False),
    "chat-stream-tool": Scenario("chat, streaming, 1 tool round", CHAT, stream=True, tool=True),
    "responses-stream": Scenario("responses, streaming", RESPONSES, stream=True, tool=False),
    "responses-stream-tool": Scenario(
        "responses, streaming, 1 tool round", RESPONSES, stream=True, tool=True
    ),
}


def encode(port: int, path: str, body: dict, scenario: str) -> bytes:
    """One request, encoded once: the load only writes bytes. Compact JSON, as the proxy
    sends it upstream (the bench upstream finds `"stream":true` in the bytes)."""
    data = json.dumps(body, separators=(",", ":")).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\n"
        f"authorization: Bearer sk-bench\r\nx-bench: {scenario}\r\n"
        f"content-length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


@dataclass(slots=True)
class Job:
    plan: tuple[bytes, ...]
    due: int  # monotonic ns: when the request was to start


class Client(asyncio.Protocol):
    """One keep-alive connection of the load: writes a job's requests one after the other and
    parses the answers with httptools, counting the answer's timestamps (`t=`) — no task, no
    future, no copy of the body."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.job: Job | None = None
        self.step = 0
        self.marks = 0
        self.last = 0  # the last byte of the body so far: a `t=` may straddle two reads

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's: not asyncio's class
        self.pool.ready(self)

    def send(self, job: Job) -> None:
        assert self.transport is not None
        self.job, self.step = job, 0
        self.marks = self.last = 0
        self.transport.write(job.plan[0])

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.abort()

    def on_body(self, body: bytes) -> None:
        self.marks += body.count(b"t=") + (self.last == 116 and body[0] == 61)  # "t" | "="
        self.last = body[-1]

    def on_message_complete(self) -> None:
        job = self.job
        assert job is not None and self.transport is not None
        ok = self.parser.get_status_code() == 200
        self.step += 1
        if ok and self.step < len(job.plan):
            self.marks = self.last = 0
            self.transport.write(job.plan[self.step])
            return
        self.job = None
        self.pool.finish(job, ok and self.marks == CHUNKS)
        self.pool.release(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.pool.lost(self)


class Pool:
    """The load's connections to one server, opened as the load needs them (up to
    `MAX_CONNECTIONS`); a job that finds none free waits for one, its clock running."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: deque[Client] = deque()  # FIFO: every connection (every worker) gets work
        self.waiting: deque[Job] = deque()
        self.connections: set[Client] = set()
        self.opening = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.outcomes: list[tuple[int, int, bool]] = []  # due, latency, answered right
        self.outstanding = 0
        self.settled = asyncio.Event()

    def submit(self, job: Job) -> None:
        self.outstanding += 1
        self.settled.clear()
        if self.idle:
            self.idle.popleft().send(job)
            return
        self.waiting.append(job)
        if self.opening < len(self.waiting) and (
            len(self.connections) + self.opening < MAX_CONNECTIONS
        ):
            self.opening += 1
            task = asyncio.get_running_loop().create_task(self._connect())
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.create_connection(lambda: Client(self), "127.0.0.1", self.port)
        except OSError:
            self.opening -= 1
            if self.waiting:
                self.finish(self.waiting.popleft(), False)

    def ready(self, client: Client) -> None:
        self.opening -= 1
        self.connections.add(client)
        self.release(client)

    def release(self, client: Client) -> None:
        if self.waiting:
            client.send(self.waiting.popleft())
        else:
            self.idle.append(client)

    def finish(self, job: Job, ok: bool) -> None:
        self.outcomes.append((job.due, time.monotonic_ns() - job.due, ok))
        self.outstanding -= 1
        if not self.outstanding:
            self.settled.set()

    def lost(self, client: Client) -> None:
        self.connections.discard(client)
        if client in self.idle:
            self.idle.remove(client)
        if client.job is not None:
            self.finish(client.job, False)
            client.job = None

    async def warm(self, count: int) -> None:
        """Open `count` connections before the load, so that it measures no handshakes."""
        loop = asyncio.get_running_loop()
        for _ in range(count - len(self.connections)):
            self.opening += 1
            await loop.create_connection(lambda: Client(self), "127.0.0.1", self.port)

    def close(self) -> None:
        for client in list(self.connections):
            if client.transport is not None:
                client.transport.abort()


def threads(pid: int) -> Iterator[Path]:
    """The /proc entries of every thread of a process and of its children (a supervisor's
    workers)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        yield task
        try:
            children = (task / "children").read_text().split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        for child in children:
            yield from threads(int(child))


def tree_cpu_ns(pid: int) -> int:
    """CPU time of a process, its threads and its children so far."""
    total = 0
    for task in threads(pid):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += int((task / "schedstat").read_text().split()[0])
    return total


def machine_cpu_ns() -> int:
    """CPU time every core spent busy so far, whoever used it (/proc/stat)."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) * 1_000_000_000 // TICKS


@dataclass
class Step:
    rate: int
    p99: int = 0
    count: int = 0  # requests measured
    errors: int = 0
    cores: dict[str, float] = field(default_factory=dict)  # CPU used: name -> cores


class Target:
    """A server under load: its connections, and the processes whose CPU a step reads."""

    def __init__(self, name: str, port: int, watched: dict[str, int]) -> None:
        self.name, self.port, self.watched = name, port, watched
        self.pool = Pool(port)

    def cpu(self) -> dict[str, int]:
        used = {name: tree_cpu_ns(pid) for name, pid in self.watched.items()}
        return {**used, "client": time.process_time_ns(), "machine": machine_cpu_ns()}

    async def offer(
        self, plan: tuple[bytes, ...], rate: int, seconds: float, stop: asyncio.Event | None = None
    ) -> Step:
        """`rate` requests a second on schedule for a warm-up and `seconds` (or until `stop`);
        their latency from when each was due, and the CPU each process used meanwhile."""
        period = 1_000_000_000 // rate
        warm = max(1, int(rate * 0.25))
        count = warm + max(int(rate * seconds), 300)
        pool = self.pool
        pool.outcomes = []
        begin = time.monotonic_ns() + 1_000_000
        before: dict[str, int] = {}
        opened = ended = 0
        sent = 0
        gc.disable()  # no pause of the client's in a measurement: it collects in between
        try:
            while sent < count or (stop is not None and not stop.is_set()):
                now = time.monotonic_ns()
                while begin + sent * period <= now and (stop is not None or sent < count):
                    if sent == warm:
                        before, opened = self.cpu(), now
                    pool.submit(Job(plan, begin + sent * period))
                    sent += 1
                await asyncio.sleep(0.001)  # uvloop's timers are milliseconds: a tick of them
            after, ended = self.cpu(), time.monotonic_ns()
            try:
                await asyncio.wait_for(pool.settled.wait(), 10)
            except TimeoutError:  # hopelessly behind: what is left counts as failed
                pool.close()
                self.pool = Pool(self.port)
        finally:
            gc.enable()
        measured = [o for o in pool.outcomes if o[0] >= begin + warm * period]
        latencies = [latency for _, latency, ok in measured if ok]
        errors = len(measured) - len(latencies) + max(0, sent - warm - len(measured))
        cores = {k: (after[k] - before[k]) / max(ended - opened, 1) for k in after}
        machine = cores.pop("machine")
        other = machine - sum(cores.values())  # not ours: other processes', the kernel's
        if other >= 0.05:  # /proc/stat counts in ticks: less is its rounding
            cores["other"] = other
        return Step(
            rate,
            p99=int(pct(latencies, 99)) if latencies else 0,
            count=sent - warm,
            errors=errors,
            cores=cores,
        )

    def close(self) -> None:
        self.pool.close()


def grid(k: int) -> int:
    return round(100 * GRID**k)


def index(rate: int) -> int:
    """The grid index nearest `rate`."""
    return min(TOP, max(0, round(math.log(rate / 100, GRID))))


async def highest(passes: Callable[[int], Awaitable[bool]], first: int) -> tuple[int, int]:
    """The highest grid index that passes and the one above it, which fails (-1 when even
    the lowest fails, TOP + 1 when none fails): doubling up from a pass or halving down from
    a failure, starting at `first`, then bisecting."""
    low, high = -1, TOP + 1
    k = first
    while low < k < high and 0 <= k <= TOP:
        if await passes(k):
            low, k = k, k + DOUBLE
        else:
            high, k = k, k - DOUBLE
    while high - low > 1:
        mid = (low + high) // 2
        if await passes(mid):
            low = mid
        else:
            high = mid
    return low, high


@dataclass
class Found:
    """One setup's search: the highest passing step and the first failing one."""

    setup: str
    workers: int  # proxy processes: 0 for the direct connection
    best: Step | None
    failed: Step | None
    direct_failed: bool = False


def within(step: Step, base: Step | None = None, slack: int = 1) -> bool:
    """No error, and p99 under the limit (times `slack`): added to `base`'s, or in all
    without one. Errors may be up to `slack` - 1 in a thousand."""
    errors = step.errors <= (slack - 1) * step.count / 1000
    return errors and step.p99 - (base.p99 if base else 0) < LIMIT_NS * slack


class Search:
    """The searches of one scenario, sharing the direct steps (one per grid rate). A direct
    step that fails, or a proxy's that fails narrowly, is run once more — it fails only if
    it fails again: one burst of noise from elsewhere on the machine must not end a search."""

    def __init__(self, scenario: Scenario, direct: Target, seconds: float) -> None:
        self.scenario, self.direct, self.seconds = scenario, direct, seconds
        self.direct_steps: dict[int, Step] = {}

    async def step(self, target: Target, k: int, base: Step | None = None) -> Step:
        plan = self.scenario.plan(target.port, direct=target is self.direct)
        step = await target.offer(plan, grid(k), self.seconds)
        near = within(step, base, slack=4)  # a proxy far off is over its capacity: no retry
        if not within(step, base) and (near or target is self.direct):
            step = await target.offer(plan, grid(k), self.seconds)
        return step

    async def direct_step(self, k: int) -> Step:
        if k not in self.direct_steps:
            self.direct_steps[k] = await self.step(self.direct, k)
        return self.direct_steps[k]

    async def ceiling(self, first: int) -> Found:
        """The client's own ceiling: direct, p99 under the limit."""
        steps: dict[int, Step] = {}

        async def passes(k: int) -> bool:
            steps[k] = step = await self.direct_step(k)
            return within(step)

        low, high = await highest(passes, first)
        return Found("direct (client + upstream)", 0, steps.get(low), steps.get(high))

    async def proxy(self, target: Target, workers: int, first: int) -> Found:
        """The proxy's highest rate: p99 added under the limit, no error."""
        steps: dict[int, Step] = {}
        direct_failed: set[int] = set()

        async def passes(k: int) -> bool:
            base = await self.direct_step(k)
            if not within(base):
                direct_failed.add(k)
                return False
            step = await self.step(target, k, base)
            step.p99 -= base.p99
            steps[k] = step
            return within(step)

        low, high = await highest(passes, first)
        failed = high in direct_failed
        return Found(target.name, workers, steps.get(low), steps.get(high), failed)


def limit(found: Found) -> str:
    """What stopped the rate: read from the CPU of the first step that failed."""
    if found.direct_failed:
        return "the client + upstream: direct fails at the next rate too"
    step = found.failed
    if step is None:
        return "none found (the grid's top)" if found.best else "-"
    cores, machine = step.cores, os.cpu_count() or 1
    busy = sum(cores.values())
    split = ", ".join(f"{name} {used:.2f}" for name, used in cores.items())
    if found.workers and cores.get("proxy", 0) >= 0.7 * found.workers:
        why = "proxy CPU"  # near saturation, requests queue in it: p99 goes first
    elif busy >= 0.85 * machine:
        why = "every core busy"
    else:
        why = "p99 before any core saturated"
    errors = f", {step.errors} errors" if step.errors else ""
    return f"{why} at {step.rate} rps: {busy:.2f} of {machine} cores used ({split}){errors}"


def row(scenario: str, found: Found) -> str:
    best = found.best
    if best is None:
        return f"| {scenario} | {found.setup} | - | - | - | - | {limit(found)} |"
    if not found.workers:
        used = ", ".join(f"{n} {c:.2f}" for n, c in best.cores.items())
        return (
            f"| {scenario} | {found.setup} | {best.rate} | p99 {ms(best.p99)} | - | - | "
            f"{limit(found)}; at {best.rate}: {used} |"
        )
    cores = best.cores.get("proxy", 0.0)
    return (
        f"| {scenario} | {found.setup} | {best.rate} | {ms(best.p99)} | {cores:.2f} | "
        f"{best.rate / max(cores, 0.01):.0f} | {limit(found)} |"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This section's options."""
    group = parser.add_argument_group("requests per second, tool-round overhead")
    group.add_argument(
        "--rate-scenarios",
        nargs="*",
        choices=list(SCENARIOS),
        default=list(SCENARIOS),
        help="rate scenarios (none: skip the rate search)",
    )
    group.add_argument("--rate-seconds", type=float, default=1.0, help="seconds per rate step")
    group.add_argument("--rate-start", type=int, default=400, help="rps the search starts at")
    group.add_argument("--rate-workers", type=int, default=2, help="also with --workers N (0: not)")
    group.add_argument(
        "--overhead-requests", type=int, default=300, help="tool-round requests per figure"
    )
    group.add_argument(
        "--overhead-load",
        type=float,
        default=0.5,
        help="the moderate load: this share of the streaming rate one process sustains",
    )


def start_redis() -> tuple[subprocess.Popen[bytes] | None, str]:
    """A throwaway Redis for `--workers` (it needs a shared store), or None and why not."""
    binary = shutil.which("redis-server")
    if binary is None:
        return None, "redis-server is not installed (--workers needs a redis:// store)"
    port = free_port()
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen([binary, *args], stdout=subprocess.DEVNULL)
    return process, f"redis://127.0.0.1:{port}"


async def ready(port: int) -> None:
    """Until the proxy answers /health (its workers started)."""
    deadline = time.monotonic() + 20
    while True:
        try:
            await asyncio.wait_for(fetch(port, "/health"), 1)
            return
        except (OSError, ValueError, IndexError, TimeoutError, asyncio.IncompleteReadError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def overhead(
    proxy: Server, target: Target, upstream: Server, path: str, requests: int, load: int
) -> dict:
    """`tool_loop`'s turnaround, with `load` rps of plain streams beside it (0: alone)."""
    await fetch(upstream.port, "/turnaround")  # forget rounds the rate steps recorded
    if not load:
        return await tool_loop(proxy, upstream, path, requests)
    stop = asyncio.Event()
    plan = Scenario("", path, stream=True, tool=False).plan(target.port, direct=False)
    background = asyncio.create_task(target.offer(plan, load, 0, stop))
    await asyncio.sleep(0.5)  # the load under way
    try:
        return await tool_loop(proxy, upstream, path, requests)
    finally:
        stop.set()
        await background


async def section(
    upstream: Server, up_url: str, say: Callable[[str], None], args: argparse.Namespace
) -> None:
    """Measure, and `say` the tables."""
    started: list[subprocess.Popen[bytes]] = []
    targets: list[Target] = []
    try:
        single = start("proxy", ["-m", "bench.rate", "serve", up_url, "1"])
        started.append(single.process)
        setups: dict[str, tuple[Server, int, dict[str, int]]] = {"1 process": (single, 1, {})}
        absent = ""
        if args.rate_workers > 1:
            redis, store = start_redis()
            if redis is None:
                absent = f"--workers {args.rate_workers}: skipped, {store}"
            else:
                started.append(redis)
                command = ["-m", "bench.rate", "serve", up_url, str(args.rate_workers), store]
                many = start("workers", command)
                started.append(many.process)
                setups[f"--workers {args.rate_workers}"] = (
                    many,
                    args.rate_workers,
                    {"redis": redis.pid},  # its store: what it costs, in the cores used
                )
        for server, _, _ in setups.values():
            await ready(server.port)
        watched = {"upstream": upstream.process.pid}
        direct = Target("direct", upstream.port, watched)
        proxies = {
            setup: (Target(setup, server.port, {"proxy": server.process.pid, **more, **watched}), n)
            for setup, (server, n, more) in setups.items()
        }
        one = proxies["1 process"][0]
        targets = [direct, *(target for target, _ in proxies.values())]
        for target in targets:  # connections open, the upstream pool filled, code paths warm
            await target.pool.warm(64)
            for key in ("chat-stream-tool", "responses-stream-tool"):
                await target.offer(SCENARIOS[key].plan(target.port, target is direct), 400, 0)

        apis = (("chat", CHAT), ("responses", RESPONSES))
        alone = {
            api: await overhead(single, one, upstream, path, args.overhead_requests, 0)
            for api, path in apis
        }
        found: dict[str, list[Found]] = {}
        streaming = {CHAT: 400, RESPONSES: 400}  # rps one process sustains: found below
        for key in args.rate_scenarios:
            scenario = SCENARIOS[key]
            print(f"rate: {scenario.name}", file=sys.stderr, flush=True)
            search = Search(scenario, direct, args.rate_seconds)
            results = [await search.proxy(one, 1, index(args.rate_start))]
            best = results[0].best
            first = index(best.rate if best else args.rate_start)
            if best is not None and scenario.stream and not scenario.tool:
                streaming[scenario.path] = best.rate
            for target, count in proxies.values():
                if target is not one:
                    results.append(await search.proxy(target, count, first))
            results.insert(0, await search.ceiling(max([first, *search.direct_steps])))
            found[key] = results
        loaded = {
            api: await overhead(single, one, upstream, path, args.overhead_requests, load)
            for api, path in apis
            if (load := int(args.overhead_load * streaming[path]))
        }

        if found:
            say(
                f"### requests per second with p99 added latency under {ms(LIMIT_NS)} "
                f"(open-loop load, answers of {CHUNKS} chunks, steps of {args.rate_seconds:g} s)"
            )
            if absent:
                say(absent)
            say(
                "| scenario | setup | rps | p99 added | proxy CPU (cores) | rps per proxy core | "
                "limited by |"
            )
            say("|---|---|---|---|---|---|---|")
            for key, results in found.items():
                for result in results:
                    say(row(SCENARIOS[key].name, result))
            say("")
        say(
            "### server-tool round: the time it adds beyond the upstream's and the tool's "
            "(instant tool, one process)"
        )
        say(
            "Turnaround at the upstream: the call round's last byte written → the next "
            "round's request read."
        )
        say("| api | load beside it | turnaround p50 | turnaround p99 | requests | errors |")
        say("|---|---|---|---|---|---|")
        for api, path in apis:
            figures = [("none", alone[api])]
            if api in loaded:
                load = int(args.overhead_load * streaming[path])
                figures.append((f"{load} rps of streams", loaded[api]))
            for load_name, fig in figures:
                say(
                    f"| {api} | {load_name} | {ms(fig['turnaround_p50'])} | "
                    f"{ms(fig['turnaround_p99'])} | {args.overhead_requests} | {fig['errors']} |"
                )
    finally:
        for target in targets:
            target.close()
        for process in started:
            process.terminate()
        for process in started:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


def serve(upstream: str, workers: int, store: str) -> int:
    """The proxy measured: `openai-tool-proxy serve` with the bench's instant tool; per-request
    log lines off, as for every server the bench runs."""
    from bench.serve import bench_echo
    from proxy.cli import serve as cli_serve
    from proxy.config import Settings
    from proxy.tools.registry import Registry

    settings = Settings(
        upstream=upstream,
        port=int(os.environ["BENCH_PORT"]),
        workers=workers,
        store=store,
        log_level="warning",
        drain_timeout=1,
    )
    return cli_serve(settings, Registry.of(bench_echo, plugin="bench"))


def main() -> None:
    if sys.argv[1:2] == ["serve"]:
        upstream, workers, *store = sys.argv[2:]
        sys.exit(serve(upstream, int(workers), store[0] if store else "memory"))
    parser = argparse.ArgumentParser(prog="python -m bench.rate", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args()
    import uvloop

    uvloop.install()

    async def run() -> None:
        upstream = start("upstream", ["-m", "bench.upstream"])
        try:
            url = f"http://127.0.0.1:{upstream.port}/v1"
            await section(upstream, url, lambda line: print(line, flush=True), args)
        finally:
            upstream.process.terminate()
            upstream.process.wait(10)

    asyncio.run(run())


if __name__ == "__main__":
    main()
