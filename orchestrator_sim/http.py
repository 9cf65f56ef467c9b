"""A small HTTP/1.1 server: h11 over an anyio TCP listener, with keep-alive.

Written by hand (rather than on a web framework) so that every byte is under control:
a handler may answer in full, stream a chunked body (server-sent events), or drop the
connection without answering, and a slow answer is just a sleep in the handler. Nothing
here blocks the event loop; one task serves one connection, requests on it in order.
"""

from __future__ import annotations

import contextlib
import http
import json
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import anyio
import h11
from anyio.abc import ByteStream, Listener, SocketAttribute, SocketStream, TaskStatus

__all__ = [
    "BodyLimit",
    "Handler",
    "HttpRequest",
    "HttpResponse",
    "bound_port",
    "listen",
    "serve_listener",
]

_READ_SIZE = 64 * 1024
_IDLE_TIMEOUT_S = 120.0
_LINGER_S = 30.0
"""After an error answer, how long the rest of the request is read and dropped."""
_LINGER_BYTES = 1 << 30
"""...and at most how much of it."""
_REASONS = {529: b"Overloaded"}
_GONE = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream)


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One request, body read in full.

    Attributes:
        method: ``GET``, ``POST``...
        path: Request path without the query string.
        query: Query string (without ``?``), possibly empty.
        headers: Header values by lower-cased name (last one wins).
        body: Raw body.
    """

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass(slots=True)
class HttpResponse:
    """What a handler answers.

    Attributes:
        status: HTTP status code.
        headers: Response headers (``content-length`` is added for full bodies).
        body: Full body, when ``stream`` is ``None``.
        stream: Chunks of a body sent with chunked transfer encoding.
        drop: Close the connection without sending anything (a simulated fault).
    """

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    stream: AsyncGenerator[bytes, None] | None = None
    drop: bool = False


Handler = Callable[[HttpRequest], Awaitable[HttpResponse]]
BodyLimit = int | Callable[[str], int]
"""Largest request body: one number, or one per request path."""


class _BodyTooLarge(Exception):
    """The request body exceeds the configured limit (declared, or as it arrives)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"Request exceeds the maximum allowed number of bytes ({limit}).")


async def listen(host: str, port: int) -> Listener[SocketStream]:
    """Open a TCP listener on ``host``:``port`` (``0`` picks a free port)."""
    return await anyio.create_tcp_listener(local_host=host, local_port=port)


def bound_port(listener: Listener[SocketStream]) -> int:
    """Return the port a listener is bound to."""
    return int(listener.extra(SocketAttribute.local_port))  # noqa: S610  (anyio, not Django)


