"""LiteLLM's proxy, the gateway users would otherwise pick, run as a pass-through beside ours.

It lives in a virtual environment of its own ($BENCH_PEER_VENV, by default
~/.cache/openai-tool-proxy/litellm-peer), made by `python -m bench.peer install`: the newest
LiteLLM that installs (1.106.2; the later ones need a certifi not published yet) wants
openai < 3, and this project's tests need openai 3.

It runs as its users run it: the `litellm` command with a config file, one uvicorn worker
(served in the process started: the pid whose CPU and memory are read), uvloop, uvicorn's
httptools parser; no database and no callbacks. What is not optional is kept: a master key
(it refuses to start without one; the bench client sends it), and the client's `x-` headers
forwarded upstream (the bench's scenario travels in them). `bench` maps to a model LiteLLM
knows, `openai/gpt-4o`, as users' models are: for a model missing from its cost map it asks
the upstream for a whole response and fakes the /v1/responses stream. Every other model name
goes to the same upstream.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import venv
from pathlib import Path

from bench.processes import Server, start

VENV = Path(
    os.environ.get("BENCH_PEER_VENV") or Path.home() / ".cache/openai-tool-proxy/litellm-peer"
)
LITELLM = VENV / "bin" / "litellm"
PACKAGES = ["litellm[proxy]==1.106.2", "uvicorn[standard]"]
ABSENT = (
    f"peer: LiteLLM is not installed in {VENV} (python -m bench.peer install; "
    "$BENCH_PEER_VENV names another); its figures are left out"
)
CONFIG = """\
model_list:
  - model_name: bench
    litellm_params: {{model: openai/gpt-4o, api_base: "{upstream}", api_key: sk-bench}}
  - model_name: "*"
    litellm_params: {{model: "openai/*", api_base: "{upstream}", api_key: sk-bench}}
general_settings:
  master_key: sk-bench
  forward_client_headers_to_llm_api: true
  disable_spend_logs: true
  disable_error_logs: true
"""
# Its production mode (no .env files read), errors-only logs, and the model cost map it ships
# rather than the copy it would fetch from the network at start.
ENV = {"LITELLM_MODE": "PRODUCTION", "LITELLM_LOG": "ERROR", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """None: the peer is measured with the latency targets, at their sizes."""


def start_peer(up_url: str) -> tuple[Server | None, str]:
    """The peer started against `up_url`, or None and the line that says why not."""
    if not LITELLM.exists():
        return None, ABSENT
    with tempfile.TemporaryDirectory() as directory:  # read at start-up, before it listens
        config = Path(directory) / "litellm.yaml"
        config.write_text(CONFIG.format(upstream=up_url))
        return start("litellm", ["-m", "bench.peer", "serve", str(config)]), ""


def serve(config: str) -> None:
    """Become `litellm` (exec: the pid `bench.processes.start` watches is the server's)."""
    argv = [str(LITELLM), "--config", config, "--host", "127.0.0.1"]
    argv += ["--port", os.environ["BENCH_PORT"], "--num_workers", "1"]
    os.execve(LITELLM, argv, {**os.environ, **ENV})


def install() -> None:
    """Make the peer's environment, apart from this project's."""
    venv.create(VENV, with_pip=True)
    subprocess.run([VENV / "bin" / "python", "-m", "pip", "install", *PACKAGES], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.peer", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("install", help=f"install {' '.join(PACKAGES)} in {VENV}")
    commands.add_parser("serve", help="run the peer (bench.processes starts it)").add_argument(
        "config"
    )
    args = parser.parse_args()
    if args.command == "install":
        install()
    else:
        serve(args.config)


if __name__ == "__main__":
    main()
