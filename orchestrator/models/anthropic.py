r"""The Anthropic model client: the only module that imports the ``anthropic`` SDK.

It serves production and the offline path alike: offline, a tier's ``base_url`` points at
the local Messages-API server (:mod:`orchestrator_sim`); everything else is the same code.

What it does per request:

* one ``AsyncAnthropic`` per distinct (base_url, API key), reused across calls;
* one model turn per :meth:`AnthropicClient.complete`: plain text, structured output
  through ``output_config`` (never forced ``tool_choice``, which the newest Sonnet and Opus
  reject), ``tool_use`` blocks returned as :class:`~orchestrator.models.base.ToolCall`\ s
  for the engine's tool loop (:mod:`orchestrator.turns`) to run;
* prompt caching on the system prompt and the tool catalogue;
* a call whose request has an ``on_text`` hook is streamed, each text delta handed to it;
* its own retries (SDK retries off), each visible, bounded by a deadline, honouring
  ``retry-after``; errors the caller caused are not retried, said plainly, never the key;
* a response that does not parse (a body cut short, a stream ended before ``message_stop``)
  is a transport error like a dropped connection (``invalid_response``), retried;
* per-tier rate limits, here or shared (``shared_rate_limits``: a home's file, PostgreSQL);
* with a ``relay``, each HTTP exchange made by a worker (:mod:`orchestrator.models.relay`).

It opens no spans: :class:`~orchestrator.models.instrumented.InstrumentedModel` traces any
client, this one included, from the retries it reports on each response and error.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import anthropic
import anyio
import httpx2
from anthropic.types import Message as SDKMessage

from orchestrator.budget import CallTicket, Meter
from orchestrator.exceptions import ModelAPIError, ModelAPIUserError, RetryEvent
from orchestrator.models.anthropic_batches import BatchEntryError, SDKBatches
from orchestrator.models.anthropic_request import (
    cache_write_split,
    marks_one_hour,
    prompt_bytes,
    request_params,
)
from orchestrator.models.base import (
    Block,
    ModelRequest,
    ModelResponse,
    ProviderBlock,
    TextBlock,
    TextHook,
    ToolCall,
)
from orchestrator.models.batch import BatchQueue, custom_id_of
from orchestrator.models.ratelimit import Limiter, RateLimiter
from orchestrator.models.relay import HTTPRelay, RelayTransport, relayed_worker
from orchestrator.models.retry import RetryPolicy, parse_retry_after
from orchestrator.models.shared_ratelimit import RateLimitFile, RateLimitState, scope_key
from orchestrator.pricing import Usage
from orchestrator.tiers import Tier
from orchestrator.tool import ServerTool
from orchestrator.wire import SIMULATED_HEADER, is_simulated

__all__ = ["AnthropicClient", "RetryEvent"]  # RetryEvent: from orchestrator.exceptions

_RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
_HINTS = {
    401: "check the API key (ANTHROPIC_API_KEY, or the tier's api_key_env)",
    403: "the key may not use this model or endpoint",
    404: "check the tier's model id in your tiers file",
    413: "the request is over the API's size limit (32 MB): shorten the task's inputs, "
    "its output_schema or its tools' results",
}


class _InvalidResponse(Exception):
    """A response that arrived but does not parse as a whole message (cut short, malformed)."""


# What the SDK raises on a body that does not parse: json.JSONDecodeError and pydantic's
# ValidationError are ValueErrors; a stream's events that do not fit together raise lookup,
# type or attribute errors while the SDK accumulates the message.
_UNPARSABLE = (ValueError, LookupError, TypeError, AttributeError)
# Failures of one HTTP exchange, retried under the policy. httpx2 is the SDK's transport: a
# stream cut mid-body raises its errors unwrapped (a plain call gets APIConnectionError).
_TRANSPORT_ERRORS = (
    anthropic.APIStatusError,
    anthropic.APIConnectionError,
    httpx2.TransportError,
    _InvalidResponse,
    BatchEntryError,
)


class AnthropicClient:
    """A :class:`~orchestrator.models.base.ModelClient` over the official ``anthropic`` SDK.

    Args:
        base_url: Default endpoint for tiers without their own ``base_url``; ``None`` lets
            the SDK read ``ANTHROPIC_BASE_URL`` or use the public API.
        api_key: Default key for tiers without their own ``api_key_env``; ``None`` reads
            ``ANTHROPIC_API_KEY``.
        retry: Retry policy for transient failures.
        timeout_s: Per-request timeout.
        stream: Use server-sent events for every call (the final message is the same).
        seed: Seeds retry jitter, for reproducible runs.
        on_retry: Called before each retry sleep.
        shared_rate_limits: A directory (the home) whose ``ratelimits.db`` holds each
            tier's rate-limit buckets and ``retry-after`` pause, shared by every process
            given the same directory, or a :class:`RateLimitState` holding them elsewhere
            (PostgreSQL: ``PostgresRateLimits``, closed with the client); ``None`` keeps
            them in this client.
        endpoint_label: Names the endpoint in shared rate-limit keys instead of its base
            URL (for a local server that listens on a fresh port in every process).
        batch_collect_s: How long a forming Message Batch waits for more calls.
        batch_poll_s: First wait between polls of a batch (doubling up to a minute).
        relay: Makes each HTTP exchange in a worker, the key read there (a Ray actor:
            ``RayExecutor.relay()``); ``None``: this process makes them.
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        retry: RetryPolicy | None = None,
        timeout_s: float = 600.0,
        stream: bool = False,
        seed: int | None = None,
        on_retry: Callable[[RetryEvent], None] | None = None,
        shared_rate_limits: Path | RateLimitState | None = None,
        endpoint_label: str | None = None,
        batch_collect_s: float = 1.0,
        batch_poll_s: float = 1.0,
        relay: HTTPRelay | None = None,
    ) -> None:
        self.base_url = base_url
        self._api_key = api_key
        self.retry = retry or RetryPolicy()
        self.timeout_s = timeout_s
        self.stream = stream
        self.on_retry = on_retry
        self._rng = random.Random(seed)
        self._sdks: dict[tuple[str | None, str], anthropic.AsyncAnthropic] = {}
        self._limit_file = (
            RateLimitFile(shared_rate_limits)
            if isinstance(shared_rate_limits, str | Path)
            else shared_rate_limits
        )
        self._endpoint_label = endpoint_label
        self._limits: dict[tuple[str, str, str], Limiter] = {}
        self._batch_timing = (batch_collect_s, batch_poll_s)
        self._queues: dict[int, BatchQueue] = {}
        self._relay = relay
        self.errors_seen: Counter[str] = Counter()
        """Failed HTTP calls by error type (``rate_limit_error``, ``invalid_response``...)."""

    @property
    def batches_waiting(self) -> int:
        """Message Batches this client is waiting for now."""
        return sum(queue.waiting for queue in self._queues.values())

    @property
    def rate_limit_waits(self) -> int:
        """How many calls of this client had to wait for a tier's rate limit."""
        return sum(limiter.waits for limiter in self._limits.values())

    async def __aenter__(self) -> AnthropicClient:
        if self._limit_file is not None:
            await self._limit_file.open()  # an unusable file is reported before any call
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every SDK client (and its connection pool)."""
        sdks, self._sdks = list(self._sdks.values()), {}
        self._queues.clear()
        for sdk in sdks:
            await sdk.close()
        if self._limit_file is not None:
            await self._limit_file.aclose()

    async def complete(self, request: ModelRequest, meter: Meter) -> ModelResponse:
        """Send the conversation and return the model's turn (tool calls not run)."""
        sdk, key = self._sdk_for(request.tier)
        call = request_params(request, anthropic.transform_schema)
        if meter.earlier and not request.batch:  # an earlier process may have batched it
            batched = request.model_copy(update={"batch": True})
            if custom_id_of(as_batch := request_params(batched, anthropic.transform_schema)) in (
                meter.earlier
            ):
                request, call = batched, as_batch  # collected from that batch, not sent again
        retries: list[RetryEvent] = []
        try:
            message, simulated = await self._send(sdk, key, request, meter, call, retries=retries)
        except ModelAPIError as error:
            error.retries = tuple(retries)
            raise
        response = _response(message, simulated, request, tuple(retries))
        worker = relayed_worker() if self._relay is not None else None
        return response.model_copy(update={"worker": worker}) if worker else response

    # -- transport ----------------------------------------------------------------------

    def _sdk_for(self, tier: Tier) -> tuple[anthropic.AsyncAnthropic, str]:
        key = self._key_for(tier)
        base_url = tier.base_url or self.base_url
        sdk = self._sdks.get((base_url, key))
        if sdk is None:
            http = None
            if self._relay is not None:  # the worker reads the key from this variable
                env = tier.api_key_env or "ANTHROPIC_API_KEY"
                relayed = RelayTransport(self._relay, key_env=env, timeout_s=self.timeout_s)
                http = httpx2.AsyncClient(transport=relayed, timeout=self.timeout_s)
            sdk = anthropic.AsyncAnthropic(
                api_key=key, base_url=base_url, max_retries=0, timeout=self.timeout_s,
                http_client=http,
            )  # fmt: skip
            self._sdks[(base_url, key)] = sdk
        return sdk, key

    def _limiter(self, tier: Tier, sdk: anthropic.AsyncAnthropic) -> Limiter:
        key = (tier.name, tier.model, self._endpoint_label or str(sdk.base_url).rstrip("/"))
        limiter = self._limits.get(key)
        if limiter is None:
            rpm, tpm = tier.requests_per_minute, tier.tokens_per_minute
            if self._limit_file is None:
                limiter = RateLimiter(rpm, tpm)
            else:
                limiter = self._limit_file.limiter(scope_key(*key), rpm, tpm)
            self._limits[key] = limiter
        return limiter

    def _key_for(self, tier: Tier) -> str:
        if tier.api_key_env:
            key = os.environ.get(tier.api_key_env)
            source = tier.api_key_env
        else:
            key = self._api_key or os.environ.get("ANTHROPIC_API_KEY")
            source = "ANTHROPIC_API_KEY"
        if not key:
            raise ModelAPIUserError(
                f"no API key for tier {tier.name!r}: set {source}, or run offline "
                "against the local server (orchestrator run --offline)",
                status_code=None,
                error_type="authentication_error",
            )
        return key

    async def _send(
        self,
        sdk: anthropic.AsyncAnthropic,
        key: str,
        request: ModelRequest,
        meter: Meter,
        call: dict[str, Any],
        *,
        retries: list[RetryEvent],
    ) -> tuple[SDKMessage, bool]:
        prompt_tokens = prompt_bytes(call)
        limiter = self._limiter(request.tier, sdk)
        fees = request.tier.web_search_usd * sum(
            t.max_searches for t in request.tools if isinstance(t, ServerTool)
        )
        batch = custom_id_of(call) if request.batch else None
        started = anyio.current_time()
        while True:
            if batch is None:  # batches have their own limits, not the Messages API's
                await limiter.acquire(prompt_tokens // 4)  # ~4 bytes a token: an estimate
            else:  # the deadline bounds retries, not the hours a batch may take
                started = anyio.current_time()
            try:
                reserved = meter.call(
                    prompt_tokens, call["max_tokens"], fees,
                    batch=batch, one_hour=marks_one_hour(call),
                )  # fmt: skip
                async with reserved as ticket:
                    try:
                        if batch is None:
                            message, simulated = await self._post(
                                sdk, call, request.on_text, len(retries)
                            )
                        else:
                            message, simulated = await self._batched(sdk, call, meter, ticket)
                    except BaseException as exc:
                        ticket.may_be_billed = (  # a batch call: once in a batch that runs
                            _may_be_billed(exc) if batch is None else ticket.batch_id is not None
                            and not isinstance(exc, BatchEntryError)
                        )  # fmt: skip
                        raise
                    ticket.usage = _usage(message)
                return message, simulated
            except _TRANSPORT_ERRORS as exc:
                error = _classify(exc, request.tier, key)
                self.errors_seen[error.error_type] += 1
                retry = len(retries) + 1
                retry_after = _retry_after(exc)
                if retry_after is not None:
                    await limiter.hold(min(retry_after, self.retry.max_retry_after_s))  # tier
                delay = self.retry.delay(retry, retry_after, self._rng)
                elapsed = anyio.current_time() - started
                if not error.retryable or not self.retry.allows(retry, elapsed, delay):
                    raise error from None
                event = RetryEvent(
                    request.tier.name, request.tier.model, retry, delay, error.error_type,
                    error.status_code, str(error), time.time_ns(),
                )  # fmt: skip
                retries.append(event)
                if self.on_retry is not None:
                    self.on_retry(event)
                await anyio.sleep(delay)

    async def _batched(
        self, sdk: anthropic.AsyncAnthropic, call: dict[str, Any], meter: Meter, ticket: CallTicket
    ) -> tuple[SDKMessage, bool]:
        """The call sent in the next Message Batch (or read from the batch it waits in)."""
        queue = self._queues.get(id(sdk))
        if queue is None:
            collect_s, poll_s = self._batch_timing
            transport = SDKBatches(sdk, self._count_error, retry_s=poll_s)
            queue = self._queues[id(sdk)] = BatchQueue(
                transport, collect_s=collect_s, poll_s=poll_s
            )
        assert ticket.custom_id is not None
        if ticket.batch_id is None:
            await meter.batched(ticket, await queue.submit(ticket.custom_id, call))
        assert ticket.batch_id is not None
        outcome = await queue.result(ticket.batch_id, ticket.custom_id)
        if outcome.kind != "succeeded":
            raise BatchEntryError(outcome)
        return _whole(outcome.message), outcome.simulated

    def _count_error(self, error_type: str) -> None:
        self.errors_seen[error_type] += 1

    async def _post(
        self,
        sdk: anthropic.AsyncAnthropic,
        call: dict[str, Any],
        on_text: TextHook | None = None,
        retry: int = 0,
    ) -> tuple[SDKMessage, bool]:
        if self.stream or on_text is not None:  # a call whose text is wanted as it comes
            async with sdk.messages.stream(**call) as stream:
                try:
                    seen = set()
                    async for event in stream:
                        seen.add(event.type)
                        if event.type == "text" and on_text is not None:
                            await on_text(event.text, retry)
                    if not {"message_start", "message_stop"} <= seen:
                        raise _InvalidResponse("the event stream ended before message_stop")
                    message: object = await stream.get_final_message()
                except _UNPARSABLE as exc:
                    raise _InvalidResponse(f"an event did not parse ({exc})") from None
                return _whole(message), _is_simulated(stream.response.headers)
        raw = await sdk.messages.with_raw_response.create(**call)
        try:
            parsed: object = await raw.parse()
        except (*_UNPARSABLE, anthropic.APIResponseValidationError) as exc:
            raise _InvalidResponse(f"the body did not parse ({exc})") from None
        return _whole(parsed), _is_simulated(raw.headers)


# -- responses ----------------------------------------------------------------------------


def _whole(message: object) -> SDKMessage:
    """``message`` if it has what a complete message has (the SDK does not validate)."""
    usage = getattr(message, "usage", None)
    if (
        not isinstance(message, SDKMessage)
        or message.type != "message"
        or not isinstance(message.id, str)
        or not isinstance(message.content, list)
        or message.stop_reason is None  # null only in a stream's first event
        or not isinstance(getattr(usage, "input_tokens", None), int)
        or not isinstance(getattr(usage, "output_tokens", None), int)
    ):
        raise _InvalidResponse("the body is not a whole message")
    return message


def _usage(message: SDKMessage) -> Usage:
    usage = message.usage
    server = getattr(usage, "server_tool_use", None)
    written = usage.cache_creation_input_tokens or 0
    _, written_1h = cache_write_split(getattr(usage, "cache_creation", None), written)
    return Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_write_tokens=written,
        cache_write_1h_tokens=written_1h,
        cache_read_tokens=usage.cache_read_input_tokens or 0,
        web_search_requests=(getattr(server, "web_search_requests", 0) or 0) if server else 0,
    )


