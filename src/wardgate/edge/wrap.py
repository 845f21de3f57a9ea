"""``wardgate wrap``: the gateway as a stdio server in front of a stdio upstream.

Desktop hosts launch MCP servers as subprocesses; pointing them at ``wardgate wrap --
CMD`` puts the same guards on that path. One client, one implicit session.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import sys

import orjson

from wardgate.core.pipeline import CallContext
from wardgate.errors import WardgateError
from wardgate.routing.route import Route
from wardgate.routing.sessions import GatewaySession
from wardgate.upstream.seam import Reply
from wardgate.wire.jsonrpc import Message, parse_message, wardgate_error_response
from wardgate.wire.mcp import H_PROTOCOL_VERSION

__all__ = ["StdioFront", "serve_stdio"]

log = logging.getLogger("wardgate.edge.wrap")


class StdioFront:
    def __init__(self, route: Route, writer: asyncio.StreamWriter) -> None:
        self.route = route
        self._writer = writer
        self._write_lock = asyncio.Lock()
        self._session: GatewaySession | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def emit(self, message: object) -> None:
        data = orjson.dumps(message) + b"\n"
        async with self._write_lock:
            self._writer.write(data)
            await self._writer.drain()

    async def _pump(self, reply: Reply) -> None:
        try:
            async for event in reply.events:
                if event.message is not None:
                    await self.emit(event.message)
        finally:
            await reply.aclose()

    def _headers(self) -> dict[str, str]:
        return {} if self._session is None else {H_PROTOCOL_VERSION: self._session.protocol_version}

    def _spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[call-overload]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def handle_line(self, line: bytes) -> None:
        ctx = CallContext(route=self.route.name, transport="stdio")
        try:
            message = parse_message(line)
        except WardgateError as exc:
            await self.emit(wardgate_error_response(None, exc, ctx.decision_id))
            return
        if message.kind == "request" and message.method == "initialize":
            # The handshake completes before anything else is read (spec lifecycle).
            await self._handle(ctx, message)
        else:
            self._spawn(self._handle(ctx, message))

    async def _handle(self, ctx: CallContext, message: Message) -> None:
        try:
            if message.kind == "request" and message.method == "initialize":
                if self._session is not None:
                    await self.route.end_session(self._session)
                self._session, reply = await self.route.initialize(ctx, message, {})
                await self._pump(reply)
                if self._session is not None:
                    listener = await self.route.listen(ctx, self._session, self._headers())
                    if listener is not None:
                        self._spawn(self._pump(listener))
                return
            if self._session is not None:
                ctx = dataclasses.replace(ctx, session_id=self._session.id)
            if message.kind == "request":
                await self._pump(
                    await self.route.request(ctx, message, self._session, self._headers())
                )
            else:
                await self.route.post(ctx, message, self._session, self._headers())
        except WardgateError as exc:
            log.info(
                "refused: %s", exc.detail, extra={"decision_id": ctx.decision_id, "code": exc.code}
            )
            if message.kind == "request":
                await self.emit(wardgate_error_response(message.id, exc, ctx.decision_id))
        except Exception:
            log.exception("stdio handler failed", extra={"decision_id": ctx.decision_id})
            if message.kind == "request":
                await self.emit(
                    wardgate_error_response(message.id, WardgateError(), ctx.decision_id)
                )

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self.route.end_session(self._session)


async def serve_stdio(route: Route) -> None:
    """Serve MCP on this process's stdin/stdout until stdin closes."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, sys.stdout
    )
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    front = StdioFront(route, writer)
    try:
        while line := await reader.readline():
            if line.strip():
                await front.handle_line(line)
    finally:
        with contextlib.suppress(Exception):
            await front.aclose()
