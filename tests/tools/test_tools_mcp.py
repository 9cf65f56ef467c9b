"""MCP servers as tools, against real server processes written with the ``mcp`` SDK.

examples/mcp_server.py (a notes store and a unit converter) over stdio and over streamable
HTTP on loopback, and tests/tools/mcp_faulty_server.py (tools that hang, fail, crash) over
stdio. Nothing is mocked: the engine starts the processes, lists their tools, calls them
in the tool loop, and stops them.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import anyio.abc
import pytest
from anyio.streams.text import TextReceiveStream
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from orchestrator import Engine, Plan, PlanValidationError, RunStatus, ToolCall
from orchestrator.models.anthropic import AnthropicClient
from orchestrator.models.base import ModelRequest
from orchestrator.planners.llm import LLMPlanner
from orchestrator.telemetry import Telemetry
from orchestrator.testing import FunctionModel, tool_results
from orchestrator.tools import (
    MCPServer,
    MCPServerError,
    MCPToolError,
    ToolDefinitionError,
    ToolRegistry,
)
from orchestrator_sim import SimConfig, serve

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = [sys.executable, str(ROOT / "examples" / "mcp_server.py")]
FAULTY = [sys.executable, str(Path(__file__).with_name("mcp_faulty_server.py"))]
LIMIT_S = 30  # every test ends within this, or fails


def plan(*tasks: tuple[str, str, list[str]]) -> Plan:
    return Plan.model_validate(
        {
            "goal": "use the toolbox",
            "tasks": [{"id": i, "instruction": text, "tools": tools} for i, text, tools in tasks],
        }
    )


def first_text(request: ModelRequest) -> str:
    """The text of the request's first (user) message: the task's prompt."""
    content = request.messages[0].content
    if isinstance(content, str):
        return content
    return "".join(getattr(block, "text", "") for block in content)


@pytest.fixture
def spans() -> Iterator[tuple[InMemorySpanExporter, Telemetry]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter, Telemetry(provider)
    provider.shutdown()


def tool_spans_by_node(exporter: InMemorySpanExporter) -> dict[str, list[str]]:
    """``execute_tool`` spans' tool names, by the node whose attempt made them."""
    finished = exporter.get_finished_spans()
    by_id: dict[int, ReadableSpan] = {span.context.span_id: span for span in finished}
    found: dict[str, list[str]] = {}
    for span in finished:
        if not span.name.startswith("execute_tool "):
            continue
        up = span
        while up.parent is not None and not up.name.startswith("node "):
            up = by_id[up.parent.span_id]
        found.setdefault(up.name.removeprefix("node "), []).append(span.name.split(" ", 1)[1])
    return found


@pytest.fixture
async def sim_client() -> AsyncIterator[AnthropicClient]:
    async with (
        serve(SimConfig(time_scale=0)) as sim,
        AnthropicClient(base_url=sim.base_url, api_key="offline-simulator") as client,
    ):
        yield client


async def test_a_server_lists_its_tools_with_their_schemas_and_runs_them() -> None:
    server = MCPServer(EXAMPLE)
    assert server.name == ""
    assert not server.tools
    with anyio.fail_after(LIMIT_S):
        async with server:
            tools = {tool.name: tool for tool in server.tools}
            assert server.name == "toolbox"  # the name the server gives itself
            assert list(tools) == [
                "mcp__toolbox__search_notes",
                "mcp__toolbox__read_note",
                "mcp__toolbox__add_note",
                "mcp__toolbox__convert_units",
            ]
            convert = tools["mcp__toolbox__convert_units"]
            assert convert.description == "Convert a length between metric and imperial units."
            schema = convert.input_schema
            assert schema["required"] == ["value", "from_unit", "to_unit"]
            assert "mi" in schema["properties"]["to_unit"]["enum"]
            units = {"value": 5, "from_unit": "km", "to_unit": "mi"}
            assert await convert(units) == "5 km = 3.10686 mi"
            with pytest.raises(MCPToolError, match="no note 'note-9'"):  # isError: an error
                await tools["mcp__toolbox__read_note"]({"note_id": "note-9"})
    assert not server.tools
    with pytest.raises(MCPToolError, match="not open"):
        await convert(units)