def _text(message: SDKMessage) -> str:
    return "".join(block.text for block in message.content if block.type == "text")


def _response(
    message: SDKMessage, simulated: bool, request: ModelRequest, retries: tuple[RetryEvent, ...]
) -> ModelResponse:
    text = _text(message)
    data: Any = None
    if request.output_schema is not None:
        try:
            data = json.loads(text)
        except ValueError:
            data = None  # the schema verifier reports it
    return ModelResponse(
        text=text,
        data=data,
        usage=_usage(message),
        model=message.model,
        response_id=message.id,
        stop_reason=message.stop_reason,
        content=tuple(_content(message)),
        retries=retries,
        simulated=simulated,
    )


def _content(message: SDKMessage) -> list[Block]:
    """The turn's blocks, each keeping the API's own form to be sent back as is."""
    blocks: list[Block] = []
    for block in message.content:
        data = block.model_dump(mode="json", exclude_none=True)
        if block.type == "text":
            blocks.append(TextBlock(text=block.text, provider_data=data))
        elif block.type == "tool_use":
            blocks.append(
                ToolCall(id=block.id, name=block.name, arguments=block.input, provider_data=data)
            )
        else:  # server tool calls and results, thinking: only the API reads them
            blocks.append(ProviderBlock(provider_data=data))
    return blocks


