"""A small MCP tool server, written with the official ``mcp`` SDK: a notes store and a converter.

Its tools, as a run sees them (``mcp__toolbox__`` + the tool's name, docs/mcp.md):

* ``search_notes(query)``: the notes whose title or text share a word with the query, as
  JSON (``id``, ``title``);
* ``read_note(note_id)``: one note, as JSON (``id``, ``title``, ``text``);
* ``add_note(title, text)``: store a note (in memory, or in ``--notes FILE``), return its id;
* ``convert_units(value, from_unit, to_unit)``: a length from one unit to another.

Over stdio (what ``--mcp "python examples/mcp_server.py"`` starts)::

    python examples/mcp_server.py [--notes FILE]

Over streamable HTTP on loopback; ``--port 0`` takes a free port, and the first line on
stdout is the endpoint's URL once it listens::

    python examples/mcp_server.py --http [--port 8000]
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import sys
from pathlib import Path
from typing import Annotated, Literal

import anyio
import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

Unit = Literal["m", "km", "cm", "mm", "mi", "ft", "in"]
METRES: dict[str, float] = {
    "m": 1.0, "km": 1000.0, "cm": 0.01, "mm": 0.001, "mi": 1609.344, "ft": 0.3048, "in": 0.0254,
}  # fmt: skip
SEED_NOTES = {
    "note-1": (
        "Context managers",
        "A with statement calls __exit__ even when the block raises; returning True "
        "from __exit__ suppresses the exception.",
    ),
    "note-2": (
        "Task groups",
        "An anyio task group waits for every child task; the first failure cancels the rest.",
    ),
    "note-3": (
        "Units",
        "One mile is 1.609344 kilometres; one foot is 0.3048 metres.",
    ),
}
WORD = re.compile(r"[a-z0-9_]+")

server = MCPServer(
    "toolbox",
    instructions="A notes store (search, read, add) and a length converter.",
    log_level="WARNING",
)
notes: dict[str, tuple[str, str]] = dict(SEED_NOTES)
notes_file: Path | None = None


@server.tool()
def search_notes(query: Annotated[str, Field(description="Words to look for")]) -> str:
    """Find notes by words of their title or text; returns their ids and titles as JSON."""
    wanted = set(WORD.findall(query.lower()))
    found = [
        {"id": note_id, "title": title}
        for note_id, (title, text) in notes.items()
        if wanted & set(WORD.findall(f"{title} {text}".lower()))
    ]
    return json.dumps(found or [{"id": note_id, "title": t} for note_id, (t, _) in notes.items()])


@server.tool()
def read_note(note_id: Annotated[str, Field(description="A note's id, e.g. note-1")]) -> str:
    """Read one note: its id, title and text as JSON."""
    if note_id not in notes:
        raise ToolError(f"no note {note_id!r}; search_notes lists them")
    title, text = notes[note_id]
    return json.dumps({"id": note_id, "title": title, "text": text})


@server.tool()
def add_note(
    title: Annotated[str, Field(description="The note's title")],
    text: Annotated[str, Field(description="The note's text")],
) -> str:
    """Store a note; returns its id."""
    note_id = f"note-{len(notes) + 1}"
    notes[note_id] = (title, text)
    if notes_file is not None:
        document = {key: {"title": t, "text": x} for key, (t, x) in notes.items()}
        notes_file.write_text(json.dumps(document, indent=2), encoding="utf-8")
    return note_id


@server.tool()
def convert_units(
    value: Annotated[float, Field(description="The length to convert")],
    from_unit: Annotated[Unit, Field(description="Its unit")],
    to_unit: Annotated[Unit, Field(description="The unit wanted")],
) -> str:
    """Convert a length between metric and imperial units."""
    return f"{value:g} {from_unit} = {value * METRES[from_unit] / METRES[to_unit]:.6g} {to_unit}"


def load_notes(path: Path) -> None:
    """Start from the notes of ``path`` (if it exists) and save added ones there."""
    global notes_file  # noqa: PLW0603  (the one store of this small server)
    notes_file = path
    if path.exists():
        document = json.loads(path.read_text(encoding="utf-8"))
        notes.update({key: (v["title"], v["text"]) for key, v in document.items()})


async def serve_http(port: int) -> None:
    """Serve streamable HTTP on 127.0.0.1; print the URL once the socket listens."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(64)
    print(f"http://127.0.0.1:{sock.getsockname()[1]}/mcp", flush=True)
    config = uvicorn.Config(server.streamable_http_app(), log_level="warning")
    await uvicorn.Server(config).serve(sockets=[sock])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http", action="store_true", help="streamable HTTP, not stdio")
    parser.add_argument("--port", type=int, default=8000, help="with --http; 0: a free port")
    parser.add_argument("--notes", type=Path, help="keep the notes in this JSON file")
    args = parser.parse_args(argv)
    if args.notes:
        load_notes(args.notes)
    if args.http:
        anyio.run(serve_http, args.port)
    else:
        server.run()


if __name__ == "__main__":
    sys.exit(main())
