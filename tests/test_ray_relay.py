"""Model calls relayed through Ray actors (``AnthropicClient(relay=RayExecutor.relay())``).

A real local Ray (started for this module) and the real simulator over HTTP, behind a
handler that notes what each request carried and can hold a call in the server until the
test lets it go, so an actor can be killed while it waits for an answer.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest

ray = pytest.importorskip("ray")

from orchestrator import Engine, Plan, Task  # noqa: E402
from orchestrator.cli import main  # noqa: E402
from orchestrator.executors.ray import RayExecutor  # noqa: E402
from orchestrator.models.anthropic import AnthropicClient  # noqa: E402
from orchestrator.models.relay import KEY_HEADER, WORKER_HEADER, RelayTransport  # noqa: E402
from orchestrator.results import RunStatus  # noqa: E402
from orchestrator.wire import SIMULATED_HEADER  # noqa: E402
from orchestrator_sim import SimConfig  # noqa: E402
from orchestrator_sim.app import SimApp  # noqa: E402
from orchestrator_sim.http import (  # noqa: E402
    HttpRequest,
    HttpResponse,
    bound_port,
    listen,
    serve_listener,
)
from orchestrator_sim.reqlog import RequestLog  # noqa: E402

WORKER_KEY = "key-only-the-workers-have"


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    ray.init(
        address="local",  # a Ray of its own, not a cluster another process left running
        num_cpus=1, include_dashboard=False, log_to_driver=False,
        runtime_env={"env_vars": {"ANTHROPIC_API_KEY": WORKER_KEY}},
    )  # fmt: skip
    try:
        yield
    finally:
        ray.shutdown()


@dataclass
class Server:
    base_url: str
    keys: list[str | None] = field(default_factory=list)
    arrived: anyio.Event = field(default_factory=anyio.Event)
    again: anyio.Event = field(default_factory=anyio.Event)
    hold: anyio.Event | None = None


@asynccontextmanager
async def server(*, hold: bool = False) -> AsyncIterator[Server]:
    """The simulator, noting each call's key; with ``hold``, the first call waits."""
    log = RequestLog(None)
    await log.open()
    listener = await listen("127.0.0.1", 0)
    app = SimApp(SimConfig(seed=1, time_scale=0), log, None, None)
    state = Server(f"http://127.0.0.1:{bound_port(listener)}", hold=anyio.Event() if hold else None)

    async def handle(request: HttpRequest) -> HttpResponse:
        if request.method == "POST" and request.path.rstrip("/") == "/v1/messages":
            state.keys.append(request.headers.get(KEY_HEADER))
            first = len(state.keys) == 1
            state.arrived.set()
            if len(state.keys) == 2:
                state.again.set()
            if first and state.hold is not None:
                await state.hold.wait()  # the test kills the actor making this call
        return await app.handle(request)

    async def serve(*, task_status: Any) -> None:
        await serve_listener(
            listener, handle, max_body_bytes=1 << 20,
            error_headers=[(SIMULATED_HEADER, "true")], task_status=task_status,
        )  # fmt: skip

    try:
        async with anyio.create_task_group() as tg:
            await tg.start(serve)
            try:
                yield state
            finally:
                tg.cancel_scope.cancel()
    finally:
        await log.aclose()


PLAN = Plan(
    goal="relayed",
    tasks=[Task(id=f"t{i}", instruction=f"List {i + 2} uses of a heap.") for i in range(4)],
)


@pytest.mark.anyio
async def test_relayed_calls_are_made_by_actors_with_the_workers_own_key(cluster: None) -> None:
    executor = RayExecutor()  # joins the module's Ray
    async with server() as sim:
        client = AnthropicClient(
            base_url=sim.base_url, api_key="driver-side-key", relay=executor.relay()
        )
        async with client:
            result = await Engine(client, executor=executor).run(PLAN)
    assert result.status is RunStatus.SUCCEEDED
    workers = {a.worker for n in result.nodes for a in n.attempts}
    assert None not in workers
    assert not any(str(w).endswith(f":{os.getpid()}") for w in workers)  # not this process
    assert set(sim.keys) == {WORKER_KEY}  # the workers' key, never the driver's


