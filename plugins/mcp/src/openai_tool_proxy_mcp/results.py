"""What the model reads of an MCP tool's result: a chat model reads text, so every content
block becomes text — nothing is dropped without a word.

- text blocks: their text;
- images and audio: their kind, MIME type and size (`[image: image/png, 5120 bytes]`);
- resource links: their name, URI, and what the server says of them;
- embedded resources: a text resource inlined under a line naming it, a binary one described;
- `structuredContent`: as JSON, after the blocks — unless a text block already says it (its
  JSON serialisation, as the MCP spec asks servers to add, or the value of its only field,
  which is how SDKs wrap a plain return value);

one per line, in order. `isError` raises `ToolError` with that text: the model reads
`error: <the server's text>`.
"""

from __future__ import annotations

import json
from typing import Any, assert_never

from mcp_types import (
    AudioContent,
    BlobResourceContents,
    CallToolResult,
    ContentBlock,
    EmbeddedResource,
    ImageContent,
    ResourceLink,
    TextContent,
)

from proxy import ToolError

EMPTY = "(the tool returned no content)"
FAILED = "the tool failed without a message"


def result_text(result: CallToolResult) -> str:
    """The text the model reads; `ToolError` when the server says the call failed."""
    parts = [_block(block) for block in result.content]
    structured = result.structured_content
    if structured is not None and not any(
        _says(block.text, structured) for block in result.content if isinstance(block, TextContent)
    ):
        parts.append(json.dumps(structured, ensure_ascii=False))
    text = "\n".join(parts)
    if result.is_error:
        raise ToolError(text or FAILED)
    return text or EMPTY


def _block(block: ContentBlock) -> str:
    if isinstance(block, TextContent):
        return block.text
    if isinstance(block, ImageContent | AudioContent):
        return f"[{block.type}: {block.mime_type}, {_size(block.data)} bytes]"
    if isinstance(block, ResourceLink):
        about = [block.mime_type, None if block.size is None else f"{block.size} bytes"]
        details = "".join(f", {item}" for item in about if item)
        title = f" ({block.title})" if block.title else ""
        described = f": {block.description}" if block.description else ""
        return f"[resource link: {block.name}{title} <{block.uri}>{details}]{described}"
    if isinstance(block, EmbeddedResource):
        resource = block.resource
        if isinstance(resource, BlobResourceContents):
            kind = resource.mime_type or "binary data"
            return f"[resource <{resource.uri}>: {kind}, {_size(resource.blob)} bytes]"
        kind = f" ({resource.mime_type})" if resource.mime_type else ""
        return f"[resource <{resource.uri}>{kind}]\n{resource.text}"
    assert_never(block)


def _size(base64: str) -> int:
    """The size of what `base64` encodes, without decoding it."""
    return len(base64) * 3 // 4 - base64[-2:].count("=")


def _says(text: str, structured: dict[str, Any]) -> bool:
    """Whether a text block already carries the structured content (see the module)."""
    try:
        value = json.loads(text)
    except ValueError:
        value = text
    return value == structured or (len(structured) == 1 and value in structured.values())
