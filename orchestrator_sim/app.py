"""The Messages API on top of the HTTP server: routing, faults, usage, latency, logging.

Order of work for ``POST /v1/messages``: headers (401/400) -> body (400) -> model (404)
-> semantic checks and forced ``tool_choice`` (400) -> context window (400) -> fault draw
-> brain -> ``max_tokens`` cap -> prompt cache -> log -> latency -> answer. Invalid requests
therefore always get their 4xx, whatever the fault rate.

``/v1/messages/batches`` is :mod:`orchestrator_sim.batches`; each request of an ended
batch is answered here by the same steps (no fault draw, latency or streaming; errors
become its ``errored`` result), usage with ``service_tier: "batch"``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import Any

import anyio

from orchestrator.wire import SIMULATED_HEADER
from orchestrator_sim.api import (
    ApiError,
    MessagesParams,
    check_headers,
    error_body,
    output_schema,
    parse_count_tokens,
    parse_messages,
)
from orchestrator_sim.batches import BATCHES_PATH, Batch, BatchApi, Entry
from orchestrator_sim.brain import Brain, BrainReply, BrainRequest, DefaultBrain
from orchestrator_sim.config import FaultKind, SimConfig, SimModel
from orchestrator_sim.faults import FaultInjector
from orchestrator_sim.http import HttpRequest, HttpResponse
from orchestrator_sim.prompts import system_text
from orchestrator_sim.reqlog import RequestLog, RequestRecord
from orchestrator_sim.seeding import short_id, unit
from orchestrator_sim.shapes import encode_sse, message_json, sse_events, usage_json
from orchestrator_sim.usage import (
    PromptCache,
    Segment,
    block_tokens,
    prompt_segments,
    prompt_tokens,
)

__all__ = ["SimApp"]


_MODELS_CREATED = "2025-01-01T00:00:00Z"
_CONCURRENT = 1e-9
"""Seconds after a batch ran until what its requests wrote is readable: any, so that no
request of the same batch reads it (they ran at once)."""


def _retry_after(seconds: float) -> str:
    return str(math.ceil(seconds)) if seconds >= 1 else f"{seconds:.3f}"


class SimApp:
    """Answers Messages-API requests.

    Args:
        config: Server configuration.
        log: Where each request's record goes.
        brain: What answers; default :class:`~orchestrator_sim.brain.DefaultBrain`.
        clock: Seconds that Message Batches (wall clock, since the epoch) and prompt-cache
            TTLs are timed by (injectable, for tests); ``None``: ``time.time`` for
            batches, ``time.monotonic`` for the cache.
    """

    def __init__(
        self,
        config: SimConfig,
        log: RequestLog,
        brain: Brain | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.config = config
        self.log = log
        self.brain: Brain = brain or DefaultBrain(config)
        self.faults = FaultInjector(config)
        self.cache = PromptCache(config.cache_entries, clock or time.monotonic, config.time_scale)
        self.batches = BatchApi(config, clock or time.time, self._batch_entry)
        self._requests = 0

    async def handle(self, request: HttpRequest) -> HttpResponse:
        """Answer one HTTP request (the :data:`~orchestrator_sim.http.Handler`)."""
        self._requests += 1
        request_id = short_id("req_", self.config.seed, "request", self._requests)
        record = RequestRecord(request_id=request_id, method=request.method, path=request.path)
        try:
            response = await self._guarded_route(request, record)
        except ApiError as error:
            record.status, record.error_type = error.status, error.error_type
            await self.log.write(record)
            body = error_body(error, request_id)
            response = HttpResponse(error.status, [*error.headers, *_json_headers()], body)
        response.headers += [("request-id", request_id), (SIMULATED_HEADER, "true")]
        return response

    async def _guarded_route(self, request: HttpRequest, record: RequestRecord) -> HttpResponse:
        try:
            return await self._route(request, record)
        except ApiError:
            raise
        except Exception as exc:  # a brain bug must not stop the server
            record.notes["exception"] = f"{type(exc).__name__}: {exc}"
            raise ApiError(500, "Internal server error (simulator)") from exc

    async def _route(self, request: HttpRequest, record: RequestRecord) -> HttpResponse:
        path = request.path.rstrip("/")
        if request.method == "POST" and path == "/v1/messages":
            return await self._messages(request, record)
        if request.method == "POST" and path == "/v1/messages/count_tokens":
            return await self._count_tokens(request, record)
        if path == BATCHES_PATH or path.startswith(BATCHES_PATH + "/"):
            check_headers(request.headers)
            response = await self.batches.handle(request, path, record)
            await self.log.write(record)
            return response
        if request.method == "GET" and path.startswith("/v1/models"):
            return await self._models(path, record)
        raise ApiError(404, "Not Found")

    # -- POST /v1/messages ------------------------------------------------------------

    async def _messages(self, request: HttpRequest, record: RequestRecord) -> HttpResponse:
        check_headers(request.headers)
        record.model = _model_name(request.body)
        params, model = parse_messages(request.body, self.config.models)
        record.stream, record.capability = params.stream, model.capability
        prompt = _prompt(params, model)
        fault = self._fault(request.body, record)
        message = self._answer(params, model, prompt, record)
        return await self._deliver(message, model, params.stream, fault, record)

    def _answer(
        self,
        params: MessagesParams,
        model: SimModel,
        prompt: tuple[list[Segment], int],
        record: RequestRecord,
        *,
        service_tier: str = "standard",
        batch: Batch | None = None,
    ) -> dict[str, Any]:
        """The brain's answer as a Message, capped at ``max_tokens``, the cache accounted.

        The requests of one ``batch`` run concurrently: each sees the cache as it was when
        the batch ran, so none reads what another of the same batch writes (each writes
        it); later requests and batches read it.
        """
        segments, total = prompt
        reply = self.brain.respond(_brain_request(params, model))
        _note_reply(record, reply)
        content, stop_reason, output_tokens = _cap(reply, params.max_tokens)
        ready_in = model.ttft_s * self.config.time_scale  # readable once the response begins
        at = None
        if batch is not None:
            if batch.cache_time is None:
                batch.cache_time = self.cache.time()
            at, ready_in = batch.cache_time, max(ready_in, _CONCURRENT)
        cache = self.cache.account(
            params.model, segments, model.cache_min_tokens, ready_in=ready_in, at=at
        )
        usage = usage_json(total - cache.read - cache.written, output_tokens, cache, service_tier)
        message_id = short_id("msg_", self.config.seed, "message", record.request_id)
        record.usage = usage
        return message_json(message_id, params.model, content, stop_reason, usage)

    async def _batch_entry(self, batch: Batch, entry: Entry) -> dict[str, Any]:
        """Answer one request of an ended Message Batch; log it as a request of its own."""
        request_id = short_id("req_", self.config.seed, "batch", batch.id, entry.custom_id)
        record = RequestRecord(
            request_id=request_id,
            method="POST",
            path=BATCHES_PATH,
            model=_model_name(entry.params),
            batch_id=batch.id,
            custom_id=entry.custom_id,
        )
        try:
            message = self._batch_message(batch, entry, record)
        except ApiError as error:  # an entry's error is its result, never the server's
            record.status, record.error_type = error.status, error.error_type
            await self.log.write(record)
            detail = {"type": error.error_type, "message": error.message}
            return {"type": "errored", "error": {"type": "error", "error": detail}}
        await self.log.write(record)
        return {"type": "succeeded", "message": message}

    def _batch_message(self, batch: Batch, entry: Entry, record: RequestRecord) -> dict[str, Any]:
        try:
            params, model = parse_messages(entry.params, self.config.models)
            record.capability = model.capability
            prompt = _prompt(params, model)
            roll = unit(self.config.seed, "batch-error", batch.id, entry.custom_id)
            if roll < self.config.batch_error_rate:
                raise ApiError(500, "Internal server error")
            return self._answer(params, model, prompt, record, service_tier="batch", batch=batch)
        except ApiError:
            raise
        except Exception as exc:  # a brain bug must not stop the batch
            record.notes["exception"] = f"{type(exc).__name__}: {exc}"
            raise ApiError(500, "Internal server error (simulator)") from exc

    def _fault(self, body: bytes, record: RequestRecord) -> FaultKind | None:
        fault = self.faults.draw(body)
        record.fault = fault
        if fault == "rate_limit":
            retry_after = self.config.scaled(self.config.retry_after_s)
            raise ApiError(
                429,
                "This request would exceed your organization's rate limit (simulated). "
                "Please try again later.",
                headers=[("retry-after", _retry_after(retry_after))],
            )
        if fault == "overloaded":
            raise ApiError(529, "Overloaded")
        if fault == "server_error":
            raise ApiError(500, "Internal server error")
        return fault

    async def _deliver(
        self,
        message: dict[str, Any],
        model: SimModel,
        stream: bool,
        fault: FaultKind | None,
        record: RequestRecord,
    ) -> HttpResponse:
        ttft = self.config.scaled(model.ttft_s)
        generation = self.config.scaled(message["usage"]["output_tokens"] / model.tokens_per_s)
        slow = self.config.slow_response_s if fault == "slow" else 0.0
        record.latency_s = round(slow + ttft + generation, 6)
        await self.log.write(record)
        if fault == "drop_connection":
            return HttpResponse(200, drop=True)
        cut = fault == "truncated_body"
        if stream:
            await anyio.sleep(slow)
            headers = [("content-type", "text/event-stream"), ("cache-control", "no-cache")]
            return HttpResponse(200, headers, stream=self._events(message, model, ttft, cut=cut))
        await anyio.sleep(record.latency_s)
        body = json.dumps(message).encode("utf-8")
        return HttpResponse(200, _json_headers(), body[: len(body) // 2] if cut else body)

    async def _events(
        self, message: Mapping[str, Any], model: SimModel, ttft: float, *, cut: bool = False
    ) -> AsyncGenerator[bytes, None]:
        per_token = self.config.scaled(1.0 / model.tokens_per_s)
        await anyio.sleep(ttft)
        for name, data, tokens in sse_events(message):
            if cut and name in ("message_delta", "message_stop"):
                return  # the stream ends cleanly, before the message does
            if tokens:
                await anyio.sleep(per_token * tokens)
            yield encode_sse(name, data)

    # -- other endpoints --------------------------------------------------------------

    async def _count_tokens(self, request: HttpRequest, record: RequestRecord) -> HttpResponse:
        check_headers(request.headers)
        record.model, record.kind = _model_name(request.body), "count_tokens"
        params, _model = parse_count_tokens(request.body, self.config.models)
        self._fault(request.body, record)
        total = prompt_tokens(params, prompt_segments(params))
        record.usage = {"input_tokens": total}
        await self.log.write(record)
        return HttpResponse(200, _json_headers(), json.dumps({"input_tokens": total}).encode())

    async def _models(self, path: str, record: RequestRecord) -> HttpResponse:
        record.kind = "models"
        entries = [
            {
                "type": "model",
                "id": name,
                "display_name": model.display_name or name,
                "created_at": _MODELS_CREATED,
            }
            for name, model in self.config.models.items()
        ]
        wanted = path.removeprefix("/v1/models").strip("/")
        document: dict[str, Any]
        if wanted:
            found = [entry for entry in entries if entry["id"] == wanted]
            if not found:
                raise ApiError(404, f"model: {wanted}")
            document = found[0]
        else:
            first, last = (entries[0]["id"], entries[-1]["id"]) if entries else (None, None)
            document = {"data": entries, "has_more": False, "first_id": first, "last_id": last}
        await self.log.write(record)
        return HttpResponse(200, _json_headers(), json.dumps(document).encode())


def _json_headers() -> list[tuple[str, str]]:
    return [("content-type", "application/json")]


def _model_name(body: bytes) -> str | None:
    try:
        document = json.loads(body)
    except ValueError:
        return None
    model = document.get("model") if isinstance(document, dict) else None
    return model if isinstance(model, str) else None


def _check_context(prompt: int, max_tokens: int, model: SimModel) -> None:
    if prompt > model.context_window:
        raise ApiError(400, f"prompt is too long: {prompt} tokens > {model.context_window} maximum")
    if prompt + max_tokens > model.context_window:
        raise ApiError(
            400,
            f"input length and `max_tokens` exceed context limit: {prompt} + {max_tokens} > "
            f"{model.context_window}, decrease input length or `max_tokens` and try again",
        )


def _prompt(params: MessagesParams, model: SimModel) -> tuple[list[Segment], int]:
    """The prompt's cache segments and its tokens, checked against the context window."""
    segments = prompt_segments(params)
    total = prompt_tokens(params, segments)
    _check_context(total, params.max_tokens, model)
    return segments, total


