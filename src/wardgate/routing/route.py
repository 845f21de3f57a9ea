"""A route: one MCP endpoint in front of one upstream, relayed transparently.

The route is where a client call meets the guards and the upstream; it knows nothing
of HTTP or stdio framing (that is the edge's job). :meth:`Route.begin` resolves which
upstream serves a message and what it names, then runs the request phase; the other
methods are the terminal step for a :class:`~wardgate.core.call.Call` that passed, and
hand back a :class:`~wardgate.upstream.seam.Reply` whose every message has passed the
reply phase. Several upstreams behind one endpoint are
:class:`~wardgate.routing.federated.FederatedRoute`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from wardgate.core.call import Call
from wardgate.core.context import CallContext
from wardgate.core.pipeline import Pipeline
from wardgate.errors import Denied, UpstreamError, WardgateError
from wardgate.routing.isolation import Isolation, isolation_key
from wardgate.routing.propagation import Propagation
from wardgate.routing.sessions import GatewaySession, SessionStore
from wardgate.routing.tasks import TaskBinding
from wardgate.upstream.seam import Event, Reply, Upstream, UpstreamSession
from wardgate.wire.jsonrpc import JsonObject, Message, MessageKind, wardgate_error_response
from wardgate.wire.mcp import H_PROTOCOL_VERSION

__all__ = ["Member", "Route"]

log = logging.getLogger("wardgate.route")

Reject = Callable[[JsonObject, WardgateError], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Member:
    """An upstream as a route sees it: its name prefix (federated routes only) and
    what of the call's context travels to it."""

    prefix: str
    upstream: Upstream
    propagation: Propagation = field(default_factory=Propagation)


def _result(message: JsonObject | None) -> JsonObject | None:
    if message is None:
        return None
    result = message.get("result")
    return result if isinstance(result, dict) else None


