"""Keys never cross the proxy, nor reach its logs: the client's proxy key stays with the
proxy, the proxy's upstream key stays off the client's side, and neither is ever printed —
the real command, on loopback, through requests that fail in every way that logs something."""

from __future__ import annotations

import httpx
import openai

from tests.chunks import calls_round, text_round
from tests.processes import served_proxy
from tests.upstream import Reply, ScriptedUpstream

CLIENT_KEY = "sk-client-9f3a1c"
WRONG_KEY = "sk-wrong-77b2e0"
UPSTREAM_KEY = "sk-upstream-5d8e44"


def test_no_key_crosses_or_reaches_the_logs() -> None:
    script = ScriptedUpstream(
        calls_round(("c1", "calculate", '{"expression": "1/0"}')),  # a tool that fails: logged
        text_round("Undefined."),
        Reply(
            b'{"error": {"message": "rate limited", "type": "requests"}}',
            status=429,
            content_type="application/json",
        ),
    )
    output: list[str] = []
    seen: list[str] = []
    with served_proxy(
        script,
        plugins="calculator",
        output=output,
        TOOL_PROXY_API_KEYS=CLIENT_KEY,
        TOOL_PROXY_UPSTREAM_API_KEY=UPSTREAM_KEY,
    ) as base_url:
        client = openai.OpenAI(api_key=CLIENT_KEY, base_url=base_url, max_retries=0)
        stream = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "1/0?"}], stream=True
        )
        seen.append("".join(c.choices[0].delta.content or "" for c in stream if c.choices))
        try:
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
        except openai.RateLimitError as exc:
            seen.append(str(exc.body))
        wrong = openai.OpenAI(api_key=WRONG_KEY, base_url=base_url, max_retries=0)
        try:
            wrong.models.list()
        except openai.AuthenticationError as exc:
            seen.append(str(exc.body))
        too_big = httpx.post(
            base_url + "/chat/completions",
            content=b"x" * (51 * 1024 * 1024),
            headers={"authorization": f"Bearer {CLIENT_KEY}"},
        )
        seen.append(too_big.text + str(too_big.headers))
    assert seen[0] == "Undefined."
    assert "rate limited" in seen[1] and too_big.status_code == 413
    logs = "\n".join(output)
    assert "tool calculate raised ValueError" in logs  # what fails is logged, and no key
    assert "413 request body too large" in logs
    for key in (CLIENT_KEY, WRONG_KEY, UPSTREAM_KEY):
        assert key not in logs
        assert all(key not in text for text in seen)
    for headers in script.headers:
        assert headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
        assert CLIENT_KEY not in str(headers)
