"""MCP tool servers as tools, through the official ``mcp`` SDK (the ``mcp`` extra).

::

    toolbox = MCPServer("python examples/mcp_server.py")  # stdio: a command line
    remote = MCPServer(url="http://127.0.0.1:8000/mcp")  # streamable HTTP
    engine = Engine(client, tools=[toolbox, remote])

An :class:`MCPServer` is a :class:`~orchestrator.tool.Toolset`: a run opens it before its
first call (the process starts, or the connection is made, and its tools are listed) and
closes it after its last, on success, error or cancel alike. Each tool of the server is an
:class:`MCPTool` named ``mcp__<server>__<tool>`` (Claude Code's convention), with the
server's description and input schema; tasks name it in their allowlists like any tool.

A tool's answer with ``isError`` and a server that stopped are both :class:`MCPToolError`
(reported to the model as an ``is_error`` result, never a crashed run); a server that
cannot start (a command that is not found or exits, a URL that refuses, no answer within
``connect_timeout_s``) is an :class:`MCPServerError`, a :class:`UserError`.

The connection is owned by a task of the server's own (so a failing transport never
cancels the run that uses it); the SDK is imported only when a server opens.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import sys
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TextIO, cast

import anyio
import anyio.to_thread
from anyio.abc import TaskGroup, TaskStatus

from orchestrator.tools.errors import MCPServerError, MCPToolError

if TYPE_CHECKING:
    from mcp import Client
    from mcp.types import CallToolResult, ContentBlock
    from mcp.types import Tool as ListedTool

__all__ = ["PREFIX", "URL", "MCPServer", "MCPTool", "result_text"]

PREFIX = "mcp__"
"""What every MCP tool's name starts with: ``mcp__<server>__<tool>``."""
_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]+")
URL = re.compile(r"^https?://", re.IGNORECASE)
"""What a streamable-HTTP server's address starts with."""
_CLOSE_GRACE_S = 5.0
_STDERR_TAIL = 600
_MAX_PAGES = 100


def _safe(text: str) -> str:
    """``text`` with runs of characters tool names cannot hold made ``_``."""
    return _UNSAFE.sub("_", text).strip("_")


@dataclass(frozen=True)
class MCPTool:
    """One tool of an MCP server, as the engine sees it (a :class:`~orchestrator.tool.Tool`).

    Attributes:
        name: ``mcp__<server>__<tool>``.
        description: The server's description of the tool.
        schema: The server's JSON Schema of its arguments.
        server: The server that runs it.
        remote_name: Its name on the server.
    """

    name: str
    description: str
    schema: dict[str, Any] = field(repr=False, hash=False)
    server: MCPServer = field(repr=False, compare=False)
    remote_name: str = ""

    @property
    def input_schema(self) -> dict[str, Any]:
        """JSON Schema of the tool's arguments, as the server listed it (a copy)."""
        return json.loads(json.dumps(self.schema))  # type: ignore[no-any-return]

    async def __call__(self, arguments: Mapping[str, Any]) -> str:
        """Call the tool on its server; its text content is the result.

        Raises:
            MCPToolError: The tool answered with ``isError``, or the server stopped.
        """
        return await self.server.call(self.remote_name, dict(arguments))


