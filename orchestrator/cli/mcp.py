"""``--mcp`` and ``--mcp-config``: MCP tool servers for ``run`` and ``resume`` (docs/mcp.md).

The servers are started before the run (a server that does not start is bad input: exit
2, naming it and why) and stopped after it, however it ends.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from orchestrator.exceptions import UserError
from orchestrator.tools.mcp import MCPServer
from orchestrator.tools.mcp_config import load_mcp_config, server_from_spec
from orchestrator.tools.registry import ToolRegistry

__all__ = ["add_flags", "mcp_servers", "servers_of"]


def add_flags(parser: argparse.ArgumentParser) -> None:
    """Add ``--mcp`` and ``--mcp-config`` (both repeatable)."""
    parser.add_argument(
        "--mcp", action="append", default=[], metavar="COMMAND|URL",
        help="an MCP server whose tools tasks may use (named mcp__<server>__<tool>): a "
        "command line (stdio) or an http(s) URL (streamable HTTP); repeatable",
    )  # fmt: skip
    parser.add_argument(
        "--mcp-config", action="append", default=[], metavar="FILE",
        help='MCP servers from a JSON file of {"mcpServers": {...}} (the Claude Desktop and '
        "Claude Code format); repeatable",
    )  # fmt: skip


def servers_of(args: argparse.Namespace) -> list[MCPServer]:
    """The servers ``--mcp`` and ``--mcp-config`` declare (none started).

    Raises:
        UserError: A value or a config file is malformed, named with its flag.
    """
    servers = []
    for spec in getattr(args, "mcp", None) or ():
        try:
            servers.append(server_from_spec(spec))
        except UserError as exc:
            raise UserError(f"--mcp {spec!r}: {exc}") from None
    for path in getattr(args, "mcp_config", None) or ():
        try:
            servers += load_mcp_config(path)
        except UserError as exc:
            raise UserError(f"--mcp-config: {exc}") from None
    return servers


@asynccontextmanager
async def mcp_servers(args: argparse.Namespace) -> AsyncIterator[list[MCPServer]]:
    """Start the declared servers for the body; stop them after it.

    Raises:
        UserError: A server did not start, or two give tools of one name.
    """
    servers = servers_of(args)
    if not servers:
        yield []
        return
    async with ToolRegistry(servers).opened():
        if not args.json:
            for server in servers:
                names = ", ".join(tool.name for tool in server.tools) or "no tools"
                print(f"mcp: {server.name} ({server.label}): {names}", file=sys.stderr)
        yield servers