@pytest.mark.anyio
async def test_the_transport_never_ships_the_key() -> None:
    seen: list[list[tuple[str, str]]] = []

    @dataclass(frozen=True)
    class Answer:
        status: int
        headers: list[tuple[str, str]]
        body: bytes
        worker: str

    class Capturing:
        async def exchange(
            self, method: str, url: str, headers: list[tuple[str, str]], body: bytes,
            *, key_env: str, timeout_s: float,
        ) -> Answer:  # fmt: skip
            seen.append(headers)
            return Answer(200, [("content-encoding", "gzip")], b"{}", "host:1")

    import httpx2

    transport = RelayTransport(Capturing(), key_env="ANTHROPIC_API_KEY", timeout_s=5)
    async with httpx2.AsyncClient(transport=transport) as http:
        response = await http.post("http://x/v1/messages", headers={KEY_HEADER: "secret"})
    assert response.headers[WORKER_HEADER] == "host:1"
    assert "content-encoding" not in response.headers  # the relay's body is decoded
    assert all(k.lower() != KEY_HEADER for k, _ in seen[0])


@pytest.mark.anyio
async def test_an_actor_killed_mid_call_is_retried_and_counted(cluster: None) -> None:
    executor = RayExecutor()
    relay = executor.relay(actors=1)
    plan = Plan(goal="one", tasks=[Task(id="only", instruction="List 2 uses of a heap.")])
    async with server(hold=True) as sim:
        client = AnthropicClient(base_url=sim.base_url, api_key="k", relay=relay)
        async with client, anyio.create_task_group() as tg:
            done: list[Any] = []

            async def run() -> None:
                done.append(await Engine(client, executor=executor).run(plan))

            tg.start_soon(run)
            with anyio.fail_after(60):
                await sim.arrived.wait()  # the actor is waiting for this call's answer
            [actor] = relay._actors
            ray.kill(actor, no_restart=False)  # its process dies; Ray restarts it
            with anyio.fail_after(60):
                await sim.again.wait()  # the client sent it again, to the restarted actor
            assert sim.hold is not None
            sim.hold.set()  # the first exchange's handler ends (its actor is gone)
    [result] = done
    assert result.status is RunStatus.SUCCEEDED
    [attempt] = result.node("only").attempts
    assert len(sim.keys) == 2  # sent again after the loss
    assert attempt.cost_unknown  # the lost call may have been billed: counted at its worst
    assert attempt.cost_usd > Decimal(0)


def test_cli_relays_model_calls_offline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(PLAN.model_dump_json())
    code = main([
        "run", "--plan", str(plan), "--offline", "--home", str(tmp_path), "--json",
        "--executor", "ray", "--ray-model-calls", "1",
    ])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads(captured.out)
    workers = {a["worker"] for n in result["nodes"] for a in n["attempts"]}
    assert len(workers) == 1  # one actor made every call
    assert None not in workers


@pytest.mark.anyio
async def test_the_budget_holds_when_actors_make_the_calls(cluster: None) -> None:
    executor = RayExecutor()
    plan = Plan(
        goal="many",
        tasks=[
            Task(id=f"n{i}", instruction=f"List {i + 2} uses of a heap.", max_output_tokens=64)
            for i in range(24)
        ],
    )
    budget = Decimal("0.0003")
    async with server() as sim:
        client = AnthropicClient(base_url=sim.base_url, api_key="k", relay=executor.relay())
        async with client:
            result = await Engine(client, executor=executor).run(
                plan, budget_usd=budget, max_concurrency=8
            )
    assert result.cost_usd <= budget
    statuses = {n.status.value for n in result.nodes}
    assert "succeeded" in statuses
    assert "not_run" in statuses  # the budget stopped the rest, across the actors
    assert len(sim.keys) == sum(a.calls for n in result.nodes for a in n.attempts)  # all counted
