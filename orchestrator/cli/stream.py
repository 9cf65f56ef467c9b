"""``--json-stream``: a run's events on stdout as they happen, one JSON document a line.

Each line is :func:`~orchestrator.event_json.event_json` of an event (its ``type`` first;
docs/streaming.md lists them), written and flushed as soon as the event is read, so a UI
reading the pipe sees it at once. The last line is the ``run_finished`` event: the run's
result exactly as ``--json`` prints it, with ``type`` added. Lines are written from a
worker thread: a reader that is slow to empty the pipe slows the run (the events wait in
:meth:`Run.events <orchestrator.run.Run.events>`'s bounded buffer), never the event loop.
"""

from __future__ import annotations

import json
import sys
from typing import TextIO

import anyio

from orchestrator.event_json import event_json
from orchestrator.results import RunResult
from orchestrator.run import Run

__all__ = ["json_stream"]


async def json_stream(run: Run, out: TextIO | None = None) -> RunResult:
    """Execute ``run``, writing its events to ``out`` (default stdout); its result."""
    stream = out if out is not None else sys.stdout
    async with run.events() as events:
        async for event in events:
            line = json.dumps(event_json(event), separators=(",", ":"))
            await anyio.to_thread.run_sync(_write, stream, line)
    assert events.result is not None, "the last event is the run's end"
    return events.result


def _write(stream: TextIO, line: str) -> None:
    stream.write(line + "\n")
    stream.flush()
