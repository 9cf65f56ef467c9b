"""Run a DAG of async jobs: each starts the moment its last dependency succeeds.

There are no level-by-level barriers: a node's dependents are released as soon as it
succeeds, and the task for a node is only created once it is ready and a concurrency slot
is free (ready nodes beyond the limit wait in a FIFO queue, not as parked tasks), which keeps
the per-node cost low on wide graphs. A node that fails marks its transitive dependents
skipped; the rest of the graph goes on. This module knows nothing about models: it runs
``run_node(node_id) -> succeeded?`` callbacks.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Iterable
from typing import Generic, TypeVar

import anyio
import networkx as nx
from anyio.abc import TaskGroup

__all__ = ["Scheduler"]

N = TypeVar("N", bound=Hashable)


def _always() -> bool:
    return True


class Scheduler(Generic[N]):
    """Runs ``run_node`` for every node of ``graph`` in dependency order, concurrently.

    Args:
        graph: Edges run from a dependency to its dependent; must be acyclic.
        run_node: Runs one node; returns whether it succeeded. It must not raise (an
            exception ends the whole schedule).
        max_concurrency: Most nodes running at once; ``None`` for no limit.
        may_launch: Asked before each node starts; ``False`` leaves the node (and so its
            dependents) unstarted, e.g. once the budget is exhausted.
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
        completed: Iterable[N] = (),
    ) -> None:
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        self._graph = graph
        self._run_node = run_node
        self._limit = max_concurrency if max_concurrency is not None else len(graph) + 1
        self._may_launch = may_launch
        self._successors = {node: list(graph.successors(node)) for node in graph}
        self._waiting_on = dict(graph.in_degree())
        self._queue: deque[N] = deque()
        self._running = 0
        self._task_group: TaskGroup | None = None
        self.finished: dict[N, bool] = {}
        """Nodes that ran, with whether they succeeded."""
        self.skipped: dict[N, N] = {}
        """Nodes skipped because a dependency failed, with that failed node."""
        self.peak_running = 0
        """The most nodes that ran at once."""
        for node in completed:
            self.finished[node] = True
            for dependent in self._successors[node]:
                self._waiting_on[dependent] -= 1

    async def run(self) -> None:
        """Run every node that can run; returns when nothing more can start."""
        async with anyio.create_task_group() as task_group:
            self._task_group = task_group
            for node, waiting in self._waiting_on.items():
                if waiting == 0 and node not in self.finished:
                    self._ready(node)

    def _ready(self, node: N) -> None:
        if self._running < self._limit:
            self._start(node)
        else:
            self._queue.append(node)

    def _start(self, node: N) -> None:
        if not self._may_launch():
            self._queue.clear()
            return
        assert self._task_group is not None
        self._running += 1
        self.peak_running = max(self.peak_running, self._running)
        self._task_group.start_soon(self._run_one, node)

    async def _run_one(self, node: N) -> None:
        try:
            succeeded = await self._run_node(node)
        finally:
            self._running -= 1
        self.finished[node] = succeeded
        if succeeded:
            for dependent in self._successors[node]:
                self._waiting_on[dependent] -= 1
                if self._waiting_on[dependent] == 0:
                    self._ready(dependent)
        else:
            for dependent in nx.descendants(self._graph, node):
                self.skipped.setdefault(dependent, node)
        while self._queue and self._running < self._limit:
            self._start(self._queue.popleft())
