from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx2
import openai
import pytest
from starlette.applications import Starlette

from proxy import tool
from proxy.app import create_app
from proxy.config import Settings
from proxy.tools.registry import Registry
from tests.servers import Loopback, loopback
from tests.upstream import Reply, ScriptedUpstream

pytest_plugins = ["tests.redis_server"]  # the fixtures redis_server, redis_url

# A port bound for the session and never listening: connecting to it is refused at once.
_CLOSED = socket.socket()
_CLOSED.bind(("127.0.0.1", 0))
REFUSED = f"http://127.0.0.1:{_CLOSED.getsockname()[1]}/v1"
_serving: list[Loopback] = []  # the running test's loopback upstream, when it has one


@tool
def weather(location: str = "") -> str:
    """Get the weather in a location."""
    return f"Sunny, 21°C in {location or 'the default place'}"


@tool(name="GetWeatherArgs")
def get_weather_args(city: str, country: str, units: str = "c") -> dict[str, Any]:
    """Weather for a city."""
    return {"city": city, "country": country, "temperature": 14, "units": units}


@tool
def get_stock_price(ticker: str, exchange: str = "NASDAQ") -> str:
    """Latest stock price."""
    return f"{ticker} on {exchange}: 123.45"


SERVER_TOOLS = Registry.of(weather, get_weather_args, get_stock_price, plugin="tests")


def mocked_app(registry: Registry = SERVER_TOOLS, **settings: Any) -> Starlette:
    """The proxy app in process, with its production transport; its upstream the test's
    loopback one (`upstream`), or else a port that refuses."""
    upstream = _serving[-1].url if _serving else REFUSED
    return create_app(Settings(**{"upstream": upstream, **settings}), registry)


@pytest.fixture
async def served_upstream() -> AsyncIterator[Loopback]:
    """The upstream of every app the test makes, on 127.0.0.1 in the test's event loop."""
    async with loopback() as served:
        _serving.append(served)
        try:
            yield served
        finally:
            _serving.remove(served)


@pytest.fixture
def upstream(served_upstream: Loopback) -> Callable[..., ScriptedUpstream]:
    """Script the upstream: `upstream(Reply(...), ...)` is what it answers from then on."""

    def make(*replies: Reply) -> ScriptedUpstream:
        served_upstream.script = ScriptedUpstream(*replies)
        return served_upstream.script

    return make


def openai_client(app: Any) -> openai.AsyncOpenAI:
    """The real `openai` client, talking to `app` in process."""
    return openai.AsyncOpenAI(
        api_key="sk-client",
        base_url="http://proxy.test/v1",
        http_client=httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app)),
        max_retries=0,
    )


def raw_client(registry: Registry = SERVER_TOOLS, **settings: Any) -> httpx2.AsyncClient:
    """A plain HTTP client of the proxy app in process, for what the SDK would hide."""
    app = mocked_app(registry, **settings)
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://proxy.test")


@pytest.fixture
def make_client(served_upstream: Loopback) -> Callable[..., openai.AsyncOpenAI]:
    """An `openai.AsyncOpenAI` client talking to the proxy app in process."""

    def make(registry: Registry = SERVER_TOOLS, **settings: Any) -> openai.AsyncOpenAI:
        settings = {"upstream": served_upstream.url, **settings}
        return openai_client(mocked_app(registry, **settings))

    return make


@pytest.fixture
async def client(
    make_client: Callable[..., openai.AsyncOpenAI],
) -> AsyncIterator[openai.AsyncOpenAI]:
    c = make_client()
    yield c
    await c.close()
