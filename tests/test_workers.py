"""`openai-tool-proxy serve --workers 2` run for real on one Redis: both processes answer on the
one port, `/metrics` counts both, a signal to the command drains them and it exits 0, a worker
that dies ends them all, a supervisor that dies has them drained, an orphan it reaps is no
worker, and a worker's last spans are exported.

Which worker answers is made certain, not left to chance: the test tool `hold` blocks its
worker's event loop (on purpose) until a later call releases it, so while one request is held
only the other worker can accept a connection.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import openai
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.chunks import calls_round, text_round
from tests.distributions import write_distribution
from tests.processes import clean_env, free_port, get, stop, wait_healthy
from tests.redis_server import redis_url  # noqa: F401 - a fixture
from tests.servers import serve, upstream_app
from tests.upstream import Reply, ScriptedUpstream

HOLDING = '''
import ctypes
import os
import subprocess
import time
from pathlib import Path

from proxy import tool

# The supervisor, which loads this plugin, takes in orphans as PID 1 of a container does.
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


@tool
def orphan() -> str:
    """Leave a process behind, handed to the supervisor once it ends; its pid."""
    return subprocess.run(
        ["sh", "-c", "sleep 0.1 >/dev/null & echo $!"], capture_output=True, text=True
    ).stdout.strip()


@tool
async def hold(directory: str) -> str:
    """The first call blocks its worker's event loop until a later call; each says where it ran.

    Args:
        directory: Where the calls meet.
    """
    meeting = Path(directory)
    try:
        (meeting / "held").mkdir()
    except FileExistsError:
        (meeting / "released").touch()
    else:
        deadline = time.monotonic() + 10
        while not (meeting / "released").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
    return f"{os.getpid()} {os.environ.get('PROMETHEUS_MULTIPROC_DIR')}"


@tool
def wait(directory: str) -> str:
    """Wait, in a thread (the worker serves on), until released.

    Args:
        directory: Where the release is.
    """
    (Path(directory) / "held").mkdir()
    deadline = time.monotonic() + 10
    while not (Path(directory) / "released").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return "waited"
'''


@contextmanager
def two_workers(
    script: ScriptedUpstream, redis: str, tmp_path: Path, **env: str
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`serve --workers 2` with the `hold` tool against `script`, with `env` added; the process
    and its /v1 URL."""
    site = tmp_path / "site"
    write_distribution(site, "holding", HOLDING, {"holding": "holding"})
    port = free_port()
    with serve(upstream_app(script)) as upstream_url:
        env = clean_env(
            site,
            TOOL_PROXY_STORE=redis,
            TOOL_PROXY_PLUGINS="holding",
            TOOL_PROXY_UPSTREAM=upstream_url + "/v1",
            **env,
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "proxy", "serve", "--workers", "2", "--port", str(port)],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            process_group=0,  # its own, as a shell gives a command: `killpg` is a Ctrl+C
        )
        try:
            wait_healthy(proc, f"http://127.0.0.1:{port}/health/readiness")
            yield proc, f"http://127.0.0.1:{port}/v1"
        finally:
            stop(proc)


def hold_round(meeting: Path, id: str, tool: str = "hold") -> Reply:
    return calls_round((f"call_{id}", tool, json.dumps({"directory": str(meeting)})), id=id)


def ask(url: str) -> str:
    client = openai.OpenAI(base_url=url, api_key="sk-user", max_retries=0)
    stream = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "?"}], stream=True
    )
    return "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)


def wait_for(path: Path) -> None:
    deadline = time.monotonic() + 10
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def workers_of(proc: subprocess.Popen[str]) -> list[int]:
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    return [int(pid) for pid in children]


def listening(url: str) -> bool:
    """Whether the proxy's port still takes connections (the kernel queues them, served or not)."""
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return False
    return True


def tool_results(script: ScriptedUpstream) -> list[str]:
    return [
        message["content"]
        for request in script.requests
        for message in request["messages"]
        if message["role"] == "tool"
    ]


