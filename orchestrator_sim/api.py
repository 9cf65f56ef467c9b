"""Request validation for the Messages API, with the real API's error types and wording.

Parsing is strict JSON-mode pydantic (so ``"max_tokens": "5"`` is rejected as the real API
does) followed by the semantic checks the real API makes: roles alternate, every
``tool_use`` is answered by a ``tool_result`` in the next turn, at most four
``cache_control`` breakpoints (``ttl`` ``"5m"`` or ``"1h"``, no 1-hour one after a
5-minute one), known ``tool_choice`` types, ``max_tokens`` within the model's limit.
Errors are :class:`ApiError` and become the standard error body
``{"type": "error", "error": {"type": ..., "message": ...}, "request_id": ...}``.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestrator_sim.config import SimModel

__all__ = [
    "ApiError",
    "CountTokensParams",
    "MessageParam",
    "MessagesParams",
    "ToolParam",
    "check_headers",
    "error_body",
    "output_schema",
    "parse_body",
    "parse_count_tokens",
    "parse_messages",
]

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
_TOOL_CHOICES = {"auto", "any", "tool", "none"}
_MAX_BREAKPOINTS = 4
_TTLS = {"5m", "1h"}
_TYPE_LABEL = re.compile(r"^(str|int|float|bool|dict|list)(\[.*\])?$")
_P = TypeVar("_P", bound=BaseModel)


class ApiError(Exception):
    """An error answered as the real API answers it.

    Args:
        status: HTTP status code.
        message: The ``error.message`` text.
        error_type: The ``error.type``; default: the standard type for ``status``.
        headers: Extra response headers (e.g. ``retry-after``).
    """

    def __init__(
        self,
        status: int,
        message: str,
        error_type: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type or ERROR_TYPES.get(status, "api_error")
        self.headers = list(headers)


def error_body(error: ApiError, request_id: str) -> bytes:
    """Return the JSON body of an error response."""
    document = {
        "type": "error",
        "error": {"type": error.error_type, "message": error.message},
        "request_id": request_id,
    }
    return json.dumps(document).encode("utf-8")


class _Open(BaseModel):
    """Known fields are checked; unknown ones are kept (the API evolves faster than this)."""

    model_config = ConfigDict(extra="allow", strict=True)


class MessageParam(_Open):
    """One conversation turn."""

    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]]


class ToolParam(_Open):
    """A tool definition (client tools have ``name``, ``description``, ``input_schema``)."""

    name: str
    description: str | None = None
    input_schema: dict[str, Any] | None = None
    type: str | None = None
    cache_control: dict[str, Any] | None = None


class CountTokensParams(_Open):
    """Body of ``POST /v1/messages/count_tokens``."""

    model: str
    messages: list[MessageParam]
    system: str | list[dict[str, Any]] | None = None
    tools: list[ToolParam] | None = None
    tool_choice: dict[str, Any] | None = None
    output_config: dict[str, Any] | None = None
    cache_control: dict[str, Any] | None = None


class MessagesParams(CountTokensParams):
    """Body of ``POST /v1/messages``."""

    max_tokens: Annotated[int, Field(ge=1)]
    stream: bool = False


def check_headers(headers: Mapping[str, str]) -> None:
    """Require an API key and ``anthropic-version``, as the real API does."""
    if not headers.get("x-api-key") and not headers.get("authorization"):
        raise ApiError(401, "x-api-key header is required")
    if not headers.get("anthropic-version"):
        raise ApiError(400, "anthropic-version: header is required")


def parse_messages(body: bytes, models: Mapping[str, SimModel]) -> tuple[MessagesParams, SimModel]:
    """Parse and check a Messages request; return it with its model's settings."""
    params = _parse(MessagesParams, body)
    model = _model(params.model, models)
    _check_common(params, model, params.model)
    if params.max_tokens > model.max_output_tokens:
        raise ApiError(
            400,
            f"max_tokens: {params.max_tokens} > {model.max_output_tokens}, which is the maximum "
            f"allowed number of output tokens for {params.model}",
        )
    return params, model


def parse_count_tokens(
    body: bytes, models: Mapping[str, SimModel]
) -> tuple[CountTokensParams, SimModel]:
    """Parse and check a count-tokens request."""
    params = _parse(CountTokensParams, body)
    model = _model(params.model, models)
    _check_common(params, model, params.model)
    return params, model


