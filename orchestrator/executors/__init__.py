"""Executors other than the default :class:`~orchestrator.executor.LocalExecutor`.

:mod:`orchestrator.executors.ray`: :class:`~orchestrator.executors.ray.RayExecutor`, Python
work as Ray tasks (the ``ray`` extra; Ray is imported only when the executor starts).
"""

from orchestrator.executors.ray import RayExecutor

__all__ = ["RayExecutor"]
