"""What the proxy reads of a client's request, and the JSON types it can read there.

A request whose value has another type is answered as OpenAI would — a 400 `invalid_type`
naming the `param` — before the proxy reads anything, so no JSON type can make it fail.
Fields the proxy does not read are not described here: they go upstream untouched, and the
upstream judges them. An optional field may be null (as OpenAI allows); an array's entries
may not.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, cast

from proxy.errors import APIError


@dataclass(frozen=True)
class Field:
    """What one value may be: its JSON types, and what the proxy reads inside it."""

    types: frozenset[str]
    fields: Mapping[str, Field] = field(default_factory=dict)  # read inside an object
    items: Field | None = None  # read in each entry of an array
    by_type: Mapping[str, Mapping[str, Field]] = field(default_factory=dict)  # per `type`
    required: bool = False


def obj(**fields: Field) -> Field:
    return Field(frozenset({"object"}), fields)


def array(items: Field) -> Field:
    return Field(frozenset({"array"}), items=items)


def required(spec: Field) -> Field:
    return replace(spec, required=True)


STRING = Field(frozenset({"string"}))
BOOLEAN = Field(frozenset({"boolean"}))
INTEGER = Field(frozenset({"integer"}))
OBJECT = obj()

# `tool_choice` (and legacy `function_call`) for later rounds: see `proxy.loop.tool_choice`.
_TOOL_CHOICE = Field(frozenset({"string", "object"}), {"type": STRING, "allowed_tools": OBJECT})

CHAT_REQUEST = obj(
    # Read by the mixed-round memory (`proxy.chat.memory`): roles, call ids, answered ids.
    messages=required(
        array(obj(role=STRING, tool_call_id=STRING, tool_calls=array(obj(id=STRING))))
    ),
    tools=array(obj(function=obj(name=STRING), name=STRING)),
    functions=array(obj(name=STRING)),
    tool_choice=_TOOL_CHOICE,
    function_call=_TOOL_CHOICE,
    stream=BOOLEAN,
    stream_options=obj(include_usage=BOOLEAN),
    n=INTEGER,
)

# An `mcp_call` item the proxy once showed, sent back to be unfolded (`unfold_mcp_items`).
_MCP_CALL = {
    "server_label": STRING,
    "name": STRING,
    "arguments": STRING,
    "output": STRING,
    "error": Field(
        frozenset({"string", "object"}),
        {"content": array(obj(text=STRING)), "message": STRING},
    ),
}

# Hosted MCP (`proxy.responses.hosted`): a tool filter, by names and the read-only hint.
_FILTER = obj(tool_names=array(STRING), read_only=BOOLEAN)
_HOSTED_MCP = {
    "server_label": STRING,
    "allowed_tools": Field(frozenset({"array", "object"}), _FILTER.fields, items=STRING),
    "require_approval": Field(
        frozenset({"string", "object"}), {"always": _FILTER, "never": _FILTER}
    ),
}
# Hosted MCP items sent back: unfolded, and approval answers taken (`proxy.responses.approvals`).
_MCP_ITEMS = {
    "mcp_call": {**_MCP_CALL, "approval_request_id": STRING},
    "mcp_approval_request": {"server_label": STRING, "name": STRING, "arguments": STRING},
    "mcp_approval_response": {
        "approval_request_id": required(STRING),
        "approve": required(BOOLEAN),
        "reason": STRING,
    },
    "mcp_list_tools": {"server_label": STRING},
}

RESPONSES_REQUEST = obj(
    input=Field(
        frozenset({"string", "array"}),
        items=Field(
            frozenset({"object"}),
            {"type": STRING, "id": STRING, "call_id": STRING},  # memory and mcp_call keys
            by_type=_MCP_ITEMS,
        ),
    ),
    tools=Field(
        frozenset({"array"}),
        items=Field(frozenset({"object"}), {"name": STRING}, by_type={"mcp": _HOSTED_MCP}),
    ),
    tool_choice=Field(
        frozenset({"string", "object"}),
        {**_TOOL_CHOICE.fields, "server_label": STRING, "name": STRING},
    ),
    stream=BOOLEAN,
    store=BOOLEAN,
    background=BOOLEAN,
    conversation=Field(frozenset({"string", "object"})),
    include=array(STRING),
    previous_response_id=STRING,
)


def checked(body: Any, spec: Field) -> dict[str, Any]:
    """`body` as the request object, or the 400 for its first value the proxy cannot read."""
    try:
        _check(body, spec)
    except _Mismatch as wrong:
        raise wrong.error() from None
    return cast(dict[str, Any], body)  # an object: both requests' specs say so


# orjson decodes to exactly these types.
_KINDS: dict[type, str] = {
    dict: "object",
    list: "array",
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    type(None): "null",
}
_A = {
    "object": "an object",
    "array": "an array",
    "string": "a string",
    "integer": "an integer",
    "number": "a decimal number",
    "boolean": "a boolean",
    "null": "null",
}
_ORDER = ("string", "integer", "boolean", "array", "object")


class _Mismatch(Exception):
    """A value of the wrong type (`got`) or a missing one (`got` is None); the path to it is
    added on the way out, so a request that passes builds no paths at all."""

    def __init__(self, spec: Field, got: str | None) -> None:
        self.spec = spec
        self.got = got
        self.path: list[str] = []

    def error(self) -> APIError:
        param = "".join(reversed(self.path)).removeprefix(".") or None
        if self.got is None:
            return APIError.of(
                400,
                f"Missing required parameter: '{param}'.",
                param=param,
                code="missing_required_parameter",
            )
        where = f"'{param}'" if param else "the request body"
        return APIError.of(
            400,
            f"Invalid type for {where}: expected {_expected(self.spec)}, "
            f"but got {_A[self.got]} instead.",
            param=param,
            code="invalid_type",
        )


def _check(value: Any, spec: Field) -> None:
    kind = _KINDS[type(value)]
    if kind not in spec.types:
        raise _Mismatch(spec, kind)
    if kind == "array" and spec.items is not None:
        _check_entries(value, spec.items)
    elif kind == "object" and (spec.fields or spec.by_type):
        _check_fields(value, spec.fields)
        variant = value.get("type")
        if isinstance(variant, str) and variant in spec.by_type:
            _check_fields(value, spec.by_type[variant])


def _check_entries(entries: list[Any], spec: Field) -> None:
    """When nothing inside the entries is read (most of a long `messages`), their types are
    checked in one pass; an entry is looked at on its own only to be named, or read inside."""
    if not (spec.fields or spec.items or spec.by_type) and all(
        _KINDS[kind] in spec.types for kind in set(map(type, entries))
    ):
        return
    for index, entry in enumerate(entries):
        try:
            _check(entry, spec)
        except _Mismatch as wrong:
            wrong.path.append(f"[{index}]")
            raise


def _check_fields(value: dict[str, Any], fields: Mapping[str, Field]) -> None:
    for name, spec in fields.items():
        try:
            if name not in value:
                if spec.required:
                    raise _Mismatch(spec, None)
            elif value[name] is not None or spec.required:
                _check(value[name], spec)
        except _Mismatch as wrong:
            wrong.path.append("." + name)
            raise


def _expected(spec: Field) -> str:
    """OpenAI's words: "an array of objects", "one of a string or array of objects"."""
    names = [_A[kind] for kind in _ORDER if kind in spec.types]
    if spec.items is not None and len(spec.items.types) == 1:
        (item,) = spec.items.types
        names = [f"an array of {item}s" if n == "an array" else n for n in names]
    if len(names) == 1:
        return names[0]
    rest = [n.split(" ", 1)[1] for n in names[1:]]
    return f"one of {', '.join([names[0], *rest[:-1]])} or {rest[-1]}"
