from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import httpx2
import openai
import pytest
import respx
from starlette.applications import Starlette

from proxy import tool
from proxy.app import create_app
from proxy.config import Settings
from proxy.tools.registry import Registry
from tests.upstream import Reply, ScriptedUpstream

pytest_plugins = ["tests.redis_server"]  # the fixtures redis_server, redis_url

UPSTREAM = "http://upstream.test/v1"


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
    """The proxy app in process, its upstream reached through httpx's own transport — the
    one respx intercepts. (The live tests run the production transport for real.)"""
    return create_app(Settings(upstream=UPSTREAM, **settings), registry, httpx.AsyncHTTPTransport())


@pytest.fixture
def upstream() -> Callable[..., ScriptedUpstream]:
    """Script the upstream: `upstream(Reply(...), ...)` mounts it under respx."""
    router = respx.mock(assert_all_mocked=True, assert_all_called=False)
    router.start()
    scripted: list[ScriptedUpstream] = []

    def make(*replies: Reply) -> ScriptedUpstream:
        script = ScriptedUpstream(*replies)
        router.route(url__startswith=UPSTREAM).mock(side_effect=script.respx_handler)
        scripted.append(script)
        return script

    yield make
    router.stop()


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
def make_client() -> Callable[..., openai.AsyncOpenAI]:
    """An `openai.AsyncOpenAI` client talking to the proxy app in process."""

    def make(registry: Registry = SERVER_TOOLS, **settings: Any) -> openai.AsyncOpenAI:
        return openai_client(mocked_app(registry, **settings))

    return make


@pytest.fixture
async def client(
    make_client: Callable[..., openai.AsyncOpenAI],
) -> AsyncIterator[openai.AsyncOpenAI]:
    c = make_client()
    yield c
    await c.close()
