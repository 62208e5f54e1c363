"""`python -m bench`: the proxy against a direct connection, a bare pass-through proxy and
two floors (its own stack with no logic, and a byte pipe), in one interleaved run on
loopback, with the figures of DESIGN §7. See the README's Performance section for what each
figure means."""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
from pathlib import Path

from bench import growth, peer, rate
from bench.figures import ms, us
from bench.measure import (
    CHAT,
    RESPONSES,
    concurrency,
    cpu_per_chunk,
    latency,
    soak,
    tool_loop,
)
from bench.processes import Server, start


async def run(args: argparse.Namespace) -> list[str]:
    upstream = start("upstream", ["-m", "bench.upstream"])
    up_url = f"http://127.0.0.1:{upstream.port}/v1"
    proxies = {"proxy": start("proxy", ["-m", "bench.serve", "proxy", up_url])}
    proxies["bare"] = start("bare", ["-m", "bench.serve", "bare", up_url])
    proxies["stack"] = start("stack", ["-m", "bench.serve", "stack", up_url])
    proxies["floor"] = start("floor", ["-m", "bench.serve", "floor", up_url])
    for name in args.transports:
        proxies[f"proxy[{name}]"] = start(name, ["-m", "bench.serve", f"proxy-{name}", up_url])
    litellm, absent = peer.start_peer(up_url)
    if litellm is not None:
        proxies["litellm"] = litellm
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
        if absent:
            say(absent)
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
                compared = ("direct", "bare", "proxy", "litellm")
                for name, target in [("direct", direct), *proxies.items()]:
                    if name not in compared:
                        continue
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
        await rate.section(upstream, up_url, say, args)
        await growth.section(upstream, up_url, say, args)
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
    for section in (peer, rate, growth):
        section.add_arguments(parser)
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