class MCPServer:
    """An MCP server whose tools models may call (a :class:`~orchestrator.tool.Toolset`).

    Args:
        command: The command line of a stdio server (split like a shell would, without
            one), or its words as a list.
        url: The endpoint of a streamable-HTTP server (``http://`` or ``https://``).
        name: What its tools are prefixed with (``mcp__<name>__``); default: the name the
            server gives itself when it starts (letters, digits, ``_`` and ``-`` kept).
        env: Environment variables for a stdio server, over a safe default set
            (``HOME``, ``PATH``, ``USER``...; the SDK's ``get_default_environment``).
        cwd: Working directory of a stdio server; default: this process's.
        headers: HTTP headers for a URL server (an ``Authorization`` token, say).
        timeout_s: Limit on one tool call, or ``None`` for only the engine's own
            (``RunConfig.tool_timeout_s``).
        connect_timeout_s: How long starting and listing its tools may take.
        stderr: Where a stdio server's stderr goes; default: kept, and its last lines
            quoted in errors (a server that fails to start says why there).

    Raises:
        MCPServerError: Neither or both of ``command`` and ``url``, an empty or unclosed
            command line, a URL that is not HTTP, a bad name or timeout.
    """

    def __init__(
        self,
        command: str | Sequence[str] | None = None,
        *,
        url: str | None = None,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
        connect_timeout_s: float = 30.0,
        stderr: TextIO | None = None,
    ) -> None:
        self.command = _words(command) if command is not None else None
        self.url = url
        self.label = shlex.join(self.command) if self.command else str(url)
        """The command line or URL, as errors name the server."""
        _check(self, name, timeout_s, connect_timeout_s)
        self.env = dict(env or {})
        self.cwd = cwd
        self.headers = dict(headers or {})
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.stderr = stderr
        self._given_name = name
        self._reported_name = ""
        self._tools: tuple[MCPTool, ...] = ()
        self._client: Client | None = None
        self._failure: str | None = None
        self._errlog: TextIO | None = None
        self._group: TaskGroup | None = None
        self._owner: object = None
        self._users: Counter[object] = Counter()
        self._lock = anyio.Lock()
        self._stop = anyio.Event()
        self._stopped = anyio.Event()
        self._idle: anyio.Event | None = None

    def __repr__(self) -> str:
        where = f"command={self.label!r}" if self.command else f"url={self.url!r}"
        return f"MCPServer({where}, name={self.name or None!r})"

    @property
    def name(self) -> str:
        """The name its tools are prefixed with (the server's own, once open, if none given)."""
        return self._given_name or self._reported_name

    @property
    def tools(self) -> Sequence[MCPTool]:
        """Its tools while open (listed when it opened); empty before."""
        return self._tools

    @property
    def is_open(self) -> bool:
        """Whether it is open (started and its tools listed)."""
        return self._group is not None

    @property
    def hint(self) -> str:
        """How its tool names look before it opens (for error messages)."""
        return f"{PREFIX}{self.name or '<server>'}__*"

    def may_provide(self, name: str) -> bool:
        """Whether ``name`` may be one of its tools: exactly, once open; by prefix before."""
        if self.is_open:
            return any(tool.name == name for tool in self._tools)
        return name.startswith(f"{PREFIX}{self.name}__" if self.name else PREFIX)

    # -- lifecycle ------------------------------------------------------------------

    async def __aenter__(self) -> MCPServer:
        """Start the server (or join it, open already) and list its tools.

        Raises:
            MCPServerError: It did not start: the message names the command or URL and why.
        """
        me = anyio.get_current_task().id
        async with self._lock:
            if self._group is None:
                await self._open()
                self._owner = me
            self._users[me] += 1
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Leave; the task that opened it closes it once every other user has left."""
        me = anyio.get_current_task().id
        self._users[me] -= 1
        if self._users[me] <= 0:
            del self._users[me]
        if me != self._owner or me in self._users:
            if not self._users and self._idle is not None:
                self._idle.set()
            return
        try:
            while self._users:  # other runs still use it: their calls finish first
                self._idle = anyio.Event()
                await self._idle.wait()
        finally:
            await self._close()

    async def _open(self) -> None:
        self._stop, self._stopped, self._failure = anyio.Event(), anyio.Event(), None
        group = anyio.create_task_group()
        await group.__aenter__()
        try:
            await group.start(self._serve)
        except BaseException:  # it did not start: its task has ended, the group is empty
            await group.__aexit__(None, None, None)
            raise
        self._group = group

    async def _close(self) -> None:
        with anyio.CancelScope(shield=True):  # closed even when cancelled
            await self._lock.acquire()  # nobody joins it while it closes
        group, self._group, self._owner = self._group, None, None
        try:
            self._stop.set()
            with anyio.move_on_after(_CLOSE_GRACE_S):
                await self._stopped.wait()
        finally:
            if group is not None:
                group.cancel_scope.cancel()
                await group.__aexit__(None, None, None)
            self._tools = ()
            self._lock.release()

    async def _serve(self, *, task_status: TaskStatus[None]) -> None:
        """Own the connection: connect, list the tools, wait for the stop, disconnect."""
        started = False
        async with AsyncExitStack() as stack:
            self._errlog = await self._stderr_file(stack)
            try:
                deadline = anyio.current_time() + self.connect_timeout_s
                with anyio.CancelScope(deadline=deadline) as scope:
                    async with self._connect() as client:
                        self._adopt(client, await _list_tools(client))
                        scope.deadline = math.inf
                        started = True
                        task_status.started()
                        await self._stop.wait()
                if not started:
                    wait = f"no answer within {self.connect_timeout_s:g}s"
                    raise MCPServerError(self._why(wait, await self._stderr_tail()))
            except MCPServerError:
                raise
            except Exception as exc:  # noqa: BLE001  (what the transport raised, named)
                if not started:
                    raise MCPServerError(await self._start_error(exc)) from None
                self._failure = _reason(exc)  # it fell over outside a call; calls say so
            finally:
                self._client = None
                self._stopped.set()
        self._errlog = None

    @asynccontextmanager
    async def _connect(self) -> AsyncIterator[Client]:
        try:
            from mcp import Client, StdioServerParameters, stdio_client  # noqa: PLC0415
        except ImportError as exc:  # the optional extra
            raise MCPServerError(
                f"MCP server {self.label}: the MCP SDK is not installed ({exc.msg}): "
                "pip install 'tiered-orchestrator[mcp]'"
            ) from None

        async with AsyncExitStack() as stack:
            if self.command:
                params = StdioServerParameters(
                    command=self.command[0], args=list(self.command[1:]),
                    env=self.env or None, cwd=self.cwd,
                )  # fmt: skip
                client = Client(stdio_client(params, errlog=self._errlog or sys.stderr))
            else:
                assert self.url is not None
                client = Client(await _http_transport(self.url, self.headers, stack))
            yield await stack.enter_async_context(client)

    async def _stderr_file(self, stack: AsyncExitStack) -> TextIO | None:
        if self.stderr is not None or not self.command:
            return self.stderr
        errlog = cast(TextIO, await anyio.to_thread.run_sync(tempfile.TemporaryFile, "w+"))
        stack.callback(errlog.close)
        return errlog

    def _adopt(self, client: Client, listed: Sequence[ListedTool]) -> None:
        info = client.server_info
        self._reported_name = _safe(info.name if info and info.name else "") or self._fallback()
        prefix = f"{PREFIX}{self.name}__"
        tools = []
        for item in listed:
            name = prefix + (_safe(item.name) or "tool")
            if not _NAME.match(name):
                raise MCPServerError(
                    f"MCP server {self.label}: tool {item.name!r} would be named {name!r}, "
                    "over 64 characters: give the server a shorter name"
                )
            description = item.description or item.title or f"{item.name} (MCP server {self.name})"
            schema = dict(item.input_schema) or {"type": "object", "properties": {}}
            tools.append(MCPTool(name, description, schema, self, item.name))
        self._tools = tuple(tools)
        self._client = client

    def _fallback(self) -> str:
        """A name when the server gives none: the script's or command's stem, or the host."""
        if self.command:
            script = next((w for w in reversed(self.command) if "." in Path(w).name), None)
            return _safe(Path(script or self.command[0]).stem) or "server"
        host = re.sub(URL, "", str(self.url)).split("/", 1)[0].split(":", 1)[0]
        return _safe(host) or "server"

    # -- calls ----------------------------------------------------------------------

    async def call(self, tool: str, arguments: dict[str, Any]) -> str:
        """Call ``tool`` (its name on the server) and return its content as text.

        Raises:
            MCPToolError: The tool answered with ``isError`` (its text is the message), the
                server is not open, or it stopped (its stderr's last lines quoted).
        """
        client = self._client
        if client is None:
            state = f"it stopped: {self._failure}" if self._failure else "it is not open"
            raise MCPToolError(f"MCP server {self.name!r} cannot run {tool!r}: {state}")
        from mcp import MCPError  # noqa: PLC0415  (loaded with the client)

        try:
            result = await client.call_tool(tool, arguments, read_timeout_seconds=self.timeout_s)
        except MCPError as exc:
            if not _closed(exc):
                raise MCPToolError(f"MCP server {self.name!r}: {exc}") from None
            self._client, self._failure = None, await self._stopped_why()
            raise MCPToolError(f"MCP server {self.name!r} stopped: {self._failure}") from None
        text = result_text(result)
        if result.is_error:
            raise MCPToolError(text or f"{tool} failed (no message)")
        return text

    # -- messages -------------------------------------------------------------------

    async def _stderr_tail(self) -> str:
        errlog = self._errlog
        if errlog is None or errlog.closed:
            return ""

        def tail() -> str:
            errlog.flush()
            errlog.seek(0)
            return errlog.read()[-_STDERR_TAIL:].strip()

        return await anyio.to_thread.run_sync(tail)

    async def _start_error(self, exc: BaseException) -> str:
        leaf = _leaf(exc)
        if isinstance(leaf, FileNotFoundError) and self.command:
            return f"MCP server {self.label}: cannot start: command not found: {self.command[0]!r}"
        if isinstance(leaf, PermissionError) and self.command:
            return f"MCP server {self.label}: cannot start: {self.command[0]!r} is not executable"
        reason = "it exited before answering" if _closed(leaf) and self.command else _reason(leaf)
        return self._why(f"cannot start: {reason}", await self._stderr_tail())

    async def _stopped_why(self) -> str:
        said = await self._stderr_tail()
        return "the connection closed" + (f"; its stderr ends: {said}" if said else "")

    def _why(self, reason: str, stderr: str = "") -> str:
        return f"MCP server {self.label}: {reason}" + (
            f"; its stderr ends: {stderr}" if stderr else ""
        )


def result_text(result: CallToolResult) -> str:
    """A tool result as the text the model reads: its text blocks, else its structured data.

    Images and audio are named by their MIME type, resources by their URI.
    """
    parts = [_block_text(block) for block in result.content]
    text = "\n".join(part for part in parts if part)
    if not text and result.structured_content is not None:
        return json.dumps(result.structured_content, separators=(",", ":"))
    return text


def _block_text(block: ContentBlock) -> str:
    from mcp.types import EmbeddedResource, ResourceLink, TextContent  # noqa: PLC0415

    if isinstance(block, TextContent):
        return block.text
    if isinstance(block, EmbeddedResource):
        text = getattr(block.resource, "text", None)
        return text if isinstance(text, str) else f"[resource {block.resource.uri}]"
    if isinstance(block, ResourceLink):
        return f"[resource {block.uri}]"
    return f"[{block.type}: {block.mime_type}]"


async def _list_tools(client: Client) -> list[ListedTool]:
    listed: list[ListedTool] = []
    cursor: str | None = None
    for _ in range(_MAX_PAGES):
        page = await client.list_tools(cursor=cursor)
        listed += page.tools
        cursor = page.next_cursor
        if cursor is None:
            break
    return listed


async def _http_transport(url: str, headers: Mapping[str, str], stack: AsyncExitStack) -> Any:
    from mcp.client.streamable_http import streamable_http_client  # noqa: PLC0415

    if not headers:
        return streamable_http_client(url)
    import httpx2  # noqa: PLC0415  (the SDK's HTTP client; it carries the headers)

    timeout = httpx2.Timeout(30.0, read=300.0)  # the SDK's own defaults
    http = await stack.enter_async_context(
        httpx2.AsyncClient(headers=dict(headers), timeout=timeout)
    )
    return streamable_http_client(url, http_client=http)


def _words(command: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(command, str):
        try:
            words = tuple(shlex.split(command))
        except ValueError as exc:
            raise MCPServerError(f"MCP server command {command!r}: {exc}") from None
    else:
        words = tuple(str(word) for word in command)
    if not words:
        raise MCPServerError("MCP server command is empty: give the command that starts it")
    return words


def _check(server: MCPServer, name: str | None, timeout_s: float | None, connect: float) -> None:
    if (server.command is None) == (server.url is None):
        raise MCPServerError("an MCP server needs a command (stdio) or a url (HTTP), not both")
    if server.url is not None and not URL.match(server.url):
        raise MCPServerError(f"MCP server url {server.url!r}: use an http:// or https:// URL")
    if name is not None and not re.fullmatch(r"[a-zA-Z0-9_-]{1,40}", name):
        raise MCPServerError(f"MCP server name {name!r}: use 1-40 letters, digits, '_' or '-'")
    for label, value in (("timeout_s", timeout_s), ("connect_timeout_s", connect)):
        if value is not None and not value > 0:
            raise MCPServerError(f"MCP server {server.label}: {label} must be positive")


def _leaf(exc: BaseException) -> BaseException:
    """The first error inside nested exception groups (what the transport really raised)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _reason(exc: BaseException) -> str:
    leaf = _leaf(exc)
    return str(leaf) or type(leaf).__name__


def _closed(exc: BaseException) -> bool:
    from mcp.types import CONNECTION_CLOSED  # noqa: PLC0415

    return getattr(exc, "code", None) == CONNECTION_CLOSED
