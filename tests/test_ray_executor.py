"""The Ray executor on a real local Ray (started once for the module: it takes seconds).

Python nodes and tools run as Ray tasks on its two workers; each attempt records its
worker; a worker that dies mid-node leaves a ``worker_lost`` attempt and the node runs
again on another; the worker's span is a child of the attempt's; the stores keep the
worker. Every run is bounded by ``anyio.fail_after``; nothing sleeps to synchronise.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import ray
import ray_worker_hook
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from orchestrator import Engine, NodeStatus, Workflow
from orchestrator.cli import main
from orchestrator.executor import LocalExecutor
from orchestrator.executors.ray import RayExecutor
from orchestrator.models.test import TestModel
from orchestrator.results import Outcome
from orchestrator.store import SQLiteStore, StoreListener
from orchestrator.telemetry import Telemetry
from orchestrator.tools import FunctionTool, tool
from orchestrator.tools.corpus import Corpus, corpus_tools

pytestmark = pytest.mark.anyio

BOUND_S = 60  # a run on a warm cluster takes well under a second; Ray's first start, seconds


class Cluster:
    """The module's local Ray: its address and the file its workers write spans to."""

    def __init__(self, address: str, spans: Path) -> None:
        self.address = address
        self.spans = spans


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    spans = tmp_path_factory.mktemp("ray") / "worker-spans.jsonl"
    tests = str(Path(__file__).parent)
    context = ray.init(
        address="local",  # a Ray of its own, even where `ray start` left one running
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={
            "worker_process_setup_hook": "ray_worker_hook.install",
            "env_vars": {
                ray_worker_hook.SPANS_ENV: str(spans),
                "PYTHONPATH": os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")]),
            },
        },
    )
    try:
        yield Cluster(context.address_info["gcs_address"], spans)
    finally:
        ray.shutdown()


@pytest.fixture
def executor(cluster: Cluster) -> RayExecutor:
    return RayExecutor(max_lost=2)  # joins the module's Ray (initialised in this process)


# -- the work the workers do (importable here, shipped by reference or by value) ----------


def _pid_of_worker() -> int:
    return os.getpid()


def _die_once(marker: str) -> str:
    """Kill the worker running it the first time; answer the second."""
    path = Path(marker)
    if not path.exists():
        path.write_text("died")
        os._exit(1)
    return f"answered on {os.getpid()}"


def _count_and_answer(counter: str) -> str:
    with open(counter, "a", encoding="utf-8") as out:
        out.write("ran\n")
    return "done"


def _workflow(marker: Path, counter: Path) -> Workflow:
    wf = Workflow("a node whose worker dies once, after one that finished")

    @wf.task
    def first() -> str:
        return _count_and_answer(str(counter))

    @wf.task
    def second(first: str) -> str:
        return _die_once(str(marker))

    return wf


async def test_python_nodes_run_on_ray_workers_and_record_them(executor: RayExecutor) -> None:
    wf = Workflow("two nodes on the cluster")

    @wf.task
    def where() -> int:
        return _pid_of_worker()

    @wf.task
    def square(n: int) -> int:
        return n * n

    engine = Engine(TestModel(), executor=executor)
    with anyio.fail_after(BOUND_S):
        result = await engine.run(wf, inputs={"n": 7})
    assert result.status == "succeeded"
    assert result.node("square").output == 49
    pid = result.node("where").output
    assert pid != os.getpid()  # ran in a worker process
    attempt = result.node("where").attempts[0]
    assert attempt.worker is not None
    host, _, worker_pid = attempt.worker.rpartition(":")
    assert host
    assert int(worker_pid) == pid
    assert json.loads(result.model_dump_json())["nodes"][0]["attempts"][0]["worker"]


async def test_a_failing_function_fails_its_node_and_names_its_worker(
    executor: RayExecutor,
) -> None:
    wf = Workflow("a task that raises")

    @wf.task
    def broken() -> int:
        raise ValueError("no such record")

    with anyio.fail_after(BOUND_S):
        result = await Engine(TestModel(), executor=executor).run(wf)
    node = result.node("broken")
    assert node.status is NodeStatus.FAILED
    assert node.reason == "ValueError: no such record"
    assert [a.error_type for a in node.attempts] == ["ValueError"]  # not retried
    assert node.attempts[0].worker is not None


async def test_async_functions_stay_on_the_driver(executor: RayExecutor) -> None:
    wf = Workflow("an async task")

    @wf.task
    async def here() -> int:
        return os.getpid()

    with anyio.fail_after(BOUND_S):
        result = await Engine(TestModel(), executor=executor).run(wf)
    assert result.node("here").output == os.getpid()
    assert result.node("here").attempts[0].worker is None


