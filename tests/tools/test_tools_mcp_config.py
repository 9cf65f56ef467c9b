"""``mcpServers`` config files (the Claude Desktop / Claude Code format): parsed, never run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.tools import MCPServerError, load_mcp_config, parse_mcp_config


def test_stdio_and_http_entries_become_named_servers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {
        "toolbox": {"command": "python", "args": ["examples/mcp_server.py", "--notes", "n.json"],
                    "env": {"LEVEL": "${LEVEL:-info}"}, "cwd": "/srv"},
        "remote": {"type": "http", "url": "https://${MCP_HOST}/mcp", "timeout_s": 5,
                   "headers": {"Authorization": "Bearer ${TOKEN}"}},
        "typed": {"type": "stdio", "command": "node", "args": ["server.js"]},
    }}))  # fmt: skip
    toolbox, remote, typed = parse_mcp_config(
        json.loads(path.read_text()), environ={"MCP_HOST": "tools.example", "TOKEN": "s3cret"}
    )
    assert toolbox.name == "toolbox"
    assert toolbox.command == ("python", "examples/mcp_server.py", "--notes", "n.json")
    assert toolbox.env == {"LEVEL": "info"}
    assert toolbox.cwd == "/srv"
    assert remote.name == "remote"
    assert remote.url == "https://tools.example/mcp"
    assert remote.headers == {"Authorization": "Bearer s3cret"}
    assert remote.timeout_s == 5
    assert typed.command == ("node", "server.js")
    monkeypatch.delenv("MCP_HOST", raising=False)
    with pytest.raises(MCPServerError, match=r"server 'remote': \$\{MCP_HOST\} is not set"):
        load_mcp_config(path)  # os.environ by default


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], 'expected {"mcpServers"'),
        ({"servers": {}}, 'expected {"mcpServers"'),
        ({"mcpServers": {"a": {"command": "x", "url": "http://h/mcp"}}}, "server 'a': a stdio"),
        ({"mcpServers": {"a": {"type": "http", "command": "x"}}}, "server 'a': an HTTP server"),
        ({"mcpServers": {"a": {"type": "sse", "url": "http://h/sse"}}}, "SSE servers are not"),
        ({"mcpServers": {"a": {"args": ["x"]}}}, "server 'a': an HTTP server has a url"),
        ({"mcpServers": {"a": {"command": "x", "args": "y"}}}, "server 'a': args: Input should"),
        ({"mcpServers": {"a": {"command": "x", "timeout_s": 0}}}, "timeout_s: Input should be"),
        ({"mcpServers": {"a": {"url": "ftp://h"}}}, "server 'a': MCP server url 'ftp://h'"),
        ({"mcpServers": {"a b": {"command": "x"}}}, "server 'a b': MCP server name 'a b'"),
        ({"mcpServers": {"a": {"command": "${NOPE}"}}}, r"\$\{NOPE\} is not set"),
    ],
)
def test_a_malformed_entry_is_named(document: object, message: str) -> None:
    with pytest.raises(MCPServerError, match=message) as caught:
        parse_mcp_config(document, source="mcp.json", environ={})
    assert str(caught.value).startswith("mcp.json: ")


def test_unreadable_or_broken_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(MCPServerError, match=r"none\.json: cannot read it"):
        load_mcp_config(tmp_path / "none.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{mcpServers:")
    with pytest.raises(MCPServerError, match=r"broken\.json: not JSON"):
        load_mcp_config(broken)