def output_schema(params: CountTokensParams) -> dict[str, Any] | None:
    """Return the structured-output JSON schema of a request, if it asks for one."""
    fmt = (params.output_config or {}).get("format")
    schema = fmt.get("schema") if isinstance(fmt, dict) else None
    return schema if isinstance(schema, dict) else None


def parse_body(model: type[_P], body: bytes) -> _P:
    """Parse a JSON body into ``model``; a mismatch is a 400 naming the field."""
    return _parse(model, body)


def _parse(model: type[_P], body: bytes) -> _P:
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise ApiError(400, _describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    if error["type"] == "json_invalid":
        return "There was an issue with your request body: it is not valid JSON"
    parts = [str(p) for p in error["loc"] if not _TYPE_LABEL.match(str(p))]
    where = ".".join(parts) or "body"
    return f"{where}: {error['msg']}"


def _model(name: str, models: Mapping[str, SimModel]) -> SimModel:
    model = models.get(name)
    if model is None:
        raise ApiError(404, f"model: {name}")
    return model


def _check_common(params: CountTokensParams, model: SimModel, name: str) -> None:
    if isinstance(params.system, list):
        for index, block in enumerate(params.system):
            _check_block(f"system.{index}", block)
    _check_messages(params.messages)
    _check_tool_pairing(params.messages)
    _check_tools(params.tools or [])
    _check_tool_choice(params.tool_choice, params.tools or [], model, name)
    _check_output_config(params.output_config)
    _check_breakpoints(params)


def _check_messages(messages: Sequence[MessageParam]) -> None:
    if not messages:
        raise ApiError(400, "messages: at least one message is required")
    if messages[0].role != "user":
        raise ApiError(400, 'messages: first message must use the "user" role')
    for index, (before, after) in enumerate(itertools.pairwise(messages)):
        if before.role == after.role:
            raise ApiError(
                400,
                f'messages.{index + 1}: roles must alternate between "user" and "assistant", '
                f'but found multiple "{after.role}" roles in a row',
            )
    for index, message in enumerate(messages):
        _check_content(index, message, last=index == len(messages) - 1)


def _check_content(index: int, message: MessageParam, *, last: bool) -> None:
    content = message.content
    final_assistant = last and message.role == "assistant"
    if not content and not final_assistant:
        raise ApiError(
            400,
            f"messages.{index}: all messages must have non-empty content except for the "
            "optional final assistant message",
        )
    blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
    for position, block in enumerate(blocks):
        _check_block(f"messages.{index}.content.{position}", block)
    if final_assistant and blocks and blocks[-1].get("type") == "text":
        text = blocks[-1].get("text", "")
        if isinstance(text, str) and text != text.rstrip():
            raise ApiError(
                400, "messages: final assistant content cannot end with trailing whitespace"
            )


def _check_block(where: str, block: Mapping[str, Any]) -> None:
    kind = block.get("type")
    if not isinstance(kind, str):
        raise ApiError(400, f"{where}.type: Field required")
    if kind == "text":
        text = block.get("text")
        if not isinstance(text, str):
            raise ApiError(400, f"{where}.text: Field required")
        if not text:
            raise ApiError(400, "messages: text content blocks must be non-empty")
    elif kind == "tool_use":
        for key in ("id", "name", "input"):
            if key not in block:
                raise ApiError(400, f"{where}.tool_use.{key}: Field required")
    elif kind == "tool_result" and not isinstance(block.get("tool_use_id"), str):
        raise ApiError(400, f"{where}.tool_result.tool_use_id: Field required")


def _blocks(message: MessageParam) -> list[dict[str, Any]]:
    return [] if isinstance(message.content, str) else message.content


def _check_tool_pairing(messages: Sequence[MessageParam]) -> None:
    for index, message in enumerate(messages):
        if message.role != "user":
            continue
        asked = set()
        if index > 0:
            asked = {b.get("id") for b in _blocks(messages[index - 1]) if b["type"] == "tool_use"}
        answered = {b.get("tool_use_id") for b in _blocks(message) if b["type"] == "tool_result"}
        unexpected = sorted(str(i) for i in answered - asked)
        if unexpected:
            raise ApiError(
                400,
                f"messages.{index}.content: unexpected `tool_use_id` found in `tool_result` "
                f"blocks: {', '.join(unexpected)}. Each `tool_result` block must have a "
                "corresponding `tool_use` block in the previous message.",
            )
        missing = sorted(str(i) for i in asked - answered)
        if missing:
            raise ApiError(
                400,
                f"messages.{index - 1}: `tool_use` ids were found without `tool_result` blocks "
                f"immediately after: {', '.join(missing)}. Each `tool_use` block must have a "
                "corresponding `tool_result` block in the next message.",
            )


def _check_tools(tools: Sequence[ToolParam]) -> None:
    names = [tool.name for tool in tools]
    if len(set(names)) != len(names):
        raise ApiError(400, "tools: Tool names must be unique.")
    for index, tool in enumerate(tools):
        if tool.type not in (None, "custom"):
            continue  # server tools (web search...) are accepted but never called here
        if not _TOOL_NAME.match(tool.name):
            raise ApiError(
                400,
                f"tools.{index}.custom.name: String should match pattern '{_TOOL_NAME.pattern}'",
            )
        if tool.input_schema is None:
            raise ApiError(400, f"tools.{index}.custom.input_schema: Field required")


def _check_tool_choice(
    choice: Mapping[str, Any] | None, tools: Sequence[ToolParam], model: SimModel, name: str
) -> None:
    if choice is None:
        return
    kind = choice.get("type")
    if kind not in _TOOL_CHOICES:
        raise ApiError(
            400, "tool_choice.type: Input tag does not match the expected tags: 'auto', 'any', "
            "'tool', 'none'"
        )  # fmt: skip
    if kind in {"any", "tool"} and not tools:
        raise ApiError(400, "tool_choice: tool_choice may only be specified while providing tools.")
    if kind == "tool" and choice.get("name") not in {tool.name for tool in tools}:
        raise ApiError(400, f"tool_choice.name: Tool '{choice.get('name')}' not found in tools.")
    if kind in {"any", "tool"} and model.rejects_forced_tool_choice:
        raise ApiError(
            400,
            f'tool_choice: forced tool use (tool_choice type "{kind}") is not supported by '
            f'{name}; use tool_choice "auto" or "none", or structured output '
            "(output_config.format), instead.",
        )


def _check_output_config(config: Mapping[str, Any] | None) -> None:
    if not config or config.get("format") is None:
        return
    fmt = config["format"]
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        raise ApiError(
            400,
            "output_config.format.type: Input tag does not match the expected tag: 'json_schema'",
        )
    if not isinstance(fmt.get("schema"), dict):
        raise ApiError(400, "output_config.format.schema: Field required")


def _check_breakpoints(params: CountTokensParams) -> None:
    marks = _breakpoints(params)
    found = sum(1 for where, _ in marks if where != "cache_control")  # not the top level
    if found > _MAX_BREAKPOINTS:
        raise ApiError(
            400,
            f"A maximum of {_MAX_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {found}.",
        )
    short = False  # a 5-minute breakpoint came before
    for where, control in marks:
        ttl = control.get("ttl", "5m")
        if ttl not in _TTLS:
            raise ApiError(400, f"{where}.ttl: Input should be '5m' or '1h'")
        if ttl == "1h" and short:
            raise ApiError(
                400,
                f"{where}.ttl: a ttl='1h' cache_control block must not come after a "
                "ttl='5m' cache_control block. Note that blocks are processed in the "
                "following order: `tools`, `system`, `messages`.",
            )
        short = short or ttl == "5m"


def _breakpoints(params: CountTokensParams) -> list[tuple[str, dict[str, Any]]]:
    """Every ``cache_control`` (where it is, what it says) in the order the API reads them."""
    marks = [
        (f"tools.{index}.cache_control", tool.cache_control)
        for index, tool in enumerate(params.tools or [])
        if tool.cache_control
    ]
    if isinstance(params.system, list):
        marks += [
            (f"system.{index}.cache_control", block["cache_control"])
            for index, block in enumerate(params.system)
            if block.get("cache_control")
        ]
    for number, message in enumerate(params.messages):
        marks += [
            (f"messages.{number}.content.{index}.cache_control", block["cache_control"])
            for index, block in enumerate(_blocks(message))
            if block.get("cache_control")
        ]
    if params.cache_control:  # marks the last block: read last
        marks.append(("cache_control", params.cache_control))
    return [(where, control) for where, control in marks if isinstance(control, dict)]
