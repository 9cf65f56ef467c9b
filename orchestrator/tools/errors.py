"""Errors raised by tools and by the tool registry.

A tool that raises during a call has its error sent back to the model as an ``is_error``
tool result (``"<ExceptionName>: <message>"``), so every message here is written for the
model as much as for a person: it names the argument, id or tool that is wrong and says
what would be right.

The tree::

    OrchestratorError
    ├── UserError
    │   ├── ToolDefinitionError     a function cannot be turned into a tool
    │   └── UnknownToolError        a tool name is not registered (also a KeyError)
    └── ToolError                   a tool call failed; reported to the model
        ├── ToolArgumentError       the arguments failed validation (also a ValueError)
        ├── ToolTimeoutError        the call ran past the tool's own timeout
        ├── PassageNotFoundError    no passage has that id (also a KeyError)
        └── PassagePathError        the id points outside the corpus root (also a PermissionError)
"""

from __future__ import annotations

from orchestrator.exceptions import OrchestratorError, UserError

__all__ = [
    "PassageNotFoundError",
    "PassagePathError",
    "ToolArgumentError",
    "ToolDefinitionError",
    "ToolError",
    "ToolTimeoutError",
    "UnknownToolError",
]


class _PlainKeyError(KeyError):
    """A ``KeyError`` whose ``str()`` is its message, not the quoted ``repr`` of it."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ToolDefinitionError(UserError):
    """A function cannot be made into a tool (missing annotation, ``*args``, bad name...)."""


class UnknownToolError(UserError, _PlainKeyError):
    """A tool name is not registered; the message lists the tools that are."""


class ToolError(OrchestratorError):
    """A tool call failed; the engine reports it to the model as an ``is_error`` result."""


class ToolArgumentError(ToolError, ValueError):
    """The arguments of a tool call failed validation; the message names each argument."""


class ToolTimeoutError(ToolError):
    """A tool call ran longer than the tool's own ``timeout_s``.

    It is deliberately not a :class:`TimeoutError`: the engine treats that as its own
    per-call timeout and would report the wrong limit.
    """


class PassageNotFoundError(ToolError, _PlainKeyError):
    """No passage in the corpus has the requested id."""


class PassagePathError(ToolError, PermissionError):
    """A passage id whose path is absolute, climbs out with ``..`` or resolves outside."""
