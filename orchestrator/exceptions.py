"""Every error the orchestrator raises, in one place.

The tree, by whose fault it is::

    OrchestratorError
    ├── UserError                  what the user wrote is wrong; fix the input and retry
    │   ├── PlanValidationError    a plan failed validation (every problem listed)
    │   ├── TierConfigError        a tiers file is invalid (file, key and fix named)
    │   ├── RunLeased              another process owns the run (holds its lease)
    │   └── WorkflowDefinitionError  a Python workflow is malformed
    └── RunError                   something went wrong while running
        ├── BudgetExhausted        the next model call cannot be paid for within the budget
        └── ModelAPIError          a model call failed after the client's own retries
            └── ModelAPIUserError  the call itself was wrong (bad request, auth, unknown model)

Messages are built from fields, so callers can both read a clear sentence and act on the
structured data (``err.problems``, ``err.status_code``...).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

__all__ = [
    "BudgetExhausted",
    "ConfigIssue",
    "ModelAPIError",
    "ModelAPIUserError",
    "OrchestratorError",
    "PlanProblem",
    "PlanValidationError",
    "RetryEvent",
    "RunError",
    "RunLeased",
    "TierConfigError",
    "UserError",
    "WorkflowDefinitionError",
]


class OrchestratorError(Exception):
    """Base class of every error raised by this package."""


class UserError(OrchestratorError):
    """The input is wrong: a plan, a tiers file, a workflow definition or a flag."""


@dataclass(frozen=True, slots=True)
class PlanProblem:
    """One problem found in a plan.

    Attributes:
        task_id: The task the problem is about, or ``None`` for the plan as a whole.
        message: What is wrong, in plain words.
    """

    task_id: str | None
    message: str

    def __str__(self) -> str:
        where = f"task {self.task_id!r}" if self.task_id is not None else "plan"
        return f"{where}: {self.message}"


class PlanValidationError(UserError):
    """A plan failed validation; ``problems`` lists every problem, not just the first."""

    def __init__(self, problems: Sequence[PlanProblem]) -> None:
        self.problems: tuple[PlanProblem, ...] = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        count = len(self.problems)
        super().__init__(f"plan is invalid ({count} problem{'s' * (count != 1)}):\n{lines}")


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a configuration file.

    Attributes:
        key: The dotted key that is wrong, e.g. ``tiers.haiku.prices``.
        problem: What is wrong.
        fix: How to fix it.
    """

    key: str
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.key}: {self.problem} (fix: {self.fix})"


class TierConfigError(UserError):
    """A tier configuration is invalid; every issue names the file, the key and the fix.

    Attributes:
        source: The file (or ``"<default>"``) the configuration came from.
        issues: Every problem found.
    """

    def __init__(self, source: str, issues: Sequence[ConfigIssue]) -> None:
        self.source = source
        self.issues: tuple[ConfigIssue, ...] = tuple(issues)
        if len(self.issues) == 1:
            super().__init__(f"{source}: {self.issues[0]}")
        else:
            lines = "\n".join(f"  - {issue}" for issue in self.issues)
            super().__init__(f"{source}: {len(self.issues)} problems:\n{lines}")


class WorkflowDefinitionError(UserError):
    """A workflow defined in Python is malformed (unknown parameter, duplicate name...)."""


class RunLeased(UserError):
    """Another process owns the run: it holds the run's lease in the store.

    Raised when a lease cannot be acquired (the holder is named), or when a lease this
    process held was released or taken over meanwhile (no holder known: ``host is None``).

    Attributes:
        run_id: The run.
        host: The holder's host name, or ``None`` if no holder is known.
        pid: The holder's process id, or ``None``.
        since: When the holder acquired the lease, or ``None``.
        expires_at: When the lease expires unless renewed, or ``None``.
    """

    def __init__(
        self,
        run_id: str,
        *,
        host: str | None = None,
        pid: int | None = None,
        since: datetime | None = None,
        expires_at: datetime | None = None,
    ) -> None:
        self.run_id = run_id
        self.host = host
        self.pid = pid
        self.since = since
        self.expires_at = expires_at
        if host is None:
            super().__init__(
                f"run {run_id!r} is no longer leased to this process "
                "(its lease was released, or taken over after it expired)"
            )
            return
        when = f", since {_local(since)}" if since is not None else ""
        until = f" (at {_local(expires_at)})" if expires_at is not None else ""
        super().__init__(
            f"run {run_id!r} is being run by another process (pid {pid} on {host}{when}); "
            "resume it once that process has ended, which is noticed at once on the same "
            f"host, or once its lease expires without renewal{until}"
        )


def _local(moment: datetime | None) -> str:
    return moment.astimezone().isoformat(sep=" ", timespec="seconds") if moment else "?"


class RunError(OrchestratorError):
    """A failure while running a plan."""


class BudgetExhausted(RunError):
    """The remaining budget cannot cover the worst case of the next model call."""

    def __init__(self, needed_usd: Decimal, remaining_usd: Decimal) -> None:
        self.needed_usd = needed_usd
        self.remaining_usd = remaining_usd
        super().__init__(
            f"budget exhausted: the next call may cost up to ${needed_usd:.6f} "
            f"but only ${remaining_usd:.6f} remains"
        )


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """A transient failure of a model call that was retried (for logs and traces).

    Attributes:
        tier: Tier name.
        model: Model id.
        retry: Retry number (1-based).
        delay_s: Seconds until the retry.
        error_type: Kind of failure (``rate_limit_error``, ``overloaded_error``,
            ``invalid_response``...).
        status_code: HTTP status, ``None`` for timeouts and dropped connections.
        message: What went wrong, free of secrets.
        at_ns: When it failed (Unix time in nanoseconds), to place it on a trace.
    """

    tier: str
    model: str
    retry: int
    delay_s: float
    error_type: str
    status_code: int | None
    message: str = ""
    at_ns: int = 0


class ModelAPIError(RunError):
    """A model call failed and the client's retries could not fix it.

    Attributes:
        status_code: The HTTP status, or ``None`` for a connection failure or timeout.
        error_type: A short machine-readable kind (``rate_limit_error``, ``timeout``...).
        retryable: Whether trying again (perhaps on another tier) may succeed.
        retries: The failures retried before this one, oldest first.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        error_type: str = "api_error",
        retryable: bool = True,
    ) -> None:
        self.status_code = status_code
        self.error_type = error_type
        self.retryable = retryable
        self.retries: tuple[RetryEvent, ...] = ()
        super().__init__(message)


class ModelAPIUserError(ModelAPIError):
    """The request itself was wrong (400, 401, 403, 404): retrying it cannot help."""

    def __init__(self, message: str, *, status_code: int | None, error_type: str) -> None:
        super().__init__(message, status_code=status_code, error_type=error_type, retryable=False)