async def test_a_run_starts_the_server_its_nodes_call_it_and_the_run_stops_it(
    sim_client: AnthropicClient, spans: tuple[InMemorySpanExporter, Telemetry]
) -> None:
    exporter, telemetry = spans
    server = MCPServer(EXAMPLE)
    work = plan(
        ("look", "Search the notes about the with statement.", [
            "mcp__toolbox__search_notes", "mcp__toolbox__read_note",
        ]),
        ("convert", "Use convert_units to convert 5 km to mi.", ["mcp__toolbox__convert_units"]),
        ("alone", "Use convert_units to convert 5 km to mi.", []),
    )  # fmt: skip
    engine = Engine(sim_client, tools=[server], telemetry=telemetry)
    with anyio.fail_after(LIMIT_S):
        result = await engine.run(work)

    assert result.status is RunStatus.SUCCEEDED, [n.reason for n in result.nodes]
    assert not server.tools  # stopped with the run
    # the simulator searched, read the note it found and cited it, quoting its text
    assert "[note-1]" in result.outputs["look"]
    assert "A with statement calls __exit__" in result.outputs["look"]
    # it called the tool the instruction names, its arguments drawn from the instruction
    assert 'convert_units gave "5 km = 3.10686 mi"' in result.outputs["convert"]
    assert "From the tools" not in result.outputs["alone"]  # no tools allowed, none called
    assert tool_spans_by_node(exporter) == {
        "look": ["mcp__toolbox__search_notes", "mcp__toolbox__read_note"],
        "convert": ["mcp__toolbox__convert_units"],
    }


async def test_only_allowlisted_tasks_reach_the_server(tmp_path: Path) -> None:
    notes = tmp_path / "notes.json"
    server = MCPServer([*EXAMPLE, "--notes", str(notes)])

    def model(request: ModelRequest) -> str | ToolCall:
        if not tool_results(request):  # both tasks try to add a note
            note = {"title": first_text(request)[:20], "text": "x"}
            return ToolCall(id="add", name="mcp__toolbox__add_note", arguments=note)
        [result] = tool_results(request)
        return f"{result.is_error}: {result.content}"

    client = FunctionModel(model)
    work = plan(
        ("allowed", "Store a note.", ["mcp__toolbox__add_note"]),
        ("denied", "Store another note.", ["mcp__toolbox__read_note"]),  # read, not write
    )
    with anyio.fail_after(LIMIT_S):
        result = await Engine(client, tools=[server]).run(work)

    assert result.outputs["allowed"] == "False: note-4"
    assert result.outputs["denied"] == (
        "True: tool 'mcp__toolbox__add_note' is not available to this task"
    )
    allowed = next(r for r in client.requests if first_text(r).startswith("Store a note"))
    assert [t.name for t in allowed.tools] == ["mcp__toolbox__add_note"]
    assert allowed.tools[0].input_schema["required"] == ["title", "text"]
    stored = json.loads(notes.read_text())
    assert [note["title"] for note in stored.values()][3:] == ["Store a note."]


async def test_timeouts_errors_and_a_crash_go_back_to_the_model_and_the_run_ends() -> None:
    calls = [
        ToolCall(id="1", name="mcp__faulty__hang", arguments={}),
        ToolCall(id="2", name="mcp__faulty__echo", arguments={"text": "still here"}),
        ToolCall(id="3", name="mcp__faulty__fail", arguments={"reason": "asked"}),
        ToolCall(id="4", name="mcp__faulty__crash", arguments={}),
        ToolCall(id="5", name="mcp__faulty__echo", arguments={"text": "gone"}),
    ]

    def model(request: ModelRequest) -> str | list[ToolCall]:
        results = tool_results(request)
        if not results:
            return calls
        return "\n".join(f"{r.tool_call_id} {r.is_error} {r.content}" for r in results)

    server = MCPServer(FAULTY)
    work = plan(("probe", "Probe the server.", [c.name for c in calls]))
    with anyio.fail_after(LIMIT_S):
        result = await Engine(FunctionModel(model), tools=[server]).run(work, tool_timeout_s=0.5)

    assert result.status is RunStatus.SUCCEEDED
    hang, echo, fail, crash, gone = result.outputs["probe"].split("\n")
    assert hang == "1 True tool 'mcp__faulty__hang' timed out after 0.5s"
    assert echo == "2 False still here"  # a timed-out call leaves the server usable
    assert fail == "3 True MCPToolError: Error executing tool fail: failed on purpose: asked"
    assert crash.startswith("4 True MCPToolError: MCP server 'faulty' stopped")
    assert "crashing on purpose" in crash  # its stderr says why
    assert gone.startswith("5 True MCPToolError: MCP server 'faulty' cannot run 'echo'")
    assert not server.tools


