"""The tool interface the engine and model clients see.

Concrete tools (typed functions, the corpus tools, MCP servers' tools) live in
:mod:`orchestrator.tools`; the engine's tool loop (:mod:`orchestrator.turns`) only needs
the :class:`Tool` protocol. A :class:`Toolset` is a source of tools that must be open to
be used (an MCP server: a process or a connection); a run opens the engine's toolsets
before its first call and closes them after its last.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

__all__ = ["ServerTool", "Tool", "Toolset"]


@runtime_checkable
class Tool(Protocol):
    """A function a model may call during an attempt."""

    @property
    def name(self) -> str:
        """Name the model calls the tool by."""
        ...

    @property
    def description(self) -> str:
        """What the tool does, for the model."""
        ...

    @property
    def input_schema(self) -> dict[str, Any]:
        """JSON Schema of the tool's arguments."""
        ...

    async def __call__(self, arguments: Mapping[str, Any]) -> str:
        """Run the tool; raise to report an error to the model."""
        ...


@runtime_checkable
class Toolset(Protocol):
    """Tools that exist while a connection is open (an MCP server's); an async context.

    Entering it starts (or joins) the connection and lists its tools; leaving it lets it
    go. It may be entered more than once, from more than one task: it stays open until
    the last user leaves.
    """

    @property
    def name(self) -> str:
        """What errors call it (an MCP server's name; empty until known)."""
        ...

    @property
    def tools(self) -> Sequence[Tool]:
        """Its tools while it is open; empty before."""
        ...

    def may_provide(self, name: str) -> bool:
        """Whether ``name`` can be one of its tools (checked before it is open)."""
        ...

    async def __aenter__(self) -> Any:
        """Open it (or join it, already open): its tools are listed on return."""
        ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        """Leave it; the last user out closes it."""
        ...


@dataclass(frozen=True)
class ServerTool:
    """A tool the model provider runs on its side (Anthropic's web search, web fetch...).

    It is named in task allowlists like any tool; the client sends ``definition`` as is
    and never runs it locally: its calls and results arrive inside the model's answer.

    Attributes:
        name: The tool's name (``definition["name"]``).
        definition: The tool entry of the Messages API request, e.g.
            ``{"type": "web_search_20260318", "name": "web_search", "max_uses": 5}``.
        description: What it does, for planners' catalogues.
    """

    name: str
    definition: dict[str, Any] = field(hash=False)
    description: str = ""

    @property
    def input_schema(self) -> dict[str, Any]:
        """Server tools have no local arguments schema."""
        return {}

    @property
    def max_searches(self) -> int:
        """Web searches one request may make with this tool (its ``max_uses``), else 0."""
        if not str(self.definition.get("type", "")).startswith("web_search"):
            return 0
        return int(self.definition.get("max_uses", 0))

    async def __call__(self, arguments: Mapping[str, Any]) -> str:
        """Never called: the provider runs server tools."""
        raise RuntimeError(f"{self.name} is a server-side tool; the API runs it")