@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl+C", "SIGHUP"])
def test_both_workers_answer_and_a_signal_drains_them(
    how: str,
    redis_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    meeting = tmp_path / "meeting"
    meeting.mkdir()
    script = ScriptedUpstream(
        hold_round(meeting, "1"), hold_round(meeting, "2"), text_round("one"), text_round("two")
    )
    with two_workers(script, redis_url, tmp_path) as (proc, url), ThreadPoolExecutor(1) as pool:
        first = pool.submit(ask, url)
        wait_for(meeting / "held")  # one worker's loop is blocked: the other must answer
        answers = {ask(url), first.result(timeout=10)}
        metrics = Path(tool_results(script)[0].split()[1])
        assert metrics.is_dir()
        # One call in each worker; a scrape of either counts both.
        _, scraped = get(url.removesuffix("/v1") + "/metrics")
        assert b'tool_proxy_tool_calls_total{gen_ai_tool_name="hold",outcome="ok"} 2.0' in scraped
        if how == "Ctrl+C":  # the terminal signals the command's whole process group
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(getattr(signal, how))
        out, err = proc.communicate(timeout=10)
    assert answers == {"one", "two"}
    assert proc.returncode == 0, err
    assert "Traceback" not in out + err
    pids = {result.split()[0] for result in tool_results(script)}
    assert len(pids) == 2 and str(proc.pid) not in pids
    assert {result.split()[1] for result in tool_results(script)} == {str(metrics)}
    assert not metrics.exists()  # removed once the workers ended


def test_a_request_in_flight_finishes_before_the_workers_exit(
    redis_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    meeting = tmp_path / "meeting"
    meeting.mkdir()
    script = ScriptedUpstream(hold_round(meeting, "1", "wait"), text_round("finished"))
    with two_workers(script, redis_url, tmp_path) as (proc, url), ThreadPoolExecutor(1) as pool:
        held = pool.submit(ask, url)
        wait_for(meeting / "held")
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        while listening(url):  # both workers are draining: the one holding the request too
            assert time.monotonic() < deadline, "the port still takes connections"
            time.sleep(0.01)
        (meeting / "released").touch()
        assert held.result(timeout=10) == "finished"
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "Traceback" not in out + err


def test_a_worker_that_dies_ends_the_others(redis_url: str, tmp_path: Path) -> None:  # noqa: F811
    with two_workers(ScriptedUpstream(), redis_url, tmp_path) as (proc, _):
        killed, survivor = workers_of(proc)
        os.kill(killed, signal.SIGKILL)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 128 + signal.SIGKILL
    assert f"worker {killed} ended on its own" in err
    assert f"Finished server process [{survivor}]" in err  # drained, not killed


def test_a_dead_supervisor_has_its_workers_drained(
    redis_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    with two_workers(ScriptedUpstream(), redis_url, tmp_path) as (proc, url):
        pids = workers_of(proc)
        proc.kill()
        try:
            _, err = proc.communicate(timeout=10)  # the workers hold its stderr until they end
        finally:
            for pid in pids:  # left behind only when the test fails
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    for pid in pids:
        assert f"Finished server process [{pid}]" in err  # drained, not killed
    assert not listening(url)


def test_an_orphan_handed_to_the_supervisor_is_no_worker(
    redis_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    script = ScriptedUpstream(
        calls_round(("call_1", "orphan", "{}"), id="1"), text_round("left"), text_round("still")
    )
    with two_workers(script, redis_url, tmp_path) as (proc, url):
        assert ask(url) == "left"
        orphan = Path(f"/proc/{tool_results(script)[0]}")
        deadline = time.monotonic() + 10
        while orphan.exists():  # until the supervisor reaped it
            assert time.monotonic() < deadline, "the orphan was never reaped"
            time.sleep(0.01)
        assert ask(url) == "still"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "ended on its own" not in err


def test_a_workers_last_spans_are_exported_when_it_is_stopped(
    redis_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    received: list[bytes] = []

    async def collector(request: Request) -> Response:
        received.append(await request.body())
        return Response(b"", media_type="application/x-protobuf")

    collecting = Starlette(routes=[Route("/v1/traces", collector, methods=["POST"])])
    script = ScriptedUpstream(text_round("traced"))
    with serve(collecting) as endpoint:
        otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_BSP_SCHEDULE_DELAY": "60000"}
        with two_workers(script, redis_url, tmp_path, **otel) as (proc, url):
            assert ask(url) == "traced"
            assert not received  # batched, for a minute
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert any(b"POST /v1/chat/completions" in body for body in received)


A_SIGNAL_ENDS_A_WORKER = """
import os, signal, sys
from proxy import workers

def worker(sockets):
    signal.pthread_sigmask(signal.SIG_UNBLOCK, workers.SIGNALS)  # as `drain.run` leaves them
    os.kill(os.getpid(), signal.SIGTERM)
    return 0

sys.exit(workers.run(worker, "127.0.0.1", int(sys.argv[1]), 2))
"""


def test_a_signal_to_a_worker_done_serving_ends_it_and_no_sibling() -> None:
    """A worker has the default handlers, not the supervisor's, which would pass the signal on
    to the siblings forked before it and leave the worker running."""
    done = subprocess.run(
        [sys.executable, "-c", A_SIGNAL_ENDS_A_WORKER, str(free_port())],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert done.returncode == 128 + signal.SIGTERM, done.stderr