async def test_one_server_serves_concurrent_runs_and_stops_after_the_last() -> None:
    server = MCPServer(FAULTY)
    asked = anyio.Event()

    def model(request: ModelRequest) -> str | ToolCall:
        results = tool_results(request)
        if not results:
            return ToolCall(id="pid", name="mcp__faulty__pid", arguments={})
        if first_text(request) == "Wait.":
            asked.set()
            return ToolCall(id="hang", name="mcp__faulty__hang", arguments={})
        return results[0].content

    engine = Engine(FunctionModel(model), tools=[server])
    quick = engine.prepare(plan(("pid", "Which process?", ["mcp__faulty__pid"])))
    slow = engine.prepare(plan(("wait", "Wait.", ["mcp__faulty__pid", "mcp__faulty__hang"])))
    outcomes = {}

    async def execute(name: str, run: object) -> None:
        outcomes[name] = await run.execute()  # type: ignore[attr-defined]

    with anyio.fail_after(LIMIT_S):
        async with anyio.create_task_group() as group:
            group.start_soon(execute, "slow", slow)
            await asked.wait()  # the slow run opened the server and waits on a tool
            await execute("quick", quick)  # joins the open server, and leaves it open
            assert server.tools
            await anyio.wait_all_tasks_blocked()
            slow.cancel()  # the run that opened it ends last: it stops the server
        again = await engine.run(plan(("pid", "Which process?", ["mcp__faulty__pid"])))

    assert outcomes["quick"].status is RunStatus.SUCCEEDED
    assert outcomes["slow"].status is RunStatus.CANCELLED
    assert not server.tools  # stopped by the cancelled run, after the other had left
    first, later = outcomes["quick"].outputs["pid"], again.outputs["pid"]
    assert first.isdigit()
    assert later.isdigit()
    assert first != later


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["no-such-mcp-command-xyz"], "command not found: 'no-such-mcp-command-xyz'"),
        ([str(Path(__file__))], "is not executable"),  # a file without the x bit
        (
            [sys.executable, "-c", "import sys; sys.exit('no database configured')"],
            "it exited before answering; its stderr ends: no database configured",
        ),
    ],
)
async def test_a_server_that_cannot_start_fails_the_run_before_any_call(
    command: list[str], message: str
) -> None:
    client = FunctionModel(lambda request: "never asked")
    engine = Engine(client, tools=[MCPServer(command)])
    run = engine.prepare(plan(("t", "Use it.", ["mcp__x__y"])))  # unknown until it starts
    with anyio.fail_after(LIMIT_S), pytest.raises(MCPServerError, match=message) as caught:
        await run.execute()
    assert str(caught.value).startswith(f"MCP server {command[0]}")
    assert client.requests == []


async def test_a_server_that_never_answers_times_out_naming_it() -> None:
    silent = [sys.executable, "-c", "import sys; sys.stdin.read()"]  # ends when stdin closes
    server = MCPServer(silent, connect_timeout_s=0.5)
    with anyio.fail_after(LIMIT_S), pytest.raises(MCPServerError, match=r"no answer within 0\.5s"):
        async with server:
            pass


