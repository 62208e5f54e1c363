"""The proxy's command run for real in subprocesses: environment, start, health, stop."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.servers import free_port, serve, upstream_app
from tests.upstream import ScriptedUpstream

__all__ = [
    "clean_env",
    "console_script",
    "free_port",
    "get",
    "run_cli",
    "served_proxy",
    "spawn",
    "stop",
    "wait_healthy",
]


def clean_env(*pythonpath: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOOL_PROXY_")}
    env.pop("PYTHONPATH", None)
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(str(p) for p in pythonpath)
    env.update(extra)
    return env


def run_cli(
    args: Sequence[str], env: dict[str, str], cwd: Path, timeout: float = 20
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def spawn(args: Sequence[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    """`python -m proxy ARGS` running in the background (stop it with `stop`)."""
    return subprocess.Popen(
        [sys.executable, "-m", "proxy", *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@contextmanager
def served_proxy(
    script: ScriptedUpstream, *site: Path, plugins: str, output: list[str] | None = None, **env: str
) -> Iterator[str]:
    """`openai-tool-proxy serve` in a subprocess against `script` on loopback; its /v1 URL.
    What the process printed (stdout, stderr) is added to `output` once it stopped."""
    port = free_port()
    with serve(upstream_app(script)) as upstream_url:
        environ = clean_env(*site, TOOL_PROXY_PLUGINS=plugins, **env)
        args = ["serve", "--port", str(port), "--upstream", upstream_url + "/v1"]
        proc = spawn(args, environ, Path.cwd())
        try:
            wait_healthy(proc, f"http://127.0.0.1:{port}/health")
            yield f"http://127.0.0.1:{port}/v1"
        finally:
            printed = stop(proc)
            if output is not None:
                output.extend(printed)


def console_script() -> str:
    here = str(Path(sys.executable).parent)
    found = shutil.which("openai-tool-proxy", path=os.pathsep.join([here, os.environ["PATH"]]))
    if found is None:
        pytest.fail("the openai-tool-proxy console script is not installed (pip install -e .)")
    return found


def get(url: str) -> tuple[int, bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate(timeout=5)


def wait_healthy(proc: subprocess.Popen[str], url: str, deadline: float = 15) -> bytes:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"serve exited early with {proc.returncode}: {err}")
        try:
            status, body = get(url)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.05)
            continue
        if status == 200:
            return body
        time.sleep(0.05)
    pytest.fail(f"{url} did not answer 200 within {deadline} s")
