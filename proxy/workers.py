"""`serve --workers N`: N processes serving on one port, each draining as a single one does.

Why forked children of a small supervisor rather than uvicorn's own `workers=`: uvicorn's
supervisor starts fresh interpreters that import the app by name, while the proxy's app is
built from settings and plugins already loaded, with a protocol class made for the settings.
Forked once the port is bound, every worker has the listening socket, the settings and the
plugins; each builds its own app (its own store client, upstream pool and tool threads).

The workers are in their own process group, so a terminal's Ctrl+C reaches the supervisor
only, which passes every SIGINT and SIGTERM on as it came: the first drains every worker, a
second Ctrl+C ends their requests at once — as with one process; a SIGHUP (its terminal gone)
drains them as a SIGTERM does. A worker that ends on its own (killed, crashed) ends the others:
the proxy never serves with fewer workers than it was asked for, and the orchestrator restarts
it whole. A supervisor that ends without them (SIGKILL) has its workers drained by the kernel's
parent-death signal, and processes that are not workers — orphans handed to the supervisor as
PID 1 of a container or as a subreaper — are reaped and otherwise ignored.

Metrics are counted in each worker and summed at `/metrics` by prometheus_client's
multiprocess mode, which keeps them in files under `PROMETHEUS_MULTIPROC_DIR`: a fresh
temporary directory made before the first worker starts, removed once the last one ended.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import traceback
from collections.abc import Callable
from types import FrameType

from proxy.observe.metrics import MULTIPROC_DIR

log = logging.getLogger("proxy")

SIGNALS = (signal.SIGINT, signal.SIGTERM)  # passed on as they came
HANGUP = signal.SIGHUP  # passed on as a SIGTERM
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
BACKLOG = 2048  # uvicorn's default

Worker = Callable[[list[socket.socket]], int]


def run(worker: Worker, host: str, port: int, count: int) -> int:
    """Serve with `count` processes, each running `worker` on the shared listening socket,
    until they have all ended; the exit status: the first worker's that failed, else 0."""
    try:
        sock = listen(host, port)
    except OSError as exc:
        log.error("cannot listen on %s port %d: %s", host, port, exc.strerror)
        return 1
    metrics = tempfile.mkdtemp(prefix="openai-tool-proxy-metrics-")
    os.environ[MULTIPROC_DIR] = metrics
    try:
        return _supervise(worker, sock, count)
    finally:
        shutil.rmtree(metrics, ignore_errors=True)


def listen(host: str, port: int) -> socket.socket:
    """The listening socket every worker accepts connections from."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=BACKLOG)


def _supervise(worker: Worker, sock: socket.socket, count: int) -> int:
    """Fork the workers, pass signals on to them, and wait for them all."""
    asked = False
    pids: set[int] = set()

    def forward(sig: int, frame: FrameType | None) -> None:
        nonlocal asked
        asked = True
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):  # ended, not yet waited for
                os.kill(pid, signal.SIGTERM if sig == HANGUP else sig)

    # Blocked while forking: a worker gets those that came early once it can drain (`drain.run`).
    signal.pthread_sigmask(signal.SIG_BLOCK, (*SIGNALS, HANGUP))
    previous = {sig: signal.signal(sig, forward) for sig in (*SIGNALS, HANGUP)}
    try:
        with sock:  # the supervisor accepts nothing: the port closes with the last worker
            pids.update(_fork(worker, sock) for _ in range(count))
        signal.pthread_sigmask(signal.SIG_UNBLOCK, (*SIGNALS, HANGUP))
        failed = 0
        while pids:
            pid, status = os.waitpid(-1, 0)
            if pid not in pids:  # an orphan handed to us (PID 1, subreaper): now reaped
                continue
            pids.remove(pid)
            code = os.waitstatus_to_exitcode(status)
            code = 128 - code if code < 0 else code  # ended by a signal: as shells report it
            failed = failed or code
            if not asked:
                log.error("worker %d ended on its own (status %d): stopping the others", pid, code)
                forward(signal.SIGTERM, None)
                failed = failed or 1
        return failed
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, (*SIGNALS, HANGUP))
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _fork(worker: Worker, sock: socket.socket) -> int:
    """Start one worker; its pid. The child never returns: it exits with `worker`'s status."""
    supervisor = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    status = 1
    try:
        _orphaned_drains(supervisor)
        # The supervisor's handler forwards to the siblings it knew: not a worker's to run. Its
        # signals stay blocked until it can drain (`drain.run`).
        for sig in (*SIGNALS, HANGUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, (HANGUP,))
        os.setpgid(0, 0)  # out of the terminal's process group: signals come from the supervisor
        status = worker([sock])
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


def _orphaned_drains(supervisor: int) -> None:
    """Have the kernel send this worker SIGTERM, so it drains, when the supervisor dies; exit
    at once if it already has (before the request was made)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    if os.getppid() != supervisor:
        os._exit(1)