async def test_a_url_that_refuses_is_named() -> None:
    with anyio.fail_after(LIMIT_S):
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        await listener.aclose()  # nothing listens there now
        url = f"http://127.0.0.1:{port}/mcp"
        with pytest.raises(MCPServerError, match=f"MCP server {url}: cannot start"):
            async with MCPServer(url=url):
                pass


async def test_tool_names_are_checked_before_and_after_the_server_starts() -> None:
    named = MCPServer(FAULTY, name="probe")
    engine = Engine(FunctionModel(lambda request: "done"), tools=[named])
    with pytest.raises(PlanValidationError, match=r"'mcp__other__echo'.*mcp__probe__\*"):
        engine.prepare(plan(("t", "Echo.", ["mcp__other__echo"])))  # not this server's
    run = engine.prepare(plan(("t", "Echo.", ["mcp__probe__nope"])))  # may be, until it runs
    with anyio.fail_after(LIMIT_S), pytest.raises(PlanValidationError) as caught:
        await run.execute()
    assert "task 't': unknown tool 'mcp__probe__nope'" in str(caught.value)
    assert "mcp__probe__echo" in str(caught.value)
    assert not named.tools


async def test_two_servers_of_one_name_are_refused() -> None:
    engine = Engine(FunctionModel(lambda r: "done"), tools=[MCPServer(FAULTY), MCPServer(FAULTY)])
    run = engine.prepare(plan(("t", "Echo.", ["mcp__faulty__echo"])))
    with anyio.fail_after(LIMIT_S), pytest.raises(ToolDefinitionError, match="different names"):
        await run.execute()


async def test_the_planner_sees_the_servers_tools_once_it_is_open() -> None:
    client = FunctionModel(lambda request: "{}")
    engine = Engine(client)
    server = MCPServer(EXAMPLE, name="box")
    planner = LLMPlanner(client, engine.ladder, tools=[server], max_repairs=0)
    with anyio.fail_after(LIMIT_S):
        async with server:
            with pytest.raises(PlanValidationError):
                await planner.plan("Convert lengths")  # "{}" is no plan; the prompt is seen
    assert "- mcp__box__convert_units: Convert a length" in client.requests[0].system


async def test_a_streamable_http_server_on_loopback(sim_client: AnthropicClient) -> None:
    with anyio.fail_after(LIMIT_S):
        async with await anyio.open_process([*EXAMPLE, "--http", "--port", "0"]) as process:
            try:
                assert process.stdout is not None
                url = ""
                async for chunk in TextReceiveStream(process.stdout):  # the URL, once it listens
                    url += chunk
                    if "\n" in url:
                        break
                server = MCPServer(url=url.strip(), headers={"X-Team": "docs"})
                work = plan(("c", "Use convert_units to convert 2 mi to km.", [
                    "mcp__toolbox__convert_units",
                ]))  # fmt: skip
                result = await Engine(sim_client, tools=[server]).run(work)
            finally:
                process.terminate()
    assert result.status is RunStatus.SUCCEEDED
    assert 'convert_units gave "2 mi = 3.21869 km"' in result.outputs["c"]
    assert server.name == "toolbox"
    assert not server.tools


def test_declaring_a_server_wrong_is_named() -> None:
    with pytest.raises(MCPServerError, match=r"a command .* or a url"):
        MCPServer()
    with pytest.raises(MCPServerError, match="not both"):
        MCPServer("x", url="http://localhost/mcp")
    with pytest.raises(MCPServerError, match="use an http:// or https:// URL"):
        MCPServer(url="ftp://example.com")
    with pytest.raises(MCPServerError, match="No closing quotation"):
        MCPServer("python 'unclosed")
    with pytest.raises(MCPServerError, match="is empty"):
        MCPServer("   ")
    with pytest.raises(MCPServerError, match="name 'a b'"):
        MCPServer("x", name="a b")
    with pytest.raises(MCPServerError, match="timeout_s must be positive"):
        MCPServer("x", timeout_s=0)
    assert repr(MCPServer("x y", name="n")) == "MCPServer(command='x y', name='n')"


