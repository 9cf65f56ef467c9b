"""A real MCP server (the ``mcp`` SDK, over stdio) whose tools misbehave on purpose.

``hang`` never returns (until cancelled), ``fail`` answers ``isError``, ``crash`` kills the
process mid-call, ``echo`` and ``pid`` work: what tests/tools/test_tools_mcp.py checks the
engine survives.
"""

from __future__ import annotations

import os
import sys

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("faulty", log_level="ERROR")


@server.tool()
def echo(text: str) -> str:
    """Return the text."""
    return text


@server.tool()
def pid() -> str:
    """The server process's id."""
    return str(os.getpid())


@server.tool()
async def hang() -> str:
    """Never return."""
    await anyio.Event().wait()
    return "unreachable"


@server.tool()
def fail(reason: str) -> str:
    """Answer with an error."""
    raise ToolError(f"failed on purpose: {reason}")


@server.tool()
def crash() -> str:
    """Exit the process in the middle of the call."""
    sys.stderr.write("crashing on purpose\n")
    sys.stderr.flush()
    os._exit(3)


if __name__ == "__main__":
    server.run()
