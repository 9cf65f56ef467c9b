"""The tool interface the engine and model clients see.

Concrete tools (typed functions, the corpus tools) live in :mod:`orchestrator.tools`; the
engine's tool loop (:mod:`orchestrator.turns`) only needs this protocol.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = ["ServerTool", "Tool"]


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
