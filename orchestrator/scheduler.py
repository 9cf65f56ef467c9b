"""Run a DAG of async jobs: each starts the moment its last dependency succeeds.

There are no level-by-level barriers: a node's dependents are released as soon as it
succeeds. A failed node marks its transitive dependents skipped; the rest of the graph goes
on. This module knows nothing about models: it runs ``run_node(node_id) -> succeeded?``
callbacks.

Ready nodes wait in a FIFO queue served by a pool of worker tasks that grows on demand, up
to the concurrency limit: a worker that takes a node while more are queued starts one more
worker (at most one is ever pending), then runs its node, and then takes the next queued
node instead of ending. Nodes that finish without waiting on anything are so run back to
back by one task, while nodes that wait (model calls) get a worker each, up to the limit, a
few event-loop turns later. The cost per node is a queue operation, not a task: per-node
overhead stays flat from 100 to 100,000 nodes, and "at most N at once" holds by
construction.

Growth can also be held back from outside (``may_grow``): while something downstream of
the nodes cannot keep up (a run store whose write queue is full), no worker is added, and
the workers there are take the next ready node once their own is done. Nodes in flight then
stay bounded by what that resource absorbs, not by ``max_concurrency``: without it, 100,000
ready nodes each waiting on a store write were 100,000 suspended tasks at once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Iterable
from typing import Generic, TypeVar

import anyio
import networkx as nx
from anyio.abc import TaskGroup
from networkx.classes.reportviews import InDegreeView

__all__ = ["Scheduler"]

N = TypeVar("N", bound=Hashable)

_CHECKPOINT_EVERY = 64
"""A worker running nodes back to back yields to the event loop after this many."""


def _always() -> bool:
    return True


def _never() -> bool:
    return False


async def _ended(node: object) -> bool:
    raise RuntimeError("this schedule has ended")


class Scheduler(Generic[N]):
    """Runs ``run_node`` for every node of ``graph`` in dependency order, concurrently.

    Args:
        graph: Edges run from a dependency to its dependent; must be acyclic.
        run_node: Runs one node; returns whether it succeeded. It must not raise (an
            exception ends the whole schedule).
        max_concurrency: Most nodes running at once; ``None`` for no limit.
        may_launch: Asked before each node starts; ``False`` leaves the node (and so its
            dependents) unstarted, e.g. once the budget is exhausted.
        may_grow: Asked before one more worker is started; ``False`` holds the ready
            nodes for the workers already running (one always runs while nodes are ready),
            e.g. while a listener's write queue is full.
        completed: Nodes that already succeeded (a resumed run): never run again; their
            dependents are released from the start.

    After :meth:`run`, :attr:`skipped` maps each skipped node to the failed node that
    caused it; nodes neither in :attr:`finished` nor in :attr:`skipped` never started.
    """

    def __init__(
        self,
        graph: nx.DiGraph[N],
        run_node: Callable[[N], Awaitable[bool]],
        *,
        max_concurrency: int | None = None,
        may_launch: Callable[[], bool] = _always,
        may_grow: Callable[[], bool] = _always,
        completed: Iterable[N] = (),
    ) -> None:
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        self._graph = graph
        self._run_node = run_node
        self._limit = max_concurrency if max_concurrency is not None else len(graph) + 1
        self._may_launch = may_launch
        self._may_grow = may_grow
        self._successors = graph.successors  # an iterator over the adjacency, no view object
        # A view of its own, not ``graph.in_degree``: that one is cached on the graph and
        # refers back to it, a reference cycle only the garbage collector frees.
        self._waiting_on = dict(InDegreeView(graph))
        self._queue: deque[N] = deque()
        self._running = 0
        self._workers = 0
        self._spawn_pending = False
        self._task_group: TaskGroup | None = None
        self.finished: dict[N, bool] = {}
        """Nodes that ran, with whether they succeeded."""
        self.skipped: dict[N, N] = {}
        """Nodes skipped because a dependency failed, with that failed node."""
        self.peak_running = 0
        """The most nodes that ran at once."""
        for node in completed:
            self.finished[node] = True
            for dependent in self._successors(node):
                self._waiting_on[dependent] -= 1

    async def run(self) -> None:
        """Run every node that can run; returns when nothing more can start.

        Once it returns, the scheduler drops its callbacks: kept for :attr:`finished` and
        :attr:`skipped`, it holds no reference back to their owner (no reference cycle, so
        a finished run is freed as soon as it is dropped, without waiting for the garbage
        collector).
        """
        try:
            async with anyio.create_task_group() as task_group:
                self._task_group = task_group
                finished = self.finished
                self._queue.extend(
                    node
                    for node, waiting in self._waiting_on.items()
                    if waiting == 0 and node not in finished
                )
                self._spawn()
        finally:
            self._run_node, self._may_launch, self._may_grow = _ended, _never, _never
            self._task_group = None

    def _spawn(self) -> None:
        """Start one more worker if nodes are queued, none is pending and the limit allows.

        Beyond the first (ready nodes must never stall), ``may_grow`` must agree too.
        """
        if (
            self._queue
            and not self._spawn_pending
            and self._workers < self._limit
            and (self._workers == 0 or self._may_grow())
        ):
            assert self._task_group is not None
            self._workers += 1
            self._spawn_pending = True
            self._task_group.start_soon(self._worker)

    async def _worker(self) -> None:
        self._spawn_pending = False
        queue, successors, waiting_on = self._queue, self._successors, self._waiting_on
        streak = 0
        try:
            await anyio.lowlevel.checkpoint_if_cancelled()  # no new work once cancelled
            while queue:
                node = queue.popleft()
                if not self._may_launch():
                    queue.clear()
                    return
                if queue and not self._spawn_pending:
                    self._spawn()
                self._running += 1
                self.peak_running = max(self.peak_running, self._running)
                try:
                    succeeded = await self._run_node(node)
                finally:
                    self._running -= 1
                self.finished[node] = succeeded
                if succeeded:
                    for dependent in successors(node):
                        waiting_on[dependent] -= 1
                        if waiting_on[dependent] == 0:
                            queue.append(dependent)
                else:
                    for dependent in nx.descendants(self._graph, node):
                        self.skipped.setdefault(dependent, node)
                streak += 1
                if streak == _CHECKPOINT_EVERY and queue:
                    streak = 0
                    await anyio.lowlevel.checkpoint()
        finally:
            self._workers -= 1