async def serve_listener(
    listener: Listener[SocketStream],
    handler: Handler,
    *,
    max_body_bytes: BodyLimit,
    error_headers: Sequence[tuple[str, str]] = (),
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Accept connections on ``listener`` and serve each with ``handler`` until cancelled.

    A request the server cannot hand to ``handler`` gets its error here: a body over
    ``max_body_bytes`` (a number, or a function of the request path) a 413
    ``request_too_large`` (as soon as its ``content-length``
    says so), malformed HTTP a 400, each with ``error_headers``. The rest of such a
    request is then read and dropped before the connection closes, so that the client,
    still sending, reads the answer instead of a reset connection.
    """

    async def serve_one(stream: ByteStream) -> None:
        await _serve_connection(stream, handler, max_body_bytes, error_headers)

    async with listener:
        task_status.started()
        await listener.serve(serve_one)


async def _serve_connection(
    stream: ByteStream,
    handler: Handler,
    max_body_bytes: BodyLimit,
    error_headers: Sequence[tuple[str, str]],
) -> None:
    conn = h11.Connection(h11.SERVER)
    async with stream:
        with contextlib.suppress(*_GONE):
            while True:
                try:
                    request = await _read_request(conn, stream, max_body_bytes)
                except (h11.RemoteProtocolError, _BodyTooLarge) as exc:
                    await _send_plain_error(conn, stream, exc, error_headers)
                    await _linger(stream)
                    return
                if request is None:
                    return
                response = await handler(request)
                if response.drop:
                    return
                await _send_response(conn, stream, response)
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()


async def _read_request(
    conn: h11.Connection, stream: ByteStream, max_body_bytes: BodyLimit
) -> HttpRequest | None:
    head: h11.Request | None = None
    body = bytearray()
    limit = 0
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            await _receive_into(conn, stream, idle=head is None)
        elif isinstance(event, h11.Request):
            head = event
            limit = _limit(max_body_bytes, event)
            if _declared_length(event) > limit:
                raise _BodyTooLarge(limit)  # before a byte of the body is read
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > limit:
                raise _BodyTooLarge(limit)
        elif isinstance(event, h11.EndOfMessage) and head is not None:
            return _request_from(head, bytes(body))
        else:  # ConnectionClosed (or PAUSED): nothing more to serve
            return None


def _limit(max_body_bytes: BodyLimit, head: h11.Request) -> int:
    if isinstance(max_body_bytes, int):
        return max_body_bytes
    return max_body_bytes(head.target.decode("latin-1").partition("?")[0])


def _declared_length(head: h11.Request) -> int:
    for name, value in head.headers:
        if name == b"content-length":
            return int(value)  # h11 has checked it is a number
    return 0


async def _receive_into(conn: h11.Connection, stream: ByteStream, *, idle: bool) -> None:
    data = b""
    with anyio.move_on_after(_IDLE_TIMEOUT_S if idle else None):
        with contextlib.suppress(*_GONE):
            data = await stream.receive(_READ_SIZE)
    conn.receive_data(data)


def _request_from(head: h11.Request, body: bytes) -> HttpRequest:
    target = head.target.decode("latin-1")
    path, _, query = target.partition("?")
    headers = {
        name.decode("latin-1").lower(): value.decode("latin-1") for name, value in head.headers
    }
    return HttpRequest(head.method.decode("ascii"), path, query, headers, body)


def _reason(status: int) -> bytes:
    if status in _REASONS:
        return _REASONS[status]
    try:
        return http.HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""


async def _send_response(conn: h11.Connection, stream: ByteStream, response: HttpResponse) -> None:
    headers = [
        (name.encode("latin-1"), value.encode("latin-1")) for name, value in response.headers
    ]
    if response.stream is None:
        headers.append((b"content-length", str(len(response.body)).encode("ascii")))
    head = h11.Response(
        status_code=response.status, headers=headers, reason=_reason(response.status)
    )
    await stream.send(conn.send(head) or b"")
    if response.stream is None:
        if response.body:
            await stream.send(conn.send(h11.Data(data=response.body)) or b"")
    else:
        async with contextlib.aclosing(response.stream) as chunks:
            async for chunk in chunks:
                await stream.send(conn.send(h11.Data(data=chunk)) or b"")
    await stream.send(conn.send(h11.EndOfMessage()) or b"")


async def _send_plain_error(
    conn: h11.Connection,
    stream: ByteStream,
    exc: Exception,
    headers: Sequence[tuple[str, str]],
) -> None:
    if conn.our_state not in {h11.IDLE, h11.SEND_RESPONSE}:
        return
    if isinstance(exc, _BodyTooLarge):
        status, kind, message = 413, "request_too_large", str(exc)
    else:
        status, kind, message = 400, "invalid_request_error", f"Malformed HTTP request: {exc}"
    document = {"type": "error", "error": {"type": kind, "message": message}}
    response = HttpResponse(
        status,
        [("content-type", "application/json"), ("connection", "close"), *headers],
        json.dumps(document).encode(),
    )
    with contextlib.suppress(h11.LocalProtocolError):
        await _send_response(conn, stream, response)


async def _linger(stream: ByteStream) -> None:
    """Read and drop what the client still sends, until it closes (bounded), then close.

    Closing a socket with unread data makes the kernel reset the connection, and a reset
    can destroy the answer before the client reads it: the client would see a dropped
    connection (and retry, uploading the body again) instead of the error.
    """
    with contextlib.suppress(*_GONE, OSError):
        await stream.send_eof()  # the answer is complete: the client may read it now
    dropped = 0
    with anyio.move_on_after(_LINGER_S), contextlib.suppress(*_GONE, OSError):
        while dropped < _LINGER_BYTES:
            dropped += len(await stream.receive(_READ_SIZE))