def test_the_example_runs_offline_against_the_example_server() -> None:
    import subprocess

    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "mcp_tools.py")],
        capture_output=True, text=True, timeout=LIMIT_S, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "succeeded" in done.stdout
    assert 'convert_units gave "42 km = 26.0976 mi"' in done.stdout


async def test_a_servers_own_timeout_ends_a_call_and_leaves_it_usable() -> None:
    with anyio.fail_after(LIMIT_S):
        async with MCPServer(FAULTY, timeout_s=0.3) as server:
            hang, echo = (
                next(t for t in server.tools if t.name.endswith(n)) for n in ("hang", "echo")
            )
            with pytest.raises(MCPToolError, match=r"MCP server 'faulty': .*timed out"):
                await hang({})
            assert await echo({"text": "after"}) == "after"


def test_a_registry_given_to_the_engine_keeps_its_servers() -> None:
    server = MCPServer(EXAMPLE)
    engine = Engine(FunctionModel(lambda r: "done"), tools=ToolRegistry([server]))
    assert engine.tools.toolsets == (server,)
    assert "mcp__toolbox__convert_units" in engine.tools.known()  # not started: any mcp__
    assert list(engine.tools.known()) == ["mcp__<server>__*"]
    assert len(engine.tools.known()) == 1


async def test_the_run_that_opened_a_server_waits_for_the_others_before_stopping_it() -> None:
    server = MCPServer(FAULTY)
    opened, joined, owner_left = anyio.Event(), anyio.Event(), anyio.Event()

    async def owner() -> None:
        async with server:
            opened.set()
            await joined.wait()
        owner_left.set()  # only once the run below has left too

    def model(request: ModelRequest) -> str | ToolCall:
        if not tool_results(request):
            joined.set()  # the owner leaves now, while this run's call is in flight
            return ToolCall(id="e", name="mcp__faulty__echo", arguments={"text": "served"})
        assert not owner_left.is_set()
        return tool_results(request)[0].content

    work = plan(("t", "Echo.", ["mcp__faulty__echo"]))
    with anyio.fail_after(LIMIT_S):
        async with anyio.create_task_group() as group:
            group.start_soon(owner)
            await opened.wait()
            result = await Engine(FunctionModel(model), tools=[server]).run(work)
            assert server.tools  # still open: the owner waits for this run to leave
        assert owner_left.is_set()
    assert result.outputs["t"] == "served"
    assert not server.tools


async def test_without_the_mcp_extra_a_server_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "mcp", None)  # as if `mcp` were not installed
    with anyio.fail_after(LIMIT_S), pytest.raises(MCPServerError, match=r"\[mcp\]'"):
        async with MCPServer(EXAMPLE):
            pass


def test_a_result_is_its_text_else_its_structured_content() -> None:
    from mcp.types import (
        BlobResourceContents,
        CallToolResult,
        EmbeddedResource,
        ImageContent,
        ResourceLink,
        TextContent,
        TextResourceContents,
    )

    from orchestrator.tools.mcp import result_text

    binary = BlobResourceContents(uri="file:///b", blob="AA==")
    blocks = CallToolResult(content=[
        TextContent(type="text", text="a"),
        ImageContent(type="image", data="AA==", mime_type="image/png"),
        EmbeddedResource(type="resource", resource=TextResourceContents(uri="file:///t", text="b")),
        EmbeddedResource(type="resource", resource=binary),
        ResourceLink(type="resource_link", uri="file:///l", name="l"),
    ])  # fmt: skip
    assert (
        result_text(blocks)
        == "a\n[image: image/png]\nb\n[resource file:///b]\n[resource file:///l]"
    )
    assert result_text(CallToolResult(content=[], structured_content={"n": 1})) == '{"n":1}'


def test_a_server_without_a_name_of_its_own_is_named_after_its_script_or_host() -> None:
    assert MCPServer("node /srv/weather-tools.js --port 0")._fallback() == "weather-tools"
    assert MCPServer("uvx mcp-server-time")._fallback() == "uvx"
    assert MCPServer(url="https://tools.example.com:8443/mcp")._fallback() == "tools_example_com"
