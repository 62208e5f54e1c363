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
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.servers import free_port

__all__ = [
    "clean_env",
    "console_script",
    "free_port",
    "get",
    "run_cli",
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
