"""Errors raised by tools and by the tool registry.

A tool that raises during a call has its error sent back to the model as an ``is_error``
tool result (``"<ExceptionName>: <message>"``), so every message here is written for the
model as much as for a person: it names the argument, id or tool that is wrong and says
what would be right.

The tree::

    OrchestratorError
    ├── UserError
    │   ├── ToolDefinitionError     a function cannot be turned into a tool
    │   ├── UnknownToolError        a tool name is not registered (also a KeyError)
    │   └── MCPServerError          an MCP server cannot start or is declared wrong
    └── ToolError                   a tool call failed; reported to the model
        ├── ToolArgumentError       the arguments failed validation (also a ValueError)
        ├── ToolTimeoutError        the call ran past the tool's own timeout
        ├── MCPToolError            an MCP tool answered isError, or its server stopped
        ├── PassageNotFoundError    no passage has that id (also a KeyError)
        └── PassagePathError        the id points outside the corpus root (also a PermissionError)
"""

from __future__ import annotations

from orchestrator.exceptions import OrchestratorError, UserError

__all__ = [
    "MCPServerError",
    "MCPToolError",
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


class MCPServerError(UserError):
    """An MCP server cannot be used: it did not start, refused, or is declared wrong.

    The message names the server (its command line, URL or config entry) and what is wrong;
    a stdio server's last lines of stderr are quoted when it said why.
    """


class ToolError(OrchestratorError):
    """A tool call failed; the engine reports it to the model as an ``is_error`` result."""


class ToolArgumentError(ToolError, ValueError):
    """The arguments of a tool call failed validation; the message names each argument."""


class ToolTimeoutError(ToolError):
    """A tool call ran longer than the tool's own ``timeout_s``.

    It is deliberately not a :class:`TimeoutError`: the engine treats that as its own
    per-call timeout and would report the wrong limit.
    """


class MCPToolError(ToolError):
    """An MCP tool answered with ``isError`` (its text is the message), or its server stopped."""


class PassageNotFoundError(ToolError, _PlainKeyError):
    """No passage in the corpus has the requested id."""


class PassagePathError(ToolError, PermissionError):
    """A passage id whose path is absolute, climbs out with ``..`` or resolves outside."""
