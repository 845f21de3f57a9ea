"""Small ASGI helpers: headers in, bodies in, JSON and SSE out."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import orjson

from wardgate.errors import PayloadTooLarge

__all__ = [
    "Headers",
    "Receive",
    "Scope",
    "Send",
    "Watch",
    "header_map",
    "read_body",
    "send_bytes",
    "send_empty",
    "send_json",
    "sse_start",
    "watch_disconnect",
]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Headers = Iterable[tuple[bytes, bytes]]

_JSON = (b"content-type", b"application/json")
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),
]


def header_map(scope: Scope) -> dict[str, str]:
    """Request headers by lower-case name; repeated headers are joined with ', '."""
    out: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1").strip(" \t")  # RFC 9110: OWS is not part of it
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out


async def read_body(receive: Receive, limit: int, declared: str | None) -> bytes:
    """Read the whole request body, refusing more than ``limit`` bytes.

    Raises:
        PayloadTooLarge: the body (declared or actual) exceeds ``limit``.
    """
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"declared body of {declared} bytes exceeds {limit}")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise asyncio.CancelledError("client went away")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body exceeds {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks) if len(chunks) != 1 else chunks[0]


async def send_json(send: Send, status: int, body: Any, headers: Headers = ()) -> None:
    payload = orjson.dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [_JSON, (b"content-length", str(len(payload)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": payload})


async def send_bytes(
    send: Send, status: int, payload: bytes, content_type: bytes, headers: Headers = ()
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


async def send_empty(send: Send, status: int, headers: Headers = ()) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-length", b"0"), *headers],
        }
    )
    await send({"type": "http.response.body", "body": b""})


async def sse_start(send: Send, headers: Headers = ()) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [*_SSE_HEADERS, *headers]})


#: Calls quicker than this never pay for a watcher task.
_WATCH_AFTER = 0.05


class Watch:
    """What :func:`watch_disconnect` saw: ``gone`` once the client disconnected."""

    __slots__ = ("gone",)

    def __init__(self) -> None:
        self.gone = False


@contextlib.asynccontextmanager
async def watch_disconnect(receive: Receive) -> AsyncIterator[Watch]:
    """Cancel the current task when the client disconnects (after the body was read).

    The watcher starts only once the call has run for ``_WATCH_AFTER`` seconds: fast
    calls cost one timer, slow ones are still cancelled when the client leaves. The
    cancellation ends at this context manager; ``Watch.gone`` tells the caller why.
    """
    current = asyncio.current_task()
    assert current is not None
    loop = asyncio.get_running_loop()
    state = Watch()
    watcher: asyncio.Task[None] | None = None

    async def watch() -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                state.gone = True
                current.cancel()
                return

    def start() -> None:
        nonlocal watcher
        watcher = loop.create_task(watch())

    timer = loop.call_later(_WATCH_AFTER, start)
    try:
        yield state
    except asyncio.CancelledError:
        if not state.gone:
            raise
        current.uncancel()
    finally:
        timer.cancel()
        if watcher is not None:
            watcher.cancel()
