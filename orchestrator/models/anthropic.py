"""The Anthropic model client: the only module that imports the ``anthropic`` SDK.

It serves production and the offline path alike: offline, a tier's ``base_url`` (or
``ANTHROPIC_BASE_URL``) points at the local Messages-API server in :mod:`orchestrator_sim`
and everything else is the same code.

What it does per request:

* one ``AsyncAnthropic`` per distinct (base_url, API key), reused across calls;
* plain text, structured output through ``output_config`` (never forced ``tool_choice``,
  which the newest Sonnet and Opus reject), and the tool-use loop with per-call timeouts
  and the node's allowlist, errors returned to the model as ``is_error`` results;
* prompt caching on the system prompt and the tool catalogue;
* its own retries (SDK retries off) so that each retry is visible and bounded by a deadline,
  honouring ``retry-after``; errors the caller caused are not retried and are reported in
  plain words, never with the key;
* a response that does not parse (a body cut short, a stream that ends before
  ``message_stop``) is a transport error like a dropped connection: counted as
  ``invalid_response`` and retried on the same tier;
* per-tier rate limits, in this process or (``shared_rate_limits``) shared through a file
  with every process using the same directory.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import anyio
import httpx2
from anthropic.types import Message as SDKMessage

from orchestrator.budget import Meter
from orchestrator.exceptions import ModelAPIError, ModelAPIUserError
from orchestrator.models.base import ModelRequest, ModelResponse
from orchestrator.models.ratelimit import Limiter, RateLimiter
from orchestrator.models.retry import RetryPolicy, parse_retry_after
from orchestrator.models.shared_ratelimit import RateLimitFile, scope_key
from orchestrator.pricing import Usage
from orchestrator.telemetry.tracing import current_telemetry
from orchestrator.tiers import Tier
from orchestrator.tool import ServerTool, Tool
from orchestrator.wire import SIMULATED_HEADER, is_simulated

__all__ = ["AnthropicClient", "RetryEvent"]

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
)


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """A transient failure that will be retried (for logs and traces).

    Attributes:
        tier: Tier name.
        model: Model id.
        retry: Retry number (1-based).
        delay_s: Seconds until the retry.
        error_type: Kind of failure (``rate_limit_error``, ``overloaded_error``,
            ``invalid_response``...).
        status_code: HTTP status, ``None`` for timeouts and dropped connections.
    """

    tier: str
    model: str
    retry: int
    delay_s: float
    error_type: str
    status_code: int | None


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
            given the same directory; ``None`` keeps them in this client.
        endpoint_label: Names the endpoint in shared rate-limit keys instead of its base
            URL (for a local server that listens on a fresh port in every process).
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
        shared_rate_limits: Path | None = None,
        endpoint_label: str | None = None,
    ) -> None:
        self.base_url = base_url
        self._api_key = api_key
        self.retry = retry or RetryPolicy()
        self.timeout_s = timeout_s
        self.stream = stream
        self.on_retry = on_retry
        self._rng = random.Random(seed)
        self._sdks: dict[tuple[str | None, str], anthropic.AsyncAnthropic] = {}
        self._limit_file = RateLimitFile(shared_rate_limits) if shared_rate_limits else None
        self._endpoint_label = endpoint_label
        self._limits: dict[tuple[str, str, str], Limiter] = {}
        self.errors_seen: Counter[str] = Counter()
        """Failed HTTP calls by error type (``rate_limit_error``, ``invalid_response``...)."""

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
        for sdk in sdks:
            await sdk.close()

    async def complete(self, request: ModelRequest, meter: Meter) -> ModelResponse:
        """Run the request, including its tool loop, and return the final answer."""
        sdk, key = self._sdk_for(request.tier)
        params = _base_params(request)
        messages: list[dict[str, Any]] = [m.model_dump() for m in request.messages]
        tools = {t.name: t for t in request.tools if not isinstance(t, ServerTool)}
        usage, tool_calls = Usage(), 0
        for step in range(request.max_tool_steps):
            last_step = step == request.max_tool_steps - 1
            call = {**params, "messages": messages}
            if request.tools and last_step:
                call["tool_choice"] = {"type": "none"}  # out of steps: answer now
            message, simulated = await self._send(sdk, key, request, meter, call)
            usage = usage + _usage(message)
            if message.stop_reason == "pause_turn" and not last_step:
                # a long server-side tool turn: send it back as is and let the model go on
                messages.append({"role": "assistant", "content": _replayable(message)})
                continue
            if message.stop_reason != "tool_use" or not tools:
                return _response(message, usage, tool_calls, simulated, request)
            messages.append({"role": "assistant", "content": _replayable(message)})
            results = await _run_tools(message, tools, request.tool_timeout_s)
            tool_calls += len(results)
            messages.append({"role": "user", "content": results})
        raise AssertionError("unreachable: the last step forbids tool use")  # pragma: no cover

    # -- transport ----------------------------------------------------------------------

    def _sdk_for(self, tier: Tier) -> tuple[anthropic.AsyncAnthropic, str]:
        key = self._key_for(tier)
        base_url = tier.base_url or self.base_url
        sdk = self._sdks.get((base_url, key))
        if sdk is None:
            sdk = anthropic.AsyncAnthropic(
                api_key=key, base_url=base_url, max_retries=0, timeout=self.timeout_s
            )
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
    ) -> tuple[SDKMessage, bool]:
        prompt_tokens = _prompt_bytes(call)
        limiter = self._limiter(request.tier, sdk)
        started = anyio.current_time()
        retry = 0
        while True:
            await limiter.acquire(prompt_tokens // 4)  # ~4 bytes a token: the limit's estimate
            span = current_telemetry().model_call(
                tier=request.tier.name,
                model=call["model"],
                purpose=request.purpose,
                task_id=request.task_id,
                max_tokens=call["max_tokens"],
            )
            try:
                fees = request.tier.web_search_usd * sum(
                    t.max_searches for t in request.tools if isinstance(t, ServerTool)
                )
                async with meter.call(prompt_tokens, call["max_tokens"], fees) as ticket:
                    try:
                        message, simulated = await self._post(sdk, call)
                    except BaseException as exc:
                        ticket.may_be_billed = _may_be_billed(exc)
                        raise
                    ticket.usage = usage = _usage(message)
                span.succeeded(
                    response_id=message.id,
                    response_model=message.model,
                    usage=usage,
                    simulated=simulated,
                )
                return message, simulated
            except _TRANSPORT_ERRORS as exc:
                error = _classify(exc, request.tier, key)
                self.errors_seen[error.error_type] += 1
                retry += 1
                retry_after = _retry_after(exc)
                if retry_after is not None:
                    await limiter.hold(min(retry_after, self.retry.max_retry_after_s))  # tier
                delay = self.retry.delay(retry, retry_after, self._rng)
                elapsed = anyio.current_time() - started
                if not error.retryable or not self.retry.allows(retry, elapsed, delay):
                    span.failed(error.error_type, str(error), status_code=error.status_code)
                    raise error from None
                span.failed(
                    error.error_type,
                    str(error),
                    status_code=error.status_code,
                    retry=retry,
                    delay_s=delay,
                )
                self._notify(request.tier, retry, delay, error)
                await anyio.sleep(delay)
            except BaseException as exc:  # budget exhausted, cancelled: the span says so
                span.failed(type(exc).__name__, str(exc))
                raise

    async def _post(
        self, sdk: anthropic.AsyncAnthropic, call: dict[str, Any]
    ) -> tuple[SDKMessage, bool]:
        if self.stream:
            async with sdk.messages.stream(**call) as stream:
                try:
                    seen = {event.type async for event in stream}
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

    def _notify(self, tier: Tier, retry: int, delay: float, error: ModelAPIError) -> None:
        if self.on_retry is not None:
            self.on_retry(
                RetryEvent(tier.name, tier.model, retry, delay, error.error_type, error.status_code)
            )


# -- request building ---------------------------------------------------------------------


def _base_params(request: ModelRequest) -> dict[str, Any]:
    params: dict[str, Any] = {"model": request.tier.model, "max_tokens": request.max_output_tokens}
    if request.system:
        params["system"] = [
            {"type": "text", "text": request.system, "cache_control": {"type": "ephemeral"}}
        ]
    local = [tool for tool in request.tools if not isinstance(tool, ServerTool)]
    server = [tool.definition for tool in request.tools if isinstance(tool, ServerTool)]
    if local or server:
        params["tools"] = (_tool_specs(local) if local else []) + server
    if request.output_schema is not None:
        schema = anthropic.transform_schema(request.output_schema)
        params["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
    return params


def _tool_specs(tools: Sequence[Tool]) -> list[dict[str, Any]]:
    specs: list[dict[str, Any]] = [
        {"name": tool.name, "description": tool.description, "input_schema": tool.input_schema}
        for tool in tools
    ]
    specs[-1] = {**specs[-1], "cache_control": {"type": "ephemeral"}}  # caches the catalogue
    return specs


def _prompt_bytes(call: Mapping[str, Any]) -> int:
    parts = (
        call.get("system", ""),
        call["messages"],
        call.get("tools", ()),
        call.get("output_config"),
    )
    return sum(len(json.dumps(part, default=str).encode()) for part in parts)


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
    return Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_write_tokens=usage.cache_creation_input_tokens or 0,
        cache_read_tokens=usage.cache_read_input_tokens or 0,
        web_search_requests=(getattr(server, "web_search_requests", 0) or 0) if server else 0,
    )


def _text(message: SDKMessage) -> str:
    return "".join(block.text for block in message.content if block.type == "text")


def _response(
    message: SDKMessage, usage: Usage, tool_calls: int, simulated: bool, request: ModelRequest
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
        usage=usage,
        model=message.model,
        response_id=message.id,
        stop_reason=message.stop_reason,
        tool_calls=tool_calls,
        simulated=simulated,
    )


def _replayable(message: SDKMessage) -> list[dict[str, Any]]:
    """The assistant turn as sent back within the same conversation (same model)."""
    return [block.model_dump(mode="json", exclude_none=True) for block in message.content]


def _is_simulated(headers: Mapping[str, str]) -> bool:
    return is_simulated(headers.get(SIMULATED_HEADER))


# -- tools --------------------------------------------------------------------------------


async def _run_tools(
    message: SDKMessage, tools: Mapping[str, Tool], timeout_s: float
) -> list[dict[str, Any]]:
    results = []
    for block in message.content:
        if block.type != "tool_use":
            continue
        with current_telemetry().tool_call(block.name, block.id, block.input) as span:
            content, is_error = await _run_tool(
                tools.get(block.name), block.name, block.input, timeout_s
            )
            span.result(content, is_error=is_error)
        result: dict[str, Any] = {
            "type": "tool_result",
            "tool_use_id": block.id,
            "content": content,
        }
        if is_error:
            result["is_error"] = True
        results.append(result)
    return results


async def _run_tool(
    tool: Tool | None, name: str, arguments: object, timeout_s: float
) -> tuple[str, bool]:
    if tool is None:
        return f"tool {name!r} is not available to this task", True
    if not isinstance(arguments, dict):
        return "tool arguments must be a JSON object", True
    try:
        with anyio.fail_after(timeout_s):
            return await tool(arguments), False
    except TimeoutError:
        return f"tool {name!r} timed out after {timeout_s:g}s", True
    except Exception as exc:  # noqa: BLE001  (a tool error goes back to the model)
        return f"{type(exc).__name__}: {exc}", True


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
