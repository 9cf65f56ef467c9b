r"""Typed tools from plain Python functions, and a registry to look them up by name.

::

    @tool
    def add(a: int, b: int = 1) -> int:
        '''Add two integers (``a`` and ``b`` are described in an ``Args`` section).'''
        return a + b

``add`` is now a :class:`FunctionTool`, which satisfies :class:`orchestrator.tool.Tool`:
its JSON Schema comes from the signature (through pydantic), its description and the
parameter descriptions from the docstring; calls are validated before the function runs,
sync functions run in a worker thread, and the result is turned into text.

A registry also holds :class:`~orchestrator.tool.Toolset`\ s (MCP servers): their tools are
in it while open (:meth:`ToolRegistry.opened`); before, a plan names what they may provide.
"""

from __future__ import annotations

import copy
import functools
import inspect
import re
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Iterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, overload

import anyio
import anyio.to_thread
import pydantic_core
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from orchestrator.tool import Tool, Toolset
from orchestrator.tools._docstrings import parse_docstring
from orchestrator.tools._toolsets import KnownNames, check_allowlists, check_unique, hint
from orchestrator.tools.errors import (
    ToolArgumentError,
    ToolDefinitionError,
    ToolTimeoutError,
    UnknownToolError,
)

if TYPE_CHECKING:
    from orchestrator.executor import Executor
    from orchestrator.plan import Task

__all__ = ["FunctionTool", "ToolRegistry", "to_text", "tool"]

_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_SCHEMA_MAPS = frozenset({"properties", "$defs", "definitions", "patternProperties"})
_SCHEMA_LISTS = frozenset({"anyOf", "oneOf", "allOf", "prefixItems"})
_SCHEMA_ONE = frozenset(
    {"items", "additionalProperties", "not", "if", "then", "else", "contains", "propertyNames"}
)
_MAX_SHOWN_INPUT = 80


@dataclass(frozen=True, slots=True)
class _Param:
    name: str
    field: str
    positional_only: bool


