"""``run`` and ``resume`` with ``--mcp`` / ``--mcp-config``: a real MCP server's tools in a plan.

The server is examples/mcp_server.py (the ``mcp`` SDK, over stdio), started by the command
and stopped after the run; the model is the local simulator (``--offline``). Which node
called which tool is read from the ``execute_tool`` spans (``--trace console``).
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cli import main

ROOT = Path(__file__).resolve().parent.parent
SERVER = f"{sys.executable} {ROOT / 'examples' / 'mcp_server.py'}"


def write_plan(folder: Path, tasks: list[dict[str, Any]]) -> Path:
    path = folder / "plan.json"
    path.write_text(json.dumps({"goal": "use the toolbox", "tasks": tasks}))
    return path


def spans_of(text: str) -> list[dict[str, Any]]:
    """The spans the console exporter printed (JSON objects, one after another)."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while (start := text.find("{", at)) >= 0:
        try:
            value, at = decoder.raw_decode(text, start)
        except ValueError:
            at = start + 1
            continue
        if isinstance(value, dict) and "context" in value and "name" in value:
            found.append(value)
    return found


def tools_by_node(spans: list[dict[str, Any]]) -> dict[str, list[str]]:
    by_id = {span["context"]["span_id"]: span for span in spans}
    found: dict[str, list[str]] = {}
    for span in spans:
        if span["name"].startswith("execute_tool "):
            up = span
            while not up["name"].startswith("node "):
                up = by_id[up["parent_id"]]
            found.setdefault(up["name"][5:], []).append(span["attributes"]["gen_ai.tool.name"])
    return found


def test_run_offline_with_an_mcp_server_calls_its_tools_where_allowed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = write_plan(tmp_path, [
        {"id": "convert", "instruction": "Use convert_units to convert 5 km to mi.",
         "tools": ["mcp__toolbox__convert_units"]},
        {"id": "alone", "instruction": "Use convert_units to convert 5 km to mi."},
    ])  # fmt: skip
    code = main([
        "run", "--plan", str(plan), "--offline", "--mcp", SERVER, "--json", "--trace", "console",
    ])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads(captured.out)
    assert result["status"] == "succeeded"
    outputs = {node["id"]: node["output"] for node in result["nodes"]}
    assert 'convert_units gave "5 km = 3.10686 mi"' in outputs["convert"]
    assert "From the tools" not in outputs["alone"]  # it may not call it, so it does not
    assert tools_by_node(spans_of(captured.err)) == {"convert": ["mcp__toolbox__convert_units"]}

    config = tmp_path / "mcp.json"  # the same server, declared in a config file
    config.write_text(json.dumps({"mcpServers": {"toolbox": {
        "command": sys.executable, "args": [str(ROOT / "examples" / "mcp_server.py")],
    }}}))  # fmt: skip
    code = main(["resume", result["run_id"], "--offline", "--mcp-config", str(config), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert json.loads(captured.out)["status"] == "succeeded"  # nothing left to run


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--mcp", "no-such-mcp-server-xyz --stdio"],
            "command not found: 'no-such-mcp-server-xyz'",
        ),
        (["--mcp", "python 'unclosed"], '--mcp "python \'unclosed": MCP server command'),
        (["--mcp", "http://127.0.0.1:{port}/mcp"], "http://127.0.0.1:{port}/mcp: cannot start"),
        (["--mcp-config", "{missing}"], "cannot read it"),
        (["--mcp-config", "{bad}"], "server 'box': comand: Extra inputs are not permitted"),
    ],
)
def test_bad_mcp_input_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"mcpServers": {"box": {"comand": "python"}}}))
    names = {"port": _closed_port(), "missing": tmp_path / "none.json", "bad": bad}
    plan = write_plan(tmp_path, [{"id": "t", "instruction": "Say hi."}])
    argv = ["run", "--plan", str(plan), "--offline", *(f.format(**names) for f in flags)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("orchestrator: error: ")
    assert message.format(**names) in err
    assert "Traceback" not in err


def test_a_task_naming_a_tool_the_server_lacks_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = write_plan(tmp_path, [{"id": "t", "instruction": "x", "tools": ["mcp__toolbox__nope"]}])
    assert main(["run", "--plan", str(plan), "--offline", "--mcp", SERVER]) == 2
    err = capsys.readouterr().err
    assert "task 't': unknown tool 'mcp__toolbox__nope'" in err
    assert "mcp__toolbox__convert_units" in err