async def test_a_dead_worker_is_an_attempt_and_the_node_runs_again_elsewhere(
    executor: RayExecutor, tmp_path: Path
) -> None:
    marker, counter = tmp_path / "died", tmp_path / "runs"
    store = await SQLiteStore.open(tmp_path / "runs.db")
    engine = Engine(TestModel(), executor=executor, listeners=[StoreListener(store)])
    with anyio.fail_after(BOUND_S):
        result = await engine.run(_workflow(marker, counter))
    assert result.status == "succeeded"
    second = result.node("second")
    lost, answered = second.attempts
    assert lost.error_type == Outcome.WORKER_LOST
    assert "was lost" in (lost.error or "")
    assert answered.number == 2
    assert answered.passed
    assert answered.worker is not None
    assert second.output == f"answered on {answered.worker.rpartition(':')[2]}"
    assert counter.read_text() == "ran\n"  # the finished node never ran again
    assert len(result.node("first").attempts) == 1
    stored = await store.load_run(result.run_id)
    await store.aclose()
    assert [a.error_type for a in stored.attempts["second"]] == ["worker_lost", None]
    assert stored.attempts["second"][1].worker == answered.worker


async def test_a_node_that_loses_max_lost_workers_fails_saying_so(executor: RayExecutor) -> None:
    wf = Workflow("a task that kills every worker")

    @wf.task
    def fatal() -> None:
        os._exit(3)

    with anyio.fail_after(BOUND_S):
        result = await Engine(TestModel(), executor=executor).run(wf)
    node = result.node("fatal")
    assert node.status is NodeStatus.FAILED
    assert [a.error_type for a in node.attempts] == ["worker_lost", "worker_lost"]
    assert node.reason is not None
    assert node.reason.startswith("2 workers lost while running it")


async def test_the_workers_span_is_a_child_of_the_attempts_span(
    executor: RayExecutor, cluster: Cluster
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    wf = Workflow("one traced task")

    @wf.task
    def traced() -> int:
        return _pid_of_worker()

    engine = Engine(TestModel(), executor=executor, telemetry=Telemetry(provider))
    with anyio.fail_after(BOUND_S):
        result = await engine.run(wf)
    attempt = next(s for s in exporter.get_finished_spans() if s.name == "attempt python")
    context = attempt.get_span_context()
    assert context is not None
    worker = result.node("traced").attempts[0].worker
    assert attempt.attributes is not None
    assert attempt.attributes["orchestrator.worker"] == worker
    spans = [s for s in ray_worker_hook.read(str(cluster.spans)) if s["name"] == "run traced"]
    assert len(spans) == 1, spans
    assert spans[0]["trace_id"] == f"{context.trace_id:032x}"  # one trace
    assert spans[0]["parent_id"] == f"{context.span_id:016x}"  # under the attempt
    assert spans[0]["attributes"] == {"orchestrator.worker": worker}


async def test_sync_tools_run_on_workers_async_ones_here(executor: RayExecutor) -> None:
    def worker_pid(label: str) -> str:
        """The pid of the process running the call.

        Args:
            label: Anything.
        """
        return f"{label}:{os.getpid()}"

    async def driver_pid(label: str) -> str:
        """The pid of the process running the call.

        Args:
            label: Anything.
        """
        return f"{label}:{os.getpid()}"

    engine = Engine(TestModel(), executor=executor, tools=[worker_pid, driver_pid])
    with anyio.fail_after(BOUND_S):
        remote = await engine.tools.get("worker_pid")({"label": "x"})
        local = await engine.tools.get("driver_pid")({"label": "y"})
    assert remote.startswith("x:")
    assert remote != f"x:{os.getpid()}"
    assert local == f"y:{os.getpid()}"
    assert Engine(TestModel(), tools=[worker_pid]).tools.get("worker_pid") is not None


async def test_a_local_tool_stays_here_with_a_ray_executor(executor: RayExecutor) -> None:
    def lookup(label: str) -> str:
        """The pid of the process running the call.

        Args:
            label: Anything.
        """
        return f"{label}:{os.getpid()}"

    kept = tool(lookup)
    kept.local = True  # cheap calls over data the driver holds (the corpus tools do this)
    engine = Engine(TestModel(), executor=executor, tools=[kept])
    with anyio.fail_after(BOUND_S):
        assert await engine.tools.get("lookup")({"label": "z"}) == f"z:{os.getpid()}"
    texts = {"a.md": "Heaps keep the smallest item first."}
    research = Engine(TestModel(), executor=executor, tools=corpus_tools(Corpus.from_texts(texts)))
    assert [t.executor for t in research.tools if isinstance(t, FunctionTool)] == [None, None]


async def test_the_local_executor_runs_in_a_thread_here() -> None:
    ran = await LocalExecutor().run("pid", _pid_of_worker)
    assert (ran.value, ran.worker, ran.error) == (os.getpid(), None, None)
    assert repr(LocalExecutor()) == "LocalExecutor()"


async def test_the_postgres_store_keeps_the_worker(
    executor: RayExecutor, postgres_url: str
) -> None:
    from orchestrator.store import PostgresStore

    wf = Workflow("one task")

    @wf.task
    def where() -> int:
        return _pid_of_worker()

    store = await PostgresStore.open(postgres_url)
    try:
        engine = Engine(TestModel(), executor=executor, listeners=[StoreListener(store)])
        with anyio.fail_after(BOUND_S):
            result = await engine.run(wf)
        stored = await store.load_run(result.run_id)
    finally:
        await store.aclose()
    assert stored.attempts["where"][0].worker == result.node("where").attempts[0].worker
    assert stored.attempts["where"][0].worker is not None


def test_ray_executor_settings_are_checked() -> None:
    from orchestrator.exceptions import UserError

    with pytest.raises(UserError, match="max_lost"):
        RayExecutor(max_lost=0)
    with pytest.raises(UserError, match="num_cpus"):
        RayExecutor(num_cpus=0)
    assert "local" in repr(RayExecutor(num_cpus=1))


# -- the command line ---------------------------------------------------------------------


def _research_plan(tmp_path: Path) -> tuple[Path, Path]:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "queues.md").write_text(
        "# Queues\n\nA queue hands items over first in, first out; a worker takes the oldest.\n"
    )
    plan = tmp_path / "plan.json"
    plan.write_text(
        json.dumps(
            {
                "goal": "Explain queues",
                "tasks": [
                    {
                        "id": "find",
                        "instruction": "Search the corpus for how a queue orders its items.",
                        "tools": ["search_corpus", "read_passage"],
                    }
                ],
            }
        )
    )
    return plan, corpus


