"""The tool interface the engine and model clients see.

Concrete tools (typed functions, the corpus tools) live in the top-level ``tools`` package;
the engine only needs this protocol.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

__all__ = ["Tool"]


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
