from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anthropic
import pytest

from orchestrator_sim import SimServer


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


ClientFactory = Callable[..., anthropic.AsyncAnthropic]


@pytest.fixture
def make_client() -> ClientFactory:
    """An SDK client for a running server (use it with ``async with``)."""

    def make(server: SimServer, **options: Any) -> anthropic.AsyncAnthropic:
        options.setdefault("max_retries", 0)
        options.setdefault("timeout", 10.0)
        return anthropic.AsyncAnthropic(base_url=server.base_url, api_key="anything", **options)

    return make
