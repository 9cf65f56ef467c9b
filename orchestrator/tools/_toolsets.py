"""What a :class:`~orchestrator.tools.registry.ToolRegistry` checks of its toolsets.

Before a toolset (an MCP server) is open its tools are unknown, so a plan naming them is
checked against what it *may* provide (:class:`KnownNames`); once open, no two tools may
share a name (:func:`check_unique`) and every allowlisted name must exist
(:func:`check_allowlists`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from orchestrator.exceptions import PlanProblem, PlanValidationError
from orchestrator.tool import Tool, Toolset
from orchestrator.tools.errors import ToolDefinitionError

if TYPE_CHECKING:
    from orchestrator.plan import Task

__all__ = ["KnownNames", "check_allowlists", "check_unique", "hint"]


class KnownNames(Collection[str]):
    """Tool names a plan may use: ``names``, and what toolsets not open yet may provide.

    Iterating gives the names, then a pattern per unopened toolset (``mcp__toolbox__*``),
    which is how a plan's "unknown tool" problem lists what is known.
    """

    def __init__(self, names: Collection[str], toolsets: Sequence[Toolset]) -> None:
        self._names = names
        self._toolsets = toolsets

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        return name in self._names or any(t.may_provide(name) for t in self._toolsets)

    def __iter__(self) -> Iterator[str]:
        pending = [hint(t) for t in self._toolsets if not t.tools]
        return iter([*self._names, *pending])

    def __len__(self) -> int:
        return len(self._names) + sum(1 for t in self._toolsets if not t.tools)


def hint(toolset: Toolset) -> str:
    """How a toolset's tool names look before it is open (an MCP server's ``hint``)."""
    pattern = getattr(toolset, "hint", None)
    return pattern if isinstance(pattern, str) else f"the tools of {toolset.name or 'a toolset'}"


def check_unique(tools: Mapping[str, Tool], toolsets: Sequence[Toolset]) -> None:
    """Refuse two tools of one name among ``tools`` and the open toolsets' tools.

    Raises:
        ToolDefinitionError: Naming the tool and both of its sources.
    """
    given = dict.fromkeys(tools, "a tool given to the engine")
    for toolset in toolsets:
        for item in toolset.tools:
            if item.name in given:
                raise ToolDefinitionError(
                    f"two tools are named {item.name!r}: {given[item.name]} and one of "
                    f"{toolset.name!r}; MCP tools are named mcp__<server>__<tool>: give the "
                    "servers different names (MCPServer(name=...), the keys of a config file)"
                )
            given[item.name] = f"one of {toolset.name!r}"


def check_allowlists(tasks: Iterable[Task], tools: Collection[str]) -> None:
    """Refuse tasks whose allowlists name tools that are not among ``tools``.

    Raises:
        PlanValidationError: One problem per unknown name, naming its task.
    """
    known = ", ".join(tools) or "none"
    problems = [
        PlanProblem(task.id, f"unknown tool {name!r} (known: {known})")
        for task in tasks
        for name in task.tools
        if name not in tools
    ]
    if problems:
        raise PlanValidationError(problems)
