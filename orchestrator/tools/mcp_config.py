"""MCP servers declared in text: a config file, or a ``--mcp`` value (:func:`server_from_spec`).

The file is the ``mcpServers`` JSON of Claude Desktop and Claude Code:

::

    {
      "mcpServers": {
        "toolbox": {"command": "python", "args": ["examples/mcp_server.py"]},
        "remote": {"type": "http", "url": "https://example.com/mcp",
                   "headers": {"Authorization": "Bearer ${TOKEN}"}}
      }
    }

Each key names a server (its tools are ``mcp__<key>__<tool>``). A stdio entry has
``command`` (and ``args``, ``env``, ``cwd``); an HTTP entry has ``url`` (and ``headers``);
``type`` (``stdio``, ``http`` or ``streamable-http``) may say which, and
``timeout_s`` limits one call. ``${VAR}`` and ``${VAR:-default}`` in any string are
replaced by the environment's value, as Claude Code does. Every problem is named with the
file and the server's key; nothing is started while loading.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestrator.tools.errors import MCPServerError
from orchestrator.tools.mcp import URL, MCPServer

__all__ = ["load_mcp_config", "parse_mcp_config", "server_from_spec"]

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Entry(BaseModel):
    """One server of the file."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["stdio", "http", "streamable-http", "sse"] | None = None
    """Which transport; implied by ``command`` or ``url`` when absent."""
    command: str | None = None
    """The executable of a stdio server."""
    args: list[str] = Field(default_factory=list)
    """Its arguments."""
    env: dict[str, str] = Field(default_factory=dict)
    """Environment variables over the default set."""
    cwd: str | None = None
    """Its working directory."""
    url: str | None = None
    """The endpoint of a streamable-HTTP server."""
    headers: dict[str, str] = Field(default_factory=dict)
    """HTTP headers sent with every request."""
    timeout_s: float | None = Field(default=None, gt=0)
    """Limit on one tool call."""


def load_mcp_config(path: str | Path) -> list[MCPServer]:
    """The servers of an ``mcpServers`` JSON file, in file order (none started).

    Raises:
        MCPServerError: The file cannot be read, is not JSON, or an entry is wrong (the
            file, the server's key and the field are named).
    """
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise MCPServerError(f"MCP config {source}: cannot read it ({exc.strerror})") from None
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise MCPServerError(f"MCP config {source}: not JSON ({exc})") from None
    return parse_mcp_config(document, source=str(source))


def parse_mcp_config(
    document: object, *, source: str = "MCP config", environ: Mapping[str, str] | None = None
) -> list[MCPServer]:
    """The servers of a parsed ``mcpServers`` document.

    Args:
        document: The parsed JSON: an object with an ``mcpServers`` object.
        source: How errors name the document (its file).
        environ: Where ``${VAR}`` is looked up; default: ``os.environ``.

    Raises:
        MCPServerError: Naming ``source``, the server's key and what is wrong.
    """
    servers = document.get("mcpServers") if isinstance(document, dict) else None
    if not isinstance(servers, dict):
        raise MCPServerError(
            f'{source}: expected {{"mcpServers": {{"<name>": {{"command": ...}}}}}} '
            "(the Claude Desktop / Claude Code format)"
        )
    env = os.environ if environ is None else environ
    return [_server(str(key), value, source, env) for key, value in servers.items()]


def server_from_spec(spec: str, *, name: str | None = None) -> MCPServer:
    """The server a ``--mcp`` value names: a URL (``http(s)://...``), else a command line.

    Raises:
        MCPServerError: The value is empty or its quotes do not close.
    """
    text = spec.strip()
    if URL.match(text):
        return MCPServer(url=text, name=name)
    return MCPServer(text, name=name)


def _server(key: str, raw: object, source: str, environ: Mapping[str, str]) -> MCPServer:
    where = f"{source}: server {key!r}"
    try:
        entry = _Entry.model_validate(_expand(raw, environ, where))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'entry'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise MCPServerError(f"{where}: {problems}") from None
    kind = entry.type or ("stdio" if entry.command is not None else "http")
    if kind == "sse":
        raise MCPServerError(f"{where}: SSE servers are not supported; use streamable HTTP")
    if kind == "stdio" and (entry.command is None or entry.url is not None):
        raise MCPServerError(f"{where}: a stdio server has a command (and no url)")
    if kind != "stdio" and (entry.url is None or entry.command is not None):
        raise MCPServerError(f"{where}: an HTTP server has a url (and no command)")
    try:
        if kind == "stdio":
            assert entry.command is not None
            return MCPServer(
                [entry.command, *entry.args], name=key, env=entry.env, cwd=entry.cwd,
                timeout_s=entry.timeout_s,
            )  # fmt: skip
        return MCPServer(url=entry.url, name=key, headers=entry.headers, timeout_s=entry.timeout_s)
    except MCPServerError as exc:
        raise MCPServerError(f"{where}: {exc}") from None


def _expand(value: Any, environ: Mapping[str, str], where: str) -> Any:
    """``value`` with ``${VAR}`` / ``${VAR:-default}`` replaced in every string."""
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in environ:
                return environ[name]
            if default is not None:
                return default
            raise MCPServerError(f"{where}: ${{{name}}} is not set (write ${{{name}:-default}})")

        return _VARIABLE.sub(replace, value)
    if isinstance(value, list):
        return [_expand(item, environ, where) for item in value]
    if isinstance(value, dict):
        return {key: _expand(item, environ, where) for key, item in value.items()}
    return value
