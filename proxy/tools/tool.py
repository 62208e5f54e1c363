"""`Tool` — a registered server-side tool — and the `@tool` decorator plugins use."""

from __future__ import annotations

import enum
import inspect
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, overload

import jsonschema
import orjson

from proxy.auth import SECRET_HEADERS
from proxy.tools.context import Caller, RequestContext, context_parameter
from proxy.tools.schema import schema_from_signature, strict_problems


class ToolDefinitionError(ValueError):
    """A tool's definition is unusable (bad name, schema, or strict-mode schema)."""


class ToolError(Exception):
    """Raised by a tool to answer the model with `error: <message>`, exactly that: for failures
    the tool describes itself (a server's own error text), where a traceback's type would be
    noise."""


@dataclass(frozen=True)
class Origin:
    """Where a provider's tool lives: a server (an MCP server, by its label) and the tool's own
    name there, which may differ from the name the model sees; `read_only` when the server
    says the tool changes nothing (MCP's `readOnlyHint`)."""

    server: str
    name: str
    read_only: bool = False


@dataclass(frozen=True)
class Tool:
    """A function the proxy runs itself when the model calls it by `name`."""

    name: str
    description: str
    parameters: dict[str, Any]
    handler: Callable[..., Any]
    timeout: float | None = None
    strict: bool = False
    context_headers: frozenset[str] = frozenset()  # lower-case; passed in its RequestContext
    origin: Origin | None = None  # a provider's tool: its server, and its name there

    def __post_init__(self) -> None:
        if (
            not self.name
            or len(self.name) > 64
            or not all(c.isascii() and (c.isalnum() or c in "_-") for c in self.name)
        ):
            raise ToolDefinitionError(
                f"tool name {self.name!r} must be 1-64 characters of a-z, A-Z, 0-9, '_' or '-'"
            )
        try:
            self.validator.check_schema(self.parameters)
        except jsonschema.SchemaError as exc:
            raise ToolDefinitionError(
                f"tool {self.name!r} has an invalid parameters schema: {exc.message}"
            ) from exc
        if self.strict:
            problems = strict_problems(self.parameters)
            if problems:
                raise ToolDefinitionError(
                    f"tool {self.name!r} asks for strict mode but its schema breaks "
                    f"OpenAI's strict rules: {'; '.join(problems)}"
                )
        if self.timeout is not None and self.timeout <= 0:
            raise ToolDefinitionError(f"tool {self.name!r} timeout must be positive")
        if self.context_headers and self.context_parameter is None:
            raise ToolDefinitionError(
                f"tool {self.name!r} chooses context_headers but takes no parameter typed "
                "RequestContext to receive them"
            )
        secret = sorted(self.context_headers & SECRET_HEADERS)
        if secret or any(name != name.lower() for name in self.context_headers):
            raise ToolDefinitionError(
                f"tool {self.name!r} context_headers must be lower-case names of headers "
                f"without credentials, got {sorted(self.context_headers)}"
            )

    @cached_property
    def validator(self) -> jsonschema.protocols.Validator:
        """A compiled validator for the arguments, built once per tool."""
        cls = jsonschema.validators.validator_for(self.parameters)
        return cls(self.parameters)

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.handler)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the handler directly, so a decorated function stays usable as a function."""
        return self.handler(*args, **kwargs)

    @cached_property
    def _parameters(self) -> list[inspect.Parameter] | None:
        """The handler's parameters; None when it has no signature Python can read."""
        try:
            return list(inspect.signature(self.handler).parameters.values())
        except (TypeError, ValueError):
            return None

    @cached_property
    def context_parameter(self) -> str | None:
        """The handler's parameter typed `RequestContext`: the runner fills it, never the
        model."""
        return context_parameter(self.handler)

    @cached_property
    def accepts(self) -> tuple[str, ...] | None:
        """The argument names the model may give, in the handler's order; None when it takes
        any (`**kwargs`) or its signature cannot be read."""
        params = self._parameters
        if params is None or any(p.kind is p.VAR_KEYWORD for p in params):
            return None
        return tuple(
            p.name
            for p in params
            if p.kind is not p.VAR_POSITIONAL and p.name != self.context_parameter
        )

    @cached_property
    def _defaulted(self) -> frozenset[str]:
        """Parameters with a default that does not admit None (see `prepare`)."""
        return frozenset(
            p.name
            for p in self._parameters or ()
            if p.default is not inspect.Parameter.empty and p.default is not None
        )

    @cached_property
    def _enums(self) -> dict[str, type[enum.Enum]]:
        """Parameters typed with an Enum: the model sends a value, the handler gets a member."""
        try:
            hints = typing.get_type_hints(self.handler)
        except Exception:
            return {}
        return {
            name: hint
            for name, hint in hints.items()
            if isinstance(hint, type) and issubclass(hint, enum.Enum)
        }

    def prepare(self, arguments: dict[str, Any], caller: Caller | None = None) -> dict[str, Any]:
        """The keyword arguments for the handler from already-validated JSON arguments, and
        the context of the request `caller` made, if the handler asks for it.

        A `null` for a parameter with a non-null default means "use the default": strict mode
        makes every parameter required, so that is how a model leaves one out.
        """
        if self.context_parameter is not None:
            context = RequestContext() if caller is None else caller.context(self.context_headers)
            arguments = {**arguments, self.context_parameter: context}
        if self._defaulted:
            arguments = {
                k: v for k, v in arguments.items() if v is not None or k not in self._defaulted
            }
        for name, enum_type in self._enums.items():
            if name in arguments:
                arguments = {**arguments, name: enum_type(arguments[name])}
        return arguments

    def openai_function(self) -> dict[str, Any]:
        """The `function` object of a Chat Completions tool definition."""
        spec: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters,
        }
        if self.strict:
            spec["strict"] = True
        return spec

    # Its definition as each API's request carries it, encoded once: a request splices these
    # in as they are, rather than building and encoding every tool's schema again.

    @cached_property
    def chat_tool(self) -> orjson.Fragment:
        """An entry of a Chat Completions request's `tools`."""
        return orjson.Fragment(
            orjson.dumps({"type": "function", "function": self.openai_function()})
        )

    @cached_property
    def chat_function(self) -> orjson.Fragment:
        """An entry of a Chat Completions request's legacy `functions`."""
        return orjson.Fragment(orjson.dumps(self.openai_function()))

    @cached_property
    def responses_tool(self) -> orjson.Fragment:
        """An entry of a Responses request's `tools`."""
        spec = {"type": "function", **self.openai_function(), "strict": self.strict}
        return orjson.Fragment(orjson.dumps(spec))


@overload
def tool(func: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    parameters: dict[str, Any] | None = None,
    timeout: float | None = None,
    strict: bool = False,
    context_headers: Iterable[str] = (),
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    func: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    parameters: dict[str, Any] | None = None,
    timeout: float | None = None,
    strict: bool = False,
    context_headers: Iterable[str] = (),
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Register a function as a server-side tool, bare (`@tool`) or with options (`@tool(...)`).

    The JSON schema and description come from the signature and docstring unless given. A
    parameter typed `RequestContext` receives the request's context, with the request headers
    named in `context_headers` (case-insensitive; never credentials).
    """
    if isinstance(context_headers, str):
        raise ToolDefinitionError(
            f"context_headers must be a list of names, got {context_headers!r}"
        )

    def make(fn: Callable[..., Any]) -> Tool:
        derived_description, derived_parameters = schema_from_signature(fn, strict=strict)
        return Tool(
            name=name if name is not None else fn.__name__,
            description=description if description is not None else derived_description,
            parameters=parameters if parameters is not None else derived_parameters,
            handler=fn,
            timeout=timeout,
            strict=strict,
            context_headers=frozenset(h.lower() for h in context_headers),
        )

    if func is not None:
        return make(func)
    return make
