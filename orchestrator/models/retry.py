"""Retrying transient model-API failures: backoff with jitter, ``retry-after``, a deadline.

Kept apart from the Anthropic client so the policy is testable alone and so the scheduler's
view of failures (one :class:`~orchestrator.exceptions.ModelAPIError` per call that could
not be saved) stays vendor-neutral.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How transient failures (429, 529, 5xx, timeouts, dropped connections) are retried.

    Attributes:
        max_retries: Most retries after the first try.
        base_delay_s: First backoff; doubles each retry (full jitter).
        max_delay_s: Cap on one backoff.
        deadline_s: No retry starts if it would begin after this many seconds since the
            first try; the call then fails with the last error.
        max_retry_after_s: ``retry-after`` values above this are capped.
    """

    max_retries: int = 4
    base_delay_s: float = 0.5
    max_delay_s: float = 20.0
    deadline_s: float = 300.0
    max_retry_after_s: float = 60.0

    def delay(self, retry: int, retry_after_s: float | None, rng: random.Random) -> float:
        """Seconds to wait before retry number ``retry`` (1-based).

        ``retry-after`` from the server wins when given; otherwise exponential backoff with
        full jitter (AWS's "full jitter": uniform between 0 and the exponential bound).
        """
        if retry_after_s is not None:
            return min(max(retry_after_s, 0.0), self.max_retry_after_s)
        bound = min(self.max_delay_s, self.base_delay_s * 2 ** (retry - 1))
        return rng.uniform(0, bound)

    def allows(self, retry: int, elapsed_s: float, delay_s: float) -> bool:
        """Whether retry number ``retry`` may start after waiting ``delay_s``."""
        return retry <= self.max_retries and elapsed_s + delay_s <= self.deadline_s


def parse_retry_after(value: str | None) -> float | None:
    """Parse a ``retry-after`` header given in seconds (HTTP dates are ignored)."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None