class FunctionTool:
    """A Python function exposed to models as a tool (see :func:`tool`).

    Args:
        fn: The function, sync or async, with a type annotation on every parameter.
        name: Tool name; defaults to the function's ``__name__``.
        description: What the tool does; defaults to the docstring's prose (the summary and
            any text before the first section such as ``Args:``).
        timeout_s: Limit on one call, or ``None`` for none beyond the engine's own.
        approve: ``"before"``: each call waits for a person's approval before it runs;
            ``"after"``: its result does (:mod:`orchestrator.tool_approval`).

    Raises:
        ToolDefinitionError: The function cannot be described by a JSON Schema (a parameter
            without annotation, ``*args``/``**kwargs``), or the name or description is bad.

    Attributes:
        fn: The wrapped function, still callable directly.
        timeout_s: The tool's own per-call limit, if any.
        executor: Where a sync function's calls run (``None``: a thread here; an engine
            with a remote executor sets it on its own copies).
        approve: When its calls need a person's approval, if ever.
        local: ``True``: its calls stay here even with a remote executor (cheap calls over
            data the driver holds: the corpus tools).
    """

    local: bool = False

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        timeout_s: float | None = None,
        approve: Literal["before", "after"] | None = None,
    ) -> None:
        tool_name = name if name is not None else getattr(fn, "__name__", "")
        if not _NAME.match(tool_name):
            raise ToolDefinitionError(
                f"tool name {tool_name!r} is invalid: use 1-64 letters, digits, '_' or '-'"
                + ("" if name is not None else " (pass name=...)")
            )
        if timeout_s is not None and timeout_s <= 0:
            raise ToolDefinitionError(f"tool {tool_name!r}: timeout_s must be positive")
        if approve not in (None, "before", "after"):
            raise ToolDefinitionError(f"tool {tool_name!r}: approve must be 'before' or 'after'")
        docs = parse_docstring(inspect.getdoc(fn))
        text = (description if description is not None else docs.description).strip()
        if not text:
            raise ToolDefinitionError(
                f"tool {tool_name!r} has no description: write a docstring or pass description="
            )
        self.fn = fn
        self.timeout_s = timeout_s
        self.executor: Executor | None = None
        self.approve = approve
        self._name = tool_name
        self._description = text
        self._is_async = _is_async(fn)
        self._model, self._params = _arguments_model(fn, tool_name, docs.params)
        self._schema = _clean_schema(self._model.model_json_schema())

    @property
    def name(self) -> str:
        """Name the model calls the tool by."""
        return self._name

    @property
    def description(self) -> str:
        """What the tool does, for the model."""
        return self._description

    @property
    def input_schema(self) -> dict[str, Any]:
        """JSON Schema of the tool's arguments (a fresh copy each time)."""
        return copy.deepcopy(self._schema)

    async def __call__(self, arguments: Mapping[str, Any]) -> str:
        """Validate ``arguments``, run the function and return its result as text.

        Args:
            arguments: The arguments the model sent, by parameter name.

        Returns:
            The result as text (see :func:`to_text`).

        Raises:
            ToolArgumentError: The arguments failed validation; every problem is named.
            ToolTimeoutError: The call ran past ``timeout_s``.
        """
        args, kwargs = self._validate(arguments)
        with anyio.move_on_after(self.timeout_s) as scope:
            return to_text(await self._invoke(args, kwargs))
        assert scope.cancelled_caught
        raise ToolTimeoutError(f"tool {self._name!r} timed out after {self.timeout_s:g}s")

    def __repr__(self) -> str:
        return f"FunctionTool(name={self._name!r}, fn={self.fn!r})"

    def _validate(self, arguments: Mapping[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        if not isinstance(arguments, Mapping):
            raise ToolArgumentError(
                f"invalid arguments for {self._name!r}: expected a JSON object, "
                f"got {type(arguments).__name__}"
            )
        try:
            values = self._model.model_validate(dict(arguments))
        except ValidationError as exc:
            raise _argument_error(self._name, exc, [p.name for p in self._params]) from None
        args = [getattr(values, p.field) for p in self._params if p.positional_only]
        kwargs = {p.name: getattr(values, p.field) for p in self._params if not p.positional_only}
        return args, kwargs

    async def _invoke(self, args: list[Any], kwargs: dict[str, Any]) -> Any:
        if self._is_async:
            return await self.fn(*args, **kwargs)
        if self.executor is not None:  # a remote worker runs it (Engine(executor=...))
            return (await self.executor.run(self._name, self.fn, args, kwargs)).result()
        call = functools.partial(self.fn, *args, **kwargs)
        return await anyio.to_thread.run_sync(call, abandon_on_cancel=True)


@overload
def tool(
    fn: Callable[..., Any],
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_s: float | None = None,
    approve: Literal["before", "after"] | None = None,
) -> FunctionTool: ...


@overload
def tool(
    fn: None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_s: float | None = None,
    approve: Literal["before", "after"] | None = None,
) -> Callable[[Callable[..., Any]], FunctionTool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_s: float | None = None,
    approve: Literal["before", "after"] | None = None,
) -> FunctionTool | Callable[[Callable[..., Any]], FunctionTool]:
    """Turn a typed function into a :class:`FunctionTool`; usable with or without arguments.

    Example::

        @tool
        def lookup(term: str) -> str: ...

        @tool(name="web_search", timeout_s=10)
        async def search(query: str, k: int = 5) -> list[str]: ...

    Args:
        fn: The function (when used as a bare decorator or called directly).
        name: Tool name; defaults to the function's name.
        description: Tool description; defaults to the docstring's prose.
        timeout_s: Limit on one call; ``None`` leaves only the engine's own limit.
        approve: ``"before"`` or ``"after"``: its calls (or results) wait for approval.

    Returns:
        The tool, or a decorator making one when ``fn`` is omitted.
    """

    def wrap(func: Callable[..., Any]) -> FunctionTool:
        return FunctionTool(
            func, name=name, description=description, timeout_s=timeout_s, approve=approve
        )

    return wrap if fn is None else wrap(fn)


def to_text(value: object) -> str:
    """Convert a tool's return value to the text sent to the model.

    Args:
        value: What the function returned.

    Returns:
        A ``str`` as is; a pydantic model, dict, list, dataclass, number or ``None`` as
        compact JSON (objects JSON cannot represent fall back to ``str()``).
    """
    if isinstance(value, str):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    return pydantic_core.to_json(value, serialize_unknown=True).decode()


class ToolRegistry:
    """Tools by name, in registration order (then each open toolset's, in its order).

    Args:
        tools: Tools to register at once; plain functions are wrapped with :func:`tool`;
            toolsets (MCP servers) bring their tools while they are open.
    """

    def __init__(self, tools: Iterable[Tool | Toolset | Callable[..., Any]] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        self._toolsets: list[Toolset] = []
        if isinstance(tools, ToolRegistry):  # its own tools, and its toolsets (not their tools)
            tools = [*tools._tools.values(), *tools._toolsets]
        for item in tools:
            if isinstance(item, Toolset) and not isinstance(item, Tool):
                self._toolsets.append(item)
            else:
                self.register(item)

    @property
    def toolsets(self) -> tuple[Toolset, ...]:
        """The toolsets (MCP servers) whose tools join while they are open."""
        return tuple(self._toolsets)

    @asynccontextmanager
    async def opened(self, tasks: Iterable[Task] = ()) -> AsyncIterator[ToolRegistry]:
        """Open every toolset for the body (an MCP server starts, or is joined if open).

        They are closed when the body ends, however it ends.

        Args:
            tasks: Tasks whose allowlists must name only tools that exist once open.

        Raises:
            MCPServerError: A server did not start (those already open are closed).
            ToolDefinitionError: Two tools share a name (two servers of one name, say).
            PlanValidationError: A task names a tool no open toolset has (each listed).
        """
        if not self._toolsets:
            yield self
            return
        async with AsyncExitStack() as stack:
            for toolset in self._toolsets:
                await stack.enter_async_context(toolset)
            check_unique(self._tools, self._toolsets)
            check_allowlists(tasks, self._all())
            yield self

    def known(self) -> Collection[str]:
        """The names a plan may use: the tools', and those toolsets not open yet may provide."""
        if not self._toolsets:
            return self._tools.keys()
        return KnownNames(self._all(), self._toolsets)

    def _all(self) -> dict[str, Tool]:
        if not self._toolsets:
            return self._tools
        merged = dict(self._tools)
        for toolset in self._toolsets:
            for item in toolset.tools:
                merged.setdefault(item.name, item)
        return merged

    def register(self, item: Tool | Callable[..., Any]) -> Tool:
        """Add a tool; also usable as a decorator on a plain function.

        Args:
            item: A :class:`~orchestrator.tool.Tool`, or a typed function to wrap with
                :func:`tool`.

        Returns:
            The registered tool.

        Raises:
            ToolDefinitionError: A tool of that name is already registered, or the function
                cannot be made into a tool.
        """
        registered = item if isinstance(item, Tool) else tool(item)
        if registered.name in self._all():
            raise ToolDefinitionError(f"a tool named {registered.name!r} is already registered")
        self._tools[registered.name] = registered
        return registered

    def get(self, name: str) -> Tool:
        """The tool called ``name``.

        Raises:
            UnknownToolError: No such tool (a ``KeyError``); the message lists the known ones.
        """
        try:
            return self._all()[name]
        except KeyError:
            raise UnknownToolError(f"no tool named {name!r}; {self._known()}") from None

    def names(self) -> list[str]:
        """The registered names, in registration order (open toolsets' tools last)."""
        return list(self._all())

    def subset(self, allowlist: Iterable[str]) -> ToolRegistry:
        """A new registry with only the allowed tools (in registration order).

        Args:
            allowlist: Names of the tools to keep; each must be registered.

        Returns:
            The smaller registry.

        Raises:
            TypeError: ``allowlist`` is a single string rather than a collection of names.
            UnknownToolError: Some names are not registered; all of them are listed.
        """
        if isinstance(allowlist, str):
            raise TypeError("allowlist must be a collection of tool names, not a single string")
        allowed = list(dict.fromkeys(allowlist))
        tools = self._all()
        unknown = [name for name in allowed if name not in tools]
        if unknown:
            listed = ", ".join(repr(name) for name in unknown)
            raise UnknownToolError(f"unknown tool name(s) in allowlist: {listed}; {self._known()}")
        return ToolRegistry(t for name, t in tools.items() if name in allowed)

    def __getitem__(self, name: str) -> Tool:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._all()

    def __iter__(self) -> Iterator[Tool]:
        return iter(list(self._all().values()))

    def __len__(self) -> int:
        return len(self._all())

    def __repr__(self) -> str:
        return f"ToolRegistry({self.names()!r})"

    def _known(self) -> str:
        names = list(self._all()) + [hint(t) for t in self._toolsets if not t.tools]
        if not names:
            return "no tools are registered"
        return "known tools: " + ", ".join(names)


# -- schema and validation -------------------------------------------------------------


def _is_async(fn: Callable[..., Any]) -> bool:
    call = getattr(fn, "__call__", None)  # noqa: B004  (an object with an async __call__)
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)


def _arguments_model(
    fn: Callable[..., Any], tool_name: str, descriptions: Mapping[str, str]
) -> tuple[type[BaseModel], tuple[_Param, ...]]:
    """A pydantic model of the parameters (fields aliased to the parameter names)."""
    try:
        signature = inspect.signature(fn, eval_str=True)
    except (NameError, TypeError, ValueError) as exc:
        raise ToolDefinitionError(f"tool {tool_name!r}: cannot read its signature ({exc})") from exc
    fields: dict[str, Any] = {}
    params: list[_Param] = []
    for index, param in enumerate(signature.parameters.values()):
        where = f"tool {tool_name!r}, parameter {param.name!r}"
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ToolDefinitionError(f"{where}: *args and **kwargs cannot be described")
        if param.annotation is param.empty:
            raise ToolDefinitionError(f"{where}: needs a type annotation")
        default = ... if param.default is param.empty else param.default
        text = descriptions.get(param.name)
        info = (
            Field(default, alias=param.name)
            if text is None
            else Field(default, alias=param.name, description=text)
        )
        field = f"arg{index}"  # aliased: any parameter name works, even `json` or `_x`
        fields[field] = (param.annotation, info)
        params.append(_Param(param.name, field, param.kind is param.POSITIONAL_ONLY))
    try:
        model = create_model(
            f"{tool_name}_arguments", __config__=ConfigDict(extra="forbid"), **fields
        )
        model.model_json_schema()
    except Exception as exc:  # pydantic raises several kinds for unsupported types
        raise ToolDefinitionError(f"tool {tool_name!r}: cannot build its schema ({exc})") from exc
    return model, tuple(params)


def _clean_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Drop ``title`` clutter; put ``type``, ``properties`` and ``required`` first."""
    cleaned = _strip_titles(schema)
    cleaned.setdefault("properties", {})
    head = {"type": "object", "properties": cleaned.pop("properties")}
    if cleaned.get("required"):
        head["required"] = cleaned.pop("required")
    cleaned.pop("type", None)
    return {**head, **cleaned}


def _strip_titles(node: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title" and isinstance(value, str):
            continue
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {k: _strip_titles(v) if isinstance(v, dict) else v for k, v in value.items()}
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [_strip_titles(v) if isinstance(v, dict) else v for v in value]
        elif key in _SCHEMA_ONE and isinstance(value, dict):
            out[key] = _strip_titles(value)
        else:
            out[key] = value  # data (default, enum, const, examples) is left alone
    return out


def _argument_error(tool_name: str, exc: ValidationError, accepted: list[str]) -> ToolArgumentError:
    problems: list[str] = []
    for error in exc.errors(include_url=False):
        loc = error["loc"]
        path = ".".join(str(part) for part in loc) or "arguments"
        if error["type"] == "missing" and len(loc) == 1:
            problems.append(f"missing required argument {path!r}")
        elif error["type"] == "extra_forbidden" and len(loc) == 1:
            takes = ", ".join(accepted) or "no arguments"
            problems.append(f"unexpected argument {path!r} (this tool takes: {takes})")
        else:
            problems.append(f"argument {path!r}: {error['msg']} (got {_shown(error['input'])})")
    return ToolArgumentError(f"invalid arguments for {tool_name!r}: " + "; ".join(problems))


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN_INPUT else text[: _MAX_SHOWN_INPUT - 3] + "..."