def _is_simulated(headers: Mapping[str, str]) -> bool:
    return is_simulated(headers.get(SIMULATED_HEADER))


# -- errors -------------------------------------------------------------------------------


def _retry_after(exc: BaseException) -> float | None:
    if isinstance(exc, anthropic.APIStatusError):
        return parse_retry_after(exc.response.headers.get("retry-after"))
    return None


def _may_be_billed(exc: BaseException) -> bool:
    """Whether a call that failed this way may still have been billed.

    The request may have reached the server and its answer was not read: a body that did
    not parse, a timeout or a dropped connection once it was sent, a cancelled call. An
    error answer (429, 529, 4xx...) is not billed, nor is a connection never made.
    """
    if isinstance(exc, _InvalidResponse | anyio.get_cancelled_exc_class()):
        return True
    cause = exc.__cause__ if isinstance(exc, anthropic.APIConnectionError) else exc
    if isinstance(cause, httpx2.ConnectError | httpx2.ConnectTimeout | httpx2.PoolTimeout):
        return False
    return isinstance(exc, anthropic.APIConnectionError | httpx2.TransportError)


def _classify(exc: Exception, tier: Tier, key: str) -> ModelAPIError:
    where = f"{tier.name} ({tier.model})"
    if isinstance(exc, BatchEntryError):
        return exc.api_error(where)
    if isinstance(exc, _InvalidResponse):
        return ModelAPIError(f"{where}: invalid response: {exc}", error_type="invalid_response")
    if isinstance(exc, anthropic.APITimeoutError | httpx2.TimeoutException):
        return ModelAPIError(f"{where}: request timed out", error_type="timeout")
    if isinstance(exc, anthropic.APIConnectionError | httpx2.TransportError):
        return ModelAPIError(f"{where}: connection failed ({exc})", error_type="connection_error")
    assert isinstance(exc, anthropic.APIStatusError)
    status = exc.status_code
    kind = exc.type or f"http_{status}"
    detail = exc.api_message or exc.message
    message = f"{where}: HTTP {status} {kind}: {detail}"
    if exc.request_id:
        message += f" (request {exc.request_id})"
    if status in _HINTS:
        message += f"; {_HINTS[status]}"
    message = message.replace(key, "[redacted]") if key else message
    if status in _RETRYABLE_STATUS:
        return ModelAPIError(message, status_code=status, error_type=kind)
    return ModelAPIUserError(message, status_code=status, error_type=kind)
