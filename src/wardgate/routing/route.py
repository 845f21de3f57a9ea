"""A route: one MCP endpoint in front of one upstream, relayed transparently.

The route is where a client message meets the guards and the upstream; it knows
nothing of HTTP or stdio framing (that is the edge's job) and hands back a
:class:`~wardgate.upstream.seam.Reply` whose events have passed the response guards.
Several upstreams behind one endpoint are :class:`~wardgate.routing.federated.FederatedRoute`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass

from wardgate.core.pipeline import CallContext, Pipeline
from wardgate.errors import UpstreamError, WardgateError
from wardgate.routing.sessions import GatewaySession, SessionStore
from wardgate.upstream.seam import Event, Reply, Upstream, UpstreamSession
from wardgate.wire.jsonrpc import JsonObject, Message, MessageKind, wardgate_error_response
from wardgate.wire.mcp import (
    H_PROTOCOL_VERSION,
)

__all__ = ["Member", "Route"]

log = logging.getLogger("wardgate.routing.route")


@dataclass(frozen=True, slots=True)
class Member:
    """An upstream as a route sees it: its name prefix (federated routes only)."""

    prefix: str
    upstream: Upstream


def _result(message: JsonObject | None) -> JsonObject | None:
    if message is None:
        return None
    result = message.get("result")
    return result if isinstance(result, dict) else None


async def _final(reply: Reply) -> JsonObject:
    """Drain a reply and return its final response message.

    Raises:
        UpstreamError: the stream ended without a response.
    """
    final: JsonObject | None = None
    try:
        async for event in reply.events:
            if event.is_response:
                final = event.message
    finally:
        await reply.aclose()
    if final is None:
        raise UpstreamError("upstream closed the stream without a response")
    return final


async def _replay(events: Sequence[Event]) -> AsyncIterator[Event]:
    for event in events:
        yield event


class Route:
    """A transparent route: everything goes to its one upstream, unchanged."""

    def __init__(
        self,
        name: str,
        members: Sequence[Member],
        pipeline: Pipeline,
        sessions: SessionStore,
        *,
        separator: str = "__",
    ) -> None:
        if not members:
            raise ValueError("a route needs at least one upstream")
        self.name = name
        self.members = tuple(members)
        self.pipeline = pipeline
        self.sessions = sessions
        self.separator = separator

    # -- helpers ---------------------------------------------------------------

    def _session(self, session: GatewaySession | None, index: int) -> UpstreamSession:
        if session is None:
            return self.members[index].upstream.shared_session()
        up = session.upstreams.get(index)
        if up is None:
            raise UpstreamError(f"upstream {self.members[index].prefix} is not in this session")
        return up

    def _headers(
        self, headers: Mapping[str, str], session: GatewaySession | None, index: int
    ) -> dict[str, str]:
        out = dict(headers)
        if session is not None and index in session.versions:
            out[H_PROTOCOL_VERSION] = session.versions[index]
        return out

    def _guarded(
        self,
        ctx: CallContext,
        request: Message | None,
        reply: Reply,
        retag: Callable[[Event], Event] | None = None,
    ) -> Reply:
        return Reply(
            self._guard_events(ctx, request, reply, retag),
            status=reply.status,
            streaming=reply.streaming,
            headers=reply.headers,
        )

    async def _guard_events(
        self,
        ctx: CallContext,
        request: Message | None,
        reply: Reply,
        retag: Callable[[Event], Event] | None,
    ) -> AsyncIterator[Event]:
        request_id = request.id if request is not None else None
        try:
            async for event in reply.events:
                if retag is not None:
                    event = retag(event)
                raw = event.message
                if raw is None or not self.pipeline.has_response_guards:
                    yield event
                    continue
                kind: MessageKind = (
                    "response"
                    if "method" not in raw
                    else ("request" if "id" in raw else "notification")
                )
                message = Message(raw, kind)
                try:
                    message = await self.pipeline.check_response(ctx, request, message)
                except WardgateError as exc:
                    if kind == "response":
                        yield Event(wardgate_error_response(request_id, exc, ctx.decision_id))
                        return
                    continue  # a denied notification or server request is dropped
                yield Event(message.raw, event.event_id, event.retry_ms)
        except WardgateError as exc:
            log.warning(
                "upstream failed mid-stream: %s",
                exc.detail,
                extra={"decision_id": ctx.decision_id, "route": self.name},
            )
            if request is not None and request.kind == "request":
                yield Event(wardgate_error_response(request_id, exc, ctx.decision_id))
        finally:
            await reply.aclose()

    # -- handshake -------------------------------------------------------------

    async def initialize(
        self, ctx: CallContext, message: Message, headers: Mapping[str, str]
    ) -> tuple[GatewaySession | None, Reply]:
        """Open a client session with the upstream, relaying its answer unchanged.

        Raises:
            WardgateError: a guard denied the handshake, or the upstream failed.
        """
        message = await self.pipeline.check_request(ctx, message)
        up_session, events, final = await self._open_one(0, message, headers)
        result = _result(final)
        if result is None:
            await up_session.close()
            return None, self._guarded(ctx, message, Reply(_replay(events)))
        version = str(result.get("protocolVersion", ""))
        session = self._new_session(ctx, {0: up_session}, {0: version}, version)
        await self.sessions.add(session)
        reply = Reply(_replay(events), streaming=any(e.event_id for e in events))
        return session, self._guarded(ctx, message, reply)

    async def _open_one(
        self, index: int, message: Message, headers: Mapping[str, str]
    ) -> tuple[UpstreamSession, list[Event], JsonObject]:
        up_session = await self.members[index].upstream.open_session()
        try:
            reply = await up_session.request(message.raw, headers)
            events = [event async for event in reply.events]
        except BaseException:
            await up_session.close()
            raise
        final = next((e.message for e in reversed(events) if e.is_response), None)
        if final is None:
            await up_session.close()
            raise UpstreamError("upstream closed the stream without answering initialize")
        return up_session, events, final

    def _new_session(
        self,
        ctx: CallContext,
        upstreams: dict[int, UpstreamSession],
        versions: dict[int, str],
        version: str,
    ) -> GatewaySession:
        return GatewaySession(
            id=self.sessions.new_id(),
            route=self.name,
            upstreams=upstreams,
            versions=versions,
            protocol_version=version,
            owner=ctx.principal.binding_key,
        )

    async def end_session(self, session: GatewaySession) -> None:
        self.sessions.pop(session.id)
        await session.close()

    # -- requests --------------------------------------------------------------

    async def request(
        self,
        ctx: CallContext,
        message: Message,
        session: GatewaySession | None,
        headers: Mapping[str, str],
    ) -> Reply:
        """Send a client request through the guards to its upstream.

        Raises:
            WardgateError: a guard denied the request, or it cannot be routed.
        """
        message = await self.pipeline.check_request(ctx, message)
        return await self._dispatch(ctx, message, session, headers)

    async def _dispatch(
        self,
        ctx: CallContext,
        message: Message,
        session: GatewaySession | None,
        headers: Mapping[str, str],
    ) -> Reply:
        """The terminal step for a request that passed the guards."""
        reply = await self._session(session, 0).request(
            message.raw, self._headers(headers, session, 0)
        )
        if not reply.streaming and not self.pipeline.responds_to(message.method):
            return reply  # one JSON message, read whole, that no guard wants to see
        return self._guarded(ctx, message, reply)

    async def post(
        self,
        ctx: CallContext,
        message: Message,
        session: GatewaySession | None,
        headers: Mapping[str, str],
    ) -> int:
        """Deliver a client notification or response; returns the status (202).

        Raises:
            WardgateError: a guard denied it.
        """
        message = await self.pipeline.check_request(ctx, message)
        return await self._deliver(ctx, message, session, headers)

    async def _deliver(
        self,
        ctx: CallContext,
        message: Message,
        session: GatewaySession | None,
        headers: Mapping[str, str],
    ) -> int:
        """The terminal step for a notification or response that passed the guards."""
        return await self._session(session, 0).post(message.raw, self._headers(headers, session, 0))

    async def listen(
        self, ctx: CallContext, session: GatewaySession, headers: Mapping[str, str]
    ) -> Reply | None:
        """Open the standalone server-to-client stream of a session.

        Raises:
            WardgateError: the upstream refused or failed.
        """
        reply = await self._session(session, 0).listen(self._headers(headers, session, 0))
        return None if reply is None else self._guarded(ctx, None, reply)