def _kind(raw: JsonObject) -> MessageKind:
    if "method" not in raw:
        return "response"
    return "request" if "id" in raw else "notification"


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
        isolation: Isolation = "tenant",
    ) -> None:
        if not members:
            raise ValueError("a route needs at least one upstream")
        self.name = name
        self.members = tuple(members)
        self.pipeline = pipeline
        self.sessions = sessions
        self.separator = separator
        self.isolation: Isolation = isolation
        #: Tasks are bound to the caller who created them (shared upstreams included).
        self.tasks = TaskBinding()

    # -- helpers ---------------------------------------------------------------

    def _session(
        self, call: Call | None, session: GatewaySession | None, index: int
    ) -> UpstreamSession:
        if session is None:
            key = "" if call is None else isolation_key(call.ctx.principal, self.isolation)
            return self.members[index].upstream.shared_session(key)
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

    def _outbound(
        self, call: Call, raw: JsonObject, headers: dict[str, str], index: int
    ) -> JsonObject:
        """What of the call's context travels upstream, by the member's config."""
        propagation = self.members[index].propagation
        if not propagation:
            return raw
        return propagation.apply(call, raw, headers)

    def _rejecter(
        self, call: Call, session: GatewaySession | None, headers: Mapping[str, str], index: int
    ) -> Reject:
        """Answer a refused server-to-client request upstream, so it never hangs there."""

        async def reject(raw: JsonObject, exc: WardgateError) -> None:
            answer = wardgate_error_response(raw.get("id"), exc, call.ctx.decision_id)
            try:
                await self._session(call, session, index).post(
                    answer, self._headers(headers, session, index)
                )
            except WardgateError as failure:
                log.info(
                    "could not refuse a server request upstream: %s",
                    failure.detail,
                    extra={"decision_id": call.ctx.decision_id},
                )

        return reject

    def _guarded(
        self,
        call: Call,
        reply: Reply,
        reject: Reject | None = None,
        retag: Callable[[Event], Event] | None = None,
    ) -> Reply:
        return Reply(
            self._guard_events(call, reply, reject, retag),
            status=reply.status,
            streaming=reply.streaming,
            headers=reply.headers,
        )

    async def _guard_events(
        self,
        call: Call,
        reply: Reply,
        reject: Reject | None,
        retag: Callable[[Event], Event] | None,
    ) -> AsyncIterator[Event]:
        """Every message of a reply through the call's reply phase, then retagged."""
        request_id = call.request.id
        decision_id = call.ctx.decision_id
        try:
            async for event in reply.events:
                raw = event.message
                if raw is not None:
                    message = Message(raw, _kind(raw))
                    try:
                        out = await call.message(message)
                    except WardgateError as exc:
                        if message.kind == "response":
                            yield Event(wardgate_error_response(request_id, exc, decision_id))
                            return
                        if message.kind == "request" and reject is not None:
                            await reject(raw, exc)
                        continue  # a denied notification or server request is dropped
                    if out is None:
                        if message.kind == "request" and reject is not None:
                            await reject(raw, Denied("a guard dropped the server request"))
                        continue
                    if out is not message:
                        event = Event(out.raw, event.event_id, event.retry_ms)
                yield event if retag is None else retag(event)
        except WardgateError as exc:
            call.failed(exc)
            log.warning(
                "upstream failed mid-stream: %s",
                exc.detail,
                extra={"decision_id": decision_id, "route": self.name},
            )
            if call.request.kind == "request":
                yield Event(wardgate_error_response(request_id, exc, decision_id))
        finally:
            await reply.aclose()

    # -- the request phase -----------------------------------------------------

    async def resolve(
        self, message: Message, session: GatewaySession | None, headers: Mapping[str, str]
    ) -> tuple[int | None, str | None]:
        """Which member serves ``message`` and the name or URI it names there.

        Raises:
            WardgateError: the message names nothing this route serves.
        """
        if self.tasks.member_of(message, headers) is not None:
            return 0, message.params.get("taskId")
        return 0, message.target_name

    def open(self, ctx: CallContext, message: Message, *, request_bytes: int = 0) -> Call:
        """A new call for ``message``; the caller admits it, then ends it, always."""
        return self.pipeline.call(ctx, message, request_bytes=request_bytes)

    async def admit(
        self, call: Call, session: GatewaySession | None, headers: Mapping[str, str]
    ) -> None:
        """Resolve the call's message, then run the request phase.

        Raises:
            WardgateError: the message cannot be routed, or a guard denied it.
        """
        try:
            index, target = await self.resolve(call.request, session, headers)
        except WardgateError as exc:
            call.failed(exc)
            raise
        ctx = call.ctx
        upstream = self.members[index].upstream.name if index is not None else None
        if upstream != ctx.upstream or target != ctx.target:
            call.ctx = dataclasses.replace(ctx, upstream=upstream, target=target)
        call.state["route.member"] = index
        await self.pipeline.admit(call)

    # -- handshake -------------------------------------------------------------

    async def initialize(
        self, call: Call, headers: Mapping[str, str]
    ) -> tuple[GatewaySession | None, Reply]:
        """Open a client session with the upstream, relaying its answer unchanged.

        Raises:
            WardgateError: the upstream failed.
        """
        # The place is held before anything opens upstream: a refused flood costs nothing.
        async with self.sessions.reserve(call.ctx.principal.binding_key) as slot:
            up_session, events, final = await self._open_one(call, 0, headers)
            result = _result(final)
            if result is None:
                await up_session.close()
                return None, self._guarded(call, Reply(_replay(events)))
            version = str(result.get("protocolVersion", ""))
            session = self._new_session(call.ctx, {0: up_session}, {0: version}, version)
            slot.commit(session, call.ctx.decision_id)
        reply = Reply(_replay(events), streaming=any(e.event_id for e in events))
        return session, self._guarded(call, reply, self._rejecter(call, session, headers, 0))

    async def _open_one(
        self, call: Call, index: int, headers: Mapping[str, str]
    ) -> tuple[UpstreamSession, list[Event], JsonObject]:
        up_session = await self.members[index].upstream.open_session()
        try:
            out = dict(headers)
            raw = self._outbound(call, call.request.raw, out, index)
            reply = await up_session.request(raw, out)
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

    async def end_session(self, session: GatewaySession, reason: str = "deleted") -> None:
        self.sessions.pop(session.id, reason)
        await session.close()

    # -- the terminal steps ----------------------------------------------------

    async def request(
        self, call: Call, session: GatewaySession | None, headers: Mapping[str, str]
    ) -> Reply:
        """Send a request that passed the guards to its upstream.

        Raises:
            WardgateError: the upstream failed before replying.
        """
        self.tasks.check(call)
        out = self._headers(headers, session, 0)
        raw = self._outbound(call, call.request.raw, out, 0)
        reply = await self._session(call, session, 0).request(raw, out)
        reply = self.tasks.watch(call, reply, 0)
        return self._guarded(call, reply, self._rejecter(call, session, headers, 0))

    async def post(
        self, call: Call, session: GatewaySession | None, headers: Mapping[str, str]
    ) -> int:
        """Deliver a client notification or response that passed the guards (202).

        Raises:
            WardgateError: the upstream failed.
        """
        out = self._headers(headers, session, 0)
        return await self._session(call, session, 0).post(call.request.raw, out)

    async def listen(
        self, call: Call, session: GatewaySession, headers: Mapping[str, str]
    ) -> Reply | None:
        """Open the standalone server-to-client stream of a session.

        Raises:
            WardgateError: the upstream refused or failed.
        """
        reply = await self._session(call, session, 0).listen(self._headers(headers, session, 0))
        if reply is None:
            return None
        return self._guarded(call, reply, self._rejecter(call, session, headers, 0))
