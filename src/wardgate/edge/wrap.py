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
import time

import orjson

from wardgate.core.call import LISTEN_MESSAGE, Call
from wardgate.core.context import CallContext, new_decision_id
from wardgate.edge.answers import error_answer
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
        ctx = CallContext(
            self.route.name, new_decision_id(), transport="stdio", received_at=time.time()
        )
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
        call: Call | None = None
        try:
            initialize = message.kind == "request" and message.method == "initialize"
            if self._session is not None and not initialize:
                ctx = dataclasses.replace(ctx, session_id=self._session.id)
            session = None if initialize else self._session
            call = self.route.open(ctx, message)
            await self.route.admit(call, session, self._headers())
            if initialize:
                if self._session is not None:
                    await self.route.end_session(self._session, "reinitialized")
                    self._session = None
                self._session, reply = await self.route.initialize(call, {})
                await self._pump(reply)
                if self._session is not None:
                    self._spawn(self._listen(ctx, self._session))
                return
            if message.kind == "request":
                await self._pump(await self.route.request(call, self._session, self._headers()))
            else:
                await self.route.post(call, self._session, self._headers())
        except WardgateError as exc:
            if call is not None:
                call.failed(exc)
            log.info(
                "refused: %s", exc.detail, extra={"decision_id": ctx.decision_id, "code": exc.code}
            )
            if message.kind == "request":
                await self.emit(error_answer(exc, message, ctx.decision_id)[1])
        except asyncio.CancelledError:
            if call is not None:
                call.cancelled(client_gone=False)
            raise
        except Exception:
            log.exception("stdio handler failed", extra={"decision_id": ctx.decision_id})
            if message.kind == "request":
                await self.emit(
                    wardgate_error_response(message.id, WardgateError(), ctx.decision_id)
                )
        finally:
            if call is not None:
                await call.end()

    async def _listen(self, ctx: CallContext, session: GatewaySession) -> None:
        """The server's own messages (not tied to a request): a call of their own."""
        ctx = dataclasses.replace(ctx, session_id=session.id)
        call: Call | None = None
        try:
            call = self.route.open(ctx, LISTEN_MESSAGE)
            await self.route.admit(call, session, self._headers())
            listener = await self.route.listen(call, session, self._headers())
            if listener is not None:
                await self._pump(listener)
        except WardgateError as exc:
            if call is not None:
                call.failed(exc)
            log.info(
                "server stream refused: %s", exc.detail, extra={"decision_id": ctx.decision_id}
            )
        finally:
            if call is not None:
                await call.end()

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self.route.end_session(self._session, "client-gone")


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
