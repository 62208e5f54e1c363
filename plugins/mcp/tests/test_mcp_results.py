"""An MCP result as the text the model reads: every kind of content said, none dropped."""

from __future__ import annotations

from typing import Any

import pytest
from mcp_types import (
    AudioContent,
    BlobResourceContents,
    CallToolResult,
    ContentBlock,
    EmbeddedResource,
    ImageContent,
    ResourceLink,
    TextContent,
    TextResourceContents,
)
from openai_tool_proxy_mcp.results import EMPTY, FAILED, result_text

from proxy import ToolError


def text(value: str) -> TextContent:
    return TextContent(type="text", text=value)


def result(*content: ContentBlock, structured: Any = None, error: bool = False) -> CallToolResult:
    return CallToolResult(content=list(content), structured_content=structured, is_error=error)


def test_text_blocks_are_joined_by_lines() -> None:
    assert result_text(result(text("one"), text("two"))) == "one\ntwo"


@pytest.mark.parametrize(
    ("block", "said"),
    [
        (
            ImageContent(type="image", data="iVBORw0KGgo=", mime_type="image/png"),
            "[image: image/png, 8 bytes]",
        ),
        (
            AudioContent(type="audio", data="UklGRiQ=", mime_type="audio/wav"),
            "[audio: audio/wav, 5 bytes]",
        ),
        (
            ResourceLink(type="resource_link", name="q3", uri="file:///q3.pdf"),
            "[resource link: q3 <file:///q3.pdf>]",
        ),
        (
            ResourceLink(
                type="resource_link",
                name="q3.pdf",
                title="Q3 report",
                uri="file:///q3.pdf",
                mime_type="application/pdf",
                size=2048,
                description="Sales by region",
            ),
            "[resource link: q3.pdf (Q3 report) <file:///q3.pdf>, application/pdf, 2048 bytes]: "
            "Sales by region",
        ),
        (
            EmbeddedResource(
                type="resource",
                resource=TextResourceContents(
                    uri="file:///a.md", mime_type="text/markdown", text="# A"
                ),
            ),
            "[resource <file:///a.md> (text/markdown)]\n# A",
        ),
        (
            EmbeddedResource(
                type="resource", resource=TextResourceContents(uri="mem://n", text="n")
            ),
            "[resource <mem://n>]\nn",
        ),
        (
            EmbeddedResource(
                type="resource",
                resource=BlobResourceContents(
                    uri="file:///b", mime_type="application/zip", blob="UEsDBA=="
                ),
            ),
            "[resource <file:///b>: application/zip, 4 bytes]",
        ),
        (
            EmbeddedResource(
                type="resource", resource=BlobResourceContents(uri="file:///c", blob="AAEC")
            ),
            "[resource <file:///c>: binary data, 3 bytes]",
        ),
    ],
)
def test_binary_and_resource_content_is_described(block: ContentBlock, said: str) -> None:
    assert result_text(result(text("before"), block)) == f"before\n{said}"


def test_structured_content_is_added_as_json() -> None:
    found = result(text("Found 2 cities."), structured={"cities": ["Paris", "Lyon"]})
    assert result_text(found) == 'Found 2 cities.\n{"cities": ["Paris", "Lyon"]}'
    assert result_text(result(structured={"température": 21})) == '{"température": 21}'


def test_structured_content_a_text_block_already_says_is_not_repeated() -> None:
    serialised = '{\n  "cities": ["Paris"]\n}'
    assert result_text(result(text(serialised), structured={"cities": ["Paris"]})) == serialised
    # an SDK's wrapping of a plain return value: {"result": <the value>}
    assert result_text(result(text("hi"), structured={"result": "hi"})) == "hi"
    assert result_text(result(text("42"), structured={"result": 42})) == "42"


def test_an_empty_result_says_so() -> None:
    assert result_text(result()) == EMPTY


def test_is_error_raises_the_servers_text() -> None:
    with pytest.raises(ToolError) as raised:
        result_text(result(text("no such city: Atlantis"), error=True))
    assert str(raised.value) == "no such city: Atlantis"
    with pytest.raises(ToolError) as raised:
        result_text(result(error=True))
    assert str(raised.value) == FAILED
