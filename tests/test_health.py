"""Health for operators: liveness (the process serves), readiness (503 while draining) —
JSON, and never behind the client-key check."""

from __future__ import annotations

import httpx
import httpx2

from tests.conftest import mocked_app, raw_client
from tests.servers import serve


def test_liveness_and_readiness_answer_200_over_a_real_socket() -> None:
    with serve(mocked_app()) as url:
        live = httpx.get(url + "/health/liveness")
        ready = httpx.get(url + "/health/readiness")
    assert (live.status_code, live.json()) == (200, {"status": "alive"})
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
    assert ready.headers["content-type"] == "application/json"


async def test_readiness_is_503_while_draining_and_liveness_stays_200() -> None:
    app = mocked_app()
    client = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://p")
    timer = app.state.drain.start()
    try:
        ready = await client.get("/health/readiness")
        live = await client.get("/health/liveness")
    finally:
        timer.cancel()
    assert (ready.status_code, ready.json()) == (503, {"status": "draining"})
    assert (live.status_code, live.json()) == (200, {"status": "alive"})


async def test_health_needs_no_client_key() -> None:
    client = raw_client(api_keys=("sk-proxy",), upstream_api_key="sk-upstream")
    for path in ("/health", "/health/liveness", "/health/readiness"):
        assert (await client.get(path)).status_code == 200, path
    assert (await client.get("/v1/models")).status_code == 401
