"""JSON schemas for tools: derived from a Python signature, checked against strict mode, and
the arguments' problems worded for the model."""

from __future__ import annotations

import enum
import inspect
import json
import re
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any

import docstring_parser
import jsonschema

from proxy.tools.context import context_parameter

_SCALARS: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}


def schema_from_signature(
    fn: Callable[..., Any], *, strict: bool = False
) -> tuple[str, dict[str, Any]]:
    """Return `(description, parameters schema)` for `fn` from its type hints and docstring.

    A parameter typed `RequestContext` is the proxy's to fill, never in the schema.
    Unknown properties are refused (`additionalProperties: false`) unless `fn` takes
    `**kwargs`: an argument it cannot take would otherwise pass validation and fail as a
    Python `TypeError`. In strict mode every property is required and optional ones admit
    `null`, as OpenAI's strict function calling demands.
    """
    doc = docstring_parser.parse(inspect.getdoc(fn) or "")
    param_docs = {p.arg_name: p.description for p in doc.params if p.description}
    description = "\n\n".join(
        part for part in (doc.short_description, doc.long_description) if part
    )
    hints = typing.get_type_hints(fn, include_extras=True)
    properties: dict[str, Any] = {}
    required: list[str] = []
    takes_any = False
    context = context_parameter(fn)
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            takes_any = takes_any or param.kind is param.VAR_KEYWORD
            continue
        if param.name == context:
            continue
        hint = hints.get(param.name, Any)
        prop = schema_for_type(hint)
        optional = param.default is not inspect.Parameter.empty or _admits_none(hint)
        if param.name in param_docs and "description" not in prop:
            prop["description"] = param_docs[param.name]
        if param.default is not inspect.Parameter.empty and _json_safe(param.default):
            prop.setdefault("default", param.default)
        if strict:
            prop.pop("default", None)
            if optional and not _admits_none(hint):
                prop = {"anyOf": [prop, {"type": "null"}]}
            required.append(param.name)
        elif not optional:
            required.append(param.name)
        properties[param.name] = prop
    schema: dict[str, Any] = {"type": "object", "properties": properties, "required": required}
    if strict or not takes_any:
        schema["additionalProperties"] = False
    return description, schema


def schema_for_type(hint: Any) -> dict[str, Any]:
    """Map a type hint to a JSON schema fragment (unknown types admit anything)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Annotated:
        inner = schema_for_type(args[0])
        notes = [a for a in args[1:] if isinstance(a, str)]
        if notes:
            inner["description"] = " ".join(notes)
        return inner
    if hint in _SCALARS:
        return {"type": _SCALARS[hint]}
    if hint is type(None):
        return {"type": "null"}
    if origin is typing.Literal:
        return {"enum": list(args)}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return {"enum": [member.value for member in hint]}
    if origin in (typing.Union, types.UnionType):
        variants = [schema_for_type(a) for a in args]
        if all(set(v) == {"type"} and isinstance(v["type"], str) for v in variants):
            return {"type": [v["type"] for v in variants]}
        return {"anyOf": variants}
    if hint in (list, tuple, set, frozenset) or origin in (list, tuple, set, frozenset):
        schema: dict[str, Any] = {"type": "array"}
        if args:
            schema["items"] = schema_for_type(args[0])
        return schema
    if hint is dict or origin is dict:
        return {"type": "object"}
    return {}


def strict_problems(schema: dict[str, Any], path: str = "parameters") -> list[str]:
    """List how `schema` breaks OpenAI's strict-mode rules (empty when it complies).

    Rules: every object sets `additionalProperties: false` and lists every property in
    `required`; the root is an object; nesting is at most 10 levels deep.
    """
    problems: list[str] = []
    if path == "parameters" and schema.get("type") != "object":
        problems.append("the root must be an object")
    _strict_walk(schema, path, 0, problems)
    return problems


def _strict_walk(node: Any, path: str, depth: int, problems: list[str]) -> None:
    if not isinstance(node, dict):
        return
    if depth > 10:
        problems.append(f"{path} nests deeper than 10 levels")
        return
    types_ = node.get("type")
    is_object = types_ == "object" or (isinstance(types_, list) and "object" in types_)
    if is_object:
        if node.get("additionalProperties") is not False:
            problems.append(f"{path} must set additionalProperties: false")
        props = node.get("properties", {})
        missing = sorted(set(props) - set(node.get("required", [])))
        if missing:
            problems.append(f"{path} must list every property in required (missing {missing})")
        for key, sub in props.items():
            _strict_walk(sub, f"{path}.{key}", depth + 1, problems)
    if "items" in node:
        _strict_walk(node["items"], f"{path}[]", depth + 1, problems)
    for keyword in ("anyOf", "allOf", "oneOf"):
        for i, sub in enumerate(node.get(keyword, [])):
            _strict_walk(sub, f"{path}.{keyword}[{i}]", depth + 1, problems)
    for key, sub in node.get("$defs", {}).items():
        _strict_walk(sub, f"{path}.$defs.{key}", depth + 1, problems)


def _admits_none(hint: Any) -> bool:
    if typing.get_origin(hint) is typing.Annotated:
        return _admits_none(typing.get_args(hint)[0])
    return hint is type(None) or (
        typing.get_origin(hint) in (typing.Union, types.UnionType)
        and type(None) in typing.get_args(hint)
    )


def _json_safe(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def first_problem(validator: jsonschema.protocols.Validator, instance: Any) -> str | None:
    """The most relevant way `instance` breaks the schema (None if it does not), with the
    values the model wrote spelled as JSON (`true`, `null`, `"x"`) rather than as Python."""
    error = jsonschema.exceptions.best_match(validator.iter_errors(instance))
    if error is None:
        return None
    noun = "property" if error.absolute_path else "argument"
    if error.validator == "additionalProperties" and error.validator_value is False:
        known = error.schema.get("properties", {})
        patterns = error.schema.get("patternProperties", {})
        extra = [k for k in error.instance if k not in known and not _matches(k, patterns)]
        message = unexpected(extra, known, noun)
    elif error.validator == "required":
        missing = [name for name in error.validator_value if name not in error.instance]
        message = f"missing required {_plural(noun, missing)} {_listed(missing)}"
    else:
        message = error.message
        for value in (error.instance, error.validator_value):
            message = message.replace(repr(value), _spelled(value))
    where = "/".join(str(p) for p in error.absolute_path)
    return f"{where}: {message}" if where else message


def unexpected(names: Iterable[str], known: Iterable[str], noun: str = "argument") -> str:
    """Names the model gave that the tool does not take, and the ones it does."""
    names = list(names)
    return f"unexpected {_plural(noun, names)} {_listed(names)} (known: {_listed(known) or 'none'})"


def _plural(noun: str, items: list[str]) -> str:
    if len(items) == 1:
        return noun
    return noun[:-1] + "ies" if noun.endswith("y") else noun + "s"


def _listed(names: Iterable[str]) -> str:
    return ", ".join(_spelled(name) for name in names)


def _spelled(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(re.search(pattern, name) for pattern in patterns)