def _brain_request(params: MessagesParams, model: SimModel) -> BrainRequest:
    return BrainRequest(
        model=params.model,
        capability=model.capability,
        system=system_text(params.system),
        messages=[m.model_dump(include={"role", "content"}) for m in params.messages],
        tools=[t.model_dump(exclude_none=True) for t in params.tools or []],
        tool_choice=params.tool_choice,
        output_schema=output_schema(params),
    )


def _note_reply(record: RequestRecord, reply: BrainReply) -> None:
    record.kind, record.task_hash, record.difficulty = reply.kind, reply.task_hash, reply.difficulty
    record.notes = dict(reply.notes)
    if reply.kind in ("task", "tool_turn") and reply.stop_reason != "tool_use":
        record.flawed = reply.flaw is not None
    if reply.flaw is not None:
        record.flaw, record.flaw_detail = reply.flaw.kind, reply.flaw.detail
        record.subtle = reply.flaw.subtle


def _cap(reply: BrainReply, max_tokens: int) -> tuple[list[dict[str, Any]], str, int]:
    """Cut the answer at ``max_tokens`` (text truncated, tool calls dropped)."""
    used = sum(block_tokens(block) for block in reply.content)
    if used <= max_tokens:
        return reply.content, reply.stop_reason, used
    budget = max_tokens * 4
    content: list[dict[str, Any]] = []
    for block in reply.content:
        if block.get("type") != "text" or budget <= 0:
            continue
        text = str(block["text"])[:budget]
        budget -= len(text)
        content.append({**block, "text": text})
    return content, "max_tokens", max_tokens
