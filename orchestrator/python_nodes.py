"""Plain Python nodes: one attempt each, run by the executor (a thread, or a Ray worker).

The function of a sync node runs where the run's :class:`~orchestrator.executor.Executor`
puts it: in a worker thread of this process (the default, and the engine's hot path for
cheap nodes), or on a remote worker, which the attempt records (``worker``). A remote
worker that dies before answering leaves a failed attempt (``error_type``
``worker_lost``) and the node runs again, on another worker, until the executor's
``max_lost`` workers were lost running it; a finished node never runs again. An async
function stays on the driver's event loop (a coroutine cannot be shipped).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any

import anyio

from orchestrator.events import AttemptStarted, EventBus
from orchestrator.executor import Executor, WorkerLost
from orchestrator.node import Node, render_value
from orchestrator.results import (
    PYTHON_TIER,
    Attempt,
    NodeResult,
    NodeStatus,
    Outcome,
    Verdict,
    assign,
    python_attempt,
)
from orchestrator.spend import Spend, add_spend, now
from orchestrator.tiers import Tier, TierLadder

__all__ = ["NO_VERIFIER", "PythonNodes"]

NO_VERIFIER = Verdict(passed=True, reason="no verifier", verifier="none")
"""The verdict of a node without verifiers (frozen, so one instance serves every attempt)."""


class PythonNodes:
    """The Python-node steps of a :class:`~orchestrator.attempt.NodeRunner` (a mixin)."""

    run_id: str
    bus: EventBus
    ladder: TierLadder
    remote: Executor | None
    """The run's executor when it is remote; ``None``: sync functions run in a thread here."""

    if TYPE_CHECKING:

        def _spend(self, node: Node, attempt: Attempt) -> Spend: ...

        async def _verify(
            self, node: Node, candidate: Any, text: str, tier: Tier, meters: Spend, *, prompt: str
        ) -> tuple[Any, Verdict]: ...

    def _run_python(
        self, node: Node, arguments: Mapping[str, Any], result: NodeResult
    ) -> Coroutine[Any, Any, None]:
        """Run a Python node (await it): one attempt, or one per lost remote worker."""
        if self.remote is None or node.is_async:
            return self._python_attempt(node, arguments, result)
        return self._run_remote(self.remote, node, arguments, result)

    async def _run_remote(
        self, remote: Executor, node: Node, arguments: Mapping[str, Any], result: NodeResult
    ) -> None:
        lost = 0
        while True:
            await self._python_attempt(node, arguments, result, number=len(result.attempts) + 1)
            last = result.attempts[-1]
            if last.error_type != Outcome.WORKER_LOST:
                return
            lost += 1
            if lost >= remote.max_lost:
                result.reason = (
                    f"{lost} workers lost while running it, the most a node may lose "
                    f"(max_lost={remote.max_lost}): {last.error}"
                )
                return

    async def _python_attempt(  # noqa: PLR0912  (the hot path, kept in one frame)
        self, node: Node, arguments: Mapping[str, Any], result: NodeResult, number: int = 1
    ) -> None:
        # The hot path of cheap nodes: the attempt is built without validation (see
        # ``results.python_attempt``) and the function called in this frame.
        attempt = python_attempt(now())
        if number != 1:
            assign(attempt, "number", number)
        result.attempts.append(attempt)
        assign(result, "final_tier", PYTHON_TIER)
        bus = self.bus
        if bus:  # the attempt's span is current from here (the worker's span is its child)
            await bus.emit(AttemptStarted(self.run_id, node.task.id, attempt))
        try:
            function = node.function
            assert function is not None
            if node.is_async:
                output = await function(**arguments)
            elif (remote := self.remote) is None:
                output = await anyio.to_thread.run_sync(functools.partial(function, **arguments))
            else:
                output = await _remotely(remote, node.task.id, function, arguments, attempt)
            if node.verifiers:
                output = await self._checked(node, output, attempt)
            else:
                assign(attempt, "verdict", NO_VERIFIER)
        except anyio.get_cancelled_exc_class():
            attempt.error, attempt.error_type = "cancelled", Outcome.CANCELLED
            raise
        except WorkerLost as exc:  # the node runs again, on another worker
            attempt.error, attempt.error_type = str(exc), Outcome.WORKER_LOST
        except Exception as exc:  # noqa: BLE001  (the task failed; the run goes on)
            attempt.error, attempt.error_type = f"{type(exc).__name__}: {exc}", type(exc).__name__
        finally:
            assign(attempt, "finished_at", now())
            if bus:
                with anyio.CancelScope(shield=True):
                    await bus.emit_finished(self.run_id, node.task.id, attempt)
        if attempt.passed:
            assign(result, "status", NodeStatus.SUCCEEDED)
            assign(result, "output", output)
        else:
            result.status = NodeStatus.FAILED
            result.reason = attempt.error or (attempt.verdict.reason if attempt.verdict else None)

    async def _checked(self, node: Node, output: Any, attempt: Attempt) -> Any:
        """The output once verified (the verdict on ``attempt``); a judge's calls are its."""
        spend = self._spend(node, attempt)
        text = render_value(output) if output is not None else ""
        try:
            output, attempt.verdict = await self._verify(
                node, output, text, self.ladder[0], spend, prompt=node.task.instruction
            )
        finally:
            add_spend(attempt, spend)
        return output


async def _remotely(
    remote: Executor,
    name: str,
    function: Callable[..., Any],
    arguments: Mapping[str, Any],
    attempt: Attempt,
) -> Any:
    """What ``function`` returned on a remote worker, which ``attempt`` records."""
    ran = await remote.run(name, function, (), arguments)
    assign(attempt, "worker", ran.worker)
    return ran.result()