def test_cli_run_with_executor_ray_joins_the_cluster(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    plan, corpus = _research_plan(tmp_path)
    monkeypatch.setenv("RAY_ADDRESS", cluster.address)
    home = ["--home", str(tmp_path / "home")]
    args = ["run", "--offline", "--executor", "ray", "--plan", str(plan), "--corpus", str(corpus)]
    assert main([*args, "--json", *home]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["status"] == "succeeded"


def test_cli_show_lists_the_workers(executor: RayExecutor, tmp_path: Path, capsys: Any) -> None:
    home = tmp_path / "home"
    home.mkdir()
    marker, counter = tmp_path / "died", tmp_path / "runs"

    async def run() -> str:
        store = await SQLiteStore.open(home / "runs.db")
        engine = Engine(TestModel(), executor=executor, listeners=[StoreListener(store)])
        with anyio.fail_after(BOUND_S):
            result = await engine.run(_workflow(marker, counter))
        await store.aclose()
        return result.run_id

    run_id = anyio.run(run)
    assert main(["show", run_id, "--home", str(home)]) == 0
    out = capsys.readouterr().out
    assert "workers: " in out
    assert "lost while running one: 1" in out


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--executor", "dask"], "invalid choice: 'dask'"),
        (["--executor", "ray", "--ray-cpus", "0"], "must be at least 1"),
        (["--executor", "ray", "--ray-cpus", "two"], "not a whole number"),
        (["--ray-cpus", "2"], "--ray-cpus is for --executor ray"),
    ],
)
def test_cli_bad_executor_flags_exit_2(
    flags: list[str], message: str, tmp_path: Path, capsys: Any
) -> None:
    plan, corpus = _research_plan(tmp_path)
    args = ["run", "--offline", "--plan", str(plan), "--corpus", str(corpus), *flags]
    try:
        code = main([*args, "--home", str(tmp_path / "home")])
    except SystemExit as exc:  # argparse's own usage errors
        code = int(exc.code or 0)
    assert code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_cli_without_ray_installed_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if not installed
    plan, corpus = _research_plan(tmp_path)
    args = ["run", "--offline", "--executor", "ray", "--plan", str(plan), "--corpus", str(corpus)]
    assert main([*args, "--home", str(tmp_path / "home")]) == 2
    assert "pip install 'tiered-orchestrator[ray]'" in capsys.readouterr().err


def test_the_task_body_loads_a_function_once_and_returns_what_it_raised(
    cluster: Cluster,
) -> None:
    from orchestrator.executors import ray as ray_executor

    def fails(x: int) -> int:
        raise KeyError(x)

    key = "test-key"
    box = [ray.put(fails)]
    try:
        ok, error, worker = ray_executor._in_worker(key, box, "fails", (1,), {}, {})
        assert ray_executor._FUNCTIONS[key] is not None  # loaded once, kept by key
        again = ray_executor._in_worker(key, [None], "fails", (2,), {}, {})  # not loaded again
    finally:
        ray_executor._FUNCTIONS.pop(key, None)
    assert not ok
    assert isinstance(error, KeyError)
    assert worker == f"{socket.gethostname()}:{os.getpid()}"
    assert again[0] is False
