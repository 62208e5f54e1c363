"""`openai-tool-proxy serve --workers 2` run for real on one Redis: both processes answer on the
one port, `/metrics` counts both, a signal to the command drains them and it exits 0, a worker
that dies ends them all.

Which worker answers is made certain, not left to chance: the test tool `hold` blocks its
worker's event loop (on purpose) until a later call releases it, so while one request is held
only the other worker can accept a connection.
"""

from __future__ import annotations

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

from tests.chunks import calls_round, text_round
from tests.distributions import write_distribution
from tests.processes import clean_env, free_port, get, stop, wait_healthy
from tests.redis_server import redis_url  # noqa: F401 - a fixture
from tests.servers import serve, upstream_app
from tests.upstream import Reply, ScriptedUpstream

HOLDING = '''
import os
import time
from pathlib import Path

from proxy import tool


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
    script: ScriptedUpstream, redis: str, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`serve --workers 2` with the `hold` tool against `script`; the process and its /v1 URL."""
    site = tmp_path / "site"
    write_distribution(site, "holding", HOLDING, {"holding": "holding"})
    port = free_port()
    with serve(upstream_app(script)) as upstream_url:
        env = clean_env(
            site,
            TOOL_PROXY_STORE=redis,
            TOOL_PROXY_PLUGINS="holding",
            TOOL_PROXY_UPSTREAM=upstream_url + "/v1",
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


@pytest.mark.parametrize("ctrl_c", [False, True], ids=["SIGTERM", "Ctrl+C"])
def test_both_workers_answer_and_a_signal_drains_them(
    ctrl_c: bool,
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
        if ctrl_c:  # the terminal signals the command's whole process group
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGTERM)
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
