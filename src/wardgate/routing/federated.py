"""A federated route: several upstreams behind one MCP endpoint.

Tools and prompts carry a per-upstream prefix; resources are routed to the one member
that lists them or whose template matches them (conflicts route nowhere, misses are
bounded: :mod:`wardgate.routing.resource_owners`); a list's first page is every member's
first page, fetched at once, and its cursor carries each member's remaining cursor;
``subscriptions/listen`` (2026) merges the members' streams behind one acknowledgement;
tasks go to the member that made them, for the caller who made them only
(:mod:`wardgate.routing.tasks`). Server-to-client request ids and SSE event ids are
tagged with their member so answers and resumptions find their way back (the pure parts
live in :mod:`wardgate.routing.federation`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from wardgate.core.call import Call
from wardgate.core.pipeline import Pipeline
from wardgate.errors import (
    InvalidParams,
    MethodNotFound,
    UnknownTarget,
    UpstreamError,
    WardgateError,
)
from wardgate.routing.federated_lists import MemberLists
from wardgate.routing.federation import (
    ACKNOWLEDGED,
    LIST_KEYS,
    LISTEN_METHOD,
    SUBSCRIPTION_ID,
    merge_acknowledged,
    merge_initialize,
    split_name,
    tag_event_id,
    tag_request_id,
    untag_event_id,
    untag_request_id,
)
from wardgate.routing.isolation import Isolation
from wardgate.routing.resource_owners import ResourceOwners
from wardgate.routing.route import Member, _final, _result
from wardgate.routing.sessions import GatewaySession, SessionStore
from wardgate.routing.streams import merge_streams, subscription_stream
from wardgate.routing.tasks import TASK_LIST, TaskBinding
from wardgate.upstream.seam import Event, Reply, UpstreamSession, single
from wardgate.wire.jsonrpc import JsonObject, Message
from wardgate.wire.mcp import (
    H_LAST_EVENT_ID,
    H_NAME,
    H_PROTOCOL_VERSION,
    MODERN_VERSIONS,
    encode_header_value,
)

__all__ = ["FederatedRoute"]


log = logging.getLogger("wardgate.routing.federated")

_RENAMED = {"tools/call": "tools", "prompts/get": "prompts"}
_BY_URI = frozenset({"resources/read", "resources/subscribe", "resources/unsubscribe"})
#: How long a member may take to acknowledge a subscription stream (seconds).
_ACK_TIMEOUT = 10.0
_MAX_SUBSCRIBED_URIS = 1000
#: Methods 2026-07-28 removed; a federated route answers them 404/-32601 in that era.
_REMOVED_2026 = frozenset(
    {"ping", "logging/setLevel", "resources/subscribe", "resources/unsubscribe"}
)


class FederatedRoute(MemberLists):
    """Several members behind one endpoint; see the module docstring."""

    def __init__(
        self,
        name: str,
        members: Sequence[Member],
        pipeline: Pipeline,
        sessions: SessionStore,
        *,
        separator: str = "__",
        isolation: Isolation = "tenant",
        resources: ResourceOwners | None = None,
        tasks: TaskBinding | None = None,
    ) -> None:
        super().__init__(
            name,
            members,
            pipeline,
            sessions,
            separator=separator,
            isolation=isolation,
            resources=resources,
        )
        #: Tasks bound to the caller and member that created them.
        self.tasks = tasks if tasks is not None else TaskBinding()

    def _retagger(self, index: int) -> Callable[[Event], Event]:
        """Tag server-request ids and SSE event ids with the member they came from."""

        def retag(event: Event) -> Event:
            raw = event.message
            if raw is not None and "method" in raw and "id" in raw:
                raw = {**raw, "id": tag_request_id(index, raw["id"])}
            return Event(raw, tag_event_id(index, event.event_id), event.retry_ms)

        return retag

    async def initialize(
        self, call: Call, headers: Mapping[str, str]
    ) -> tuple[GatewaySession | None, Reply]:
        """Open a client session: initialize every member, answer with the merged result.

        Raises:
            WardgateError: no upstream answered.
        """
        ctx = call.ctx
        message = call.request
        async with self.sessions.reserve(ctx.principal.binding_key) as slot:
            opened = await asyncio.gather(
                *(self._open_one(call, i, headers) for i in range(len(self.members))),
                return_exceptions=True,
            )
            good: dict[int, tuple[UpstreamSession, list[Event], JsonObject]] = {}
            for index, outcome in enumerate(opened):
                if isinstance(outcome, BaseException):
                    log.warning(
                        "initialize of upstream %s failed: %r",
                        self.members[index].prefix,
                        outcome,
                        extra={"decision_id": ctx.decision_id, "route": self.name},
                    )
                    continue
                good[index] = outcome
            live = {i: g for i, g in good.items() if _result(g[2]) is not None}
            for index in set(good) - set(live):
                await good[index][0].close()
            if not live:
                raise UpstreamError("no upstream of the route accepted initialize")
            results = {i: _result(g[2]) or {} for i, g in live.items()}
            versions = {i: str(r.get("protocolVersion", "")) for i, r in results.items()}
            version = min(versions.values())
            merged = merge_initialize(
                {self.members[i].prefix: r for i, r in results.items()}, version, self.name
            )
            session = self._new_session(ctx, {i: g[0] for i, g in live.items()}, versions, version)
            slot.commit(session, ctx.decision_id)
        response = {"jsonrpc": "2.0", "id": message.id, "result": merged}
        return session, self._guarded(call, single(response))

    async def resolve(
        self, message: Message, session: GatewaySession | None, headers: Mapping[str, str]
    ) -> tuple[int | None, str | None]:
        """The member a named call goes to and the name (or URI) it has there.

        Methods the route answers itself or fans out resolve to no member.

        Raises:
            UnknownTarget: the name or URI belongs to no member (answered in-band, as an
                MCP server answers an unknown tool).
            InvalidParams: a completion without a usable ``ref``.
        """
        method = message.method or ""
        params = message.params
        modern = session is None and headers.get(H_PROTOCOL_VERSION) in MODERN_VERSIONS
        if modern and method in _REMOVED_2026:
            raise MethodNotFound(f"{method} does not exist in this protocol version")
        if method in _RENAMED:
            found = split_name(str(params.get("name", "")), self._prefixes, self.separator)
            if found is None:
                raise UnknownTarget(f"unknown {_RENAMED[method][:-1]}: {params.get('name')!r}")
            return found
        owner = self.tasks.member_of(message, headers)
        if owner is not None:
            # Which member made the task; whether the caller may reach it is checked
            # before forwarding (same answer as an unknown task).
            return owner, params.get("taskId")
        if method in _BY_URI:
            uri = params.get("uri")
            return await self._owner_of(uri, message, session, headers), uri
        if method == "completion/complete":
            ref = params.get("ref")
            if isinstance(ref, dict) and ref.get("type") == "ref/prompt":
                found = split_name(str(ref.get("name", "")), self._prefixes, self.separator)
                if found is None:
                    raise UnknownTarget("unknown prompt")
                return found
            if isinstance(ref, dict):
                uri = ref.get("uri")
                return await self._owner_of(uri, message, session, headers), uri
            raise InvalidParams("completion needs a ref")
        return None, message.target_name

    async def request(
        self, call: Call, session: GatewaySession | None, headers: Mapping[str, str]
    ) -> Reply:
        message = call.request
        method = message.method or ""
        modern = session is None and headers.get(H_PROTOCOL_VERSION) in MODERN_VERSIONS
        if method in LIST_KEYS:
            result = await self._list(call, message, session, headers)
            response = {"jsonrpc": "2.0", "id": message.id, "result": result}
            return self._guarded(call, single(response))
        if method == "ping":
            return self._guarded(call, single({"jsonrpc": "2.0", "id": message.id, "result": {}}))
        if method == TASK_LIST:
            return self._guarded(call, single(await self._list_tasks(call, session, headers)))
        if method == LISTEN_METHOD:
            if session is not None:
                raise MethodNotFound(f"{method} does not exist in this protocol version")
            return await self._subscribe(call, headers)
        if method in ("logging/setLevel", "server/discover"):
            return self._guarded(call, single(await self._fan_out(call, message, session, headers)))
        index = call.state.get("route.member")
        if not isinstance(index, int):
            raise MethodNotFound(f"{method} cannot be routed on a federated route")
        if modern and index in await self._legacy_only(call, message, headers):
            raise InvalidParams("that upstream does not serve this protocol version")
        self.tasks.check(call, index)
        raw = self._unprefixed(message)
        out_headers = self._headers(headers, session, index)
        name = raw.get("params", {}).get("name")
        if method in _RENAMED and isinstance(name, str) and H_NAME in out_headers:
            out_headers[H_NAME] = encode_header_value(name)
        raw = self._outbound(call, raw, out_headers, index)
        reply = await self._session(call, session, index).request(raw, out_headers)
        reply = self.tasks.watch(call, reply, index)
        reject = self._rejecter(call, session, headers, index)
        return self._guarded(call, reply, reject, self._retagger(index))

    def _unprefixed(self, message: Message) -> JsonObject:
        """The message as its member sees it: tool and prompt names without the prefix."""
        method = message.method or ""
        params = message.params
        if method in _RENAMED:
            found = split_name(str(params.get("name", "")), self._prefixes, self.separator)
            if found is not None:
                return {**message.raw, "params": {**params, "name": found[1]}}
        if method == "completion/complete":
            ref = params.get("ref")
            if isinstance(ref, dict) and ref.get("type") == "ref/prompt":
                found = split_name(str(ref.get("name", "")), self._prefixes, self.separator)
                if found is not None:
                    new_params = {**params, "ref": {**ref, "name": found[1]}}
                    return {**message.raw, "params": new_params}
        return message.raw

    async def _subscribe(self, call: Call, headers: Mapping[str, str]) -> Reply:
        """``subscriptions/listen`` (2026): one stream merged from the members' streams.

        Change-notification flags go to every member, each resource subscription to
        the one member that owns the URI (others are left out of the filter and so of
        the acknowledgement). The first message is one acknowledgement merging the
        members'; later notifications carry the client's subscription id.

        Raises:
            MethodNotFound: no member serves ``subscriptions/listen``.
        """
        message = call.request
        sub_id = message.id
        legacy_only = await self._legacy_only(call, message, headers)
        wanted = message.params.get("notifications")
        wanted = wanted if isinstance(wanted, dict) else {}
        flags = {k: v for k, v in wanted.items() if k != "resourceSubscriptions"}
        uris_of: dict[int, list[str]] = {}
        requested = wanted.get("resourceSubscriptions")
        requested = requested if isinstance(requested, list) else []
        if len(requested) > _MAX_SUBSCRIBED_URIS:
            raise InvalidParams("too many resource subscriptions")
        for uri in requested:
            try:
                owner = await self._owner_of(uri, message, None, headers)
            except WardgateError:
                continue  # unknown, conflicting or malformed: not subscribed, not acknowledged
            uris_of.setdefault(owner, []).append(uri)
        filters: dict[int, JsonObject] = {}
        for index in range(len(self.members)):
            if index in legacy_only:
                continue
            mine: JsonObject = dict(flags)
            if index in uris_of:
                mine["resourceSubscriptions"] = uris_of[index]
            if any(v for v in mine.values()):
                filters[index] = mine

        async def first_message(reply: Reply) -> JsonObject | None:
            async for event in reply.events:
                if event.message is not None:  # skip keep-alive and priming events
                    return event.message
            return None

        async def open_one(index: int) -> tuple[Reply, JsonObject] | None:
            out = dict(headers)
            raw = {**message.raw, "params": {**message.params, "notifications": filters[index]}}
            raw = self._outbound(call, raw, out, index)
            reply = await self._session(call, None, index).request(raw, out)
            try:
                first = await asyncio.wait_for(first_message(reply), _ACK_TIMEOUT)
                if first is not None and first.get("method") == ACKNOWLEDGED:
                    return reply, first
            except (WardgateError, TimeoutError) as exc:
                log.info("subscriptions/listen on %s failed: %r", self.members[index].prefix, exc)
            await reply.aclose()
            return None

        opened = await asyncio.gather(*(open_one(i) for i in filters), return_exceptions=True)
        streams: list[tuple[int, Reply]] = []
        acks: list[JsonObject] = []
        for index, outcome in zip(filters, opened, strict=True):
            if isinstance(outcome, BaseException):
                log.info(
                    "subscriptions/listen on %s failed: %r", self.members[index].prefix, outcome
                )
            elif outcome is not None:
                streams.append((index, outcome[0]))
                acks.append(outcome[1])
        if not streams:
            raise MethodNotFound("no member of this route serves subscriptions/listen")
        ack = {
            "jsonrpc": "2.0",
            "method": ACKNOWLEDGED,
            "params": {
                "notifications": merge_acknowledged(acks),
                "_meta": {SUBSCRIPTION_ID: sub_id},
            },
        }
        events = subscription_stream(streams, ack, sub_id)
        return self._guarded(call, Reply(events, streaming=True))

    async def _list_tasks(
        self, call: Call, session: GatewaySession | None, headers: Mapping[str, str]
    ) -> JsonObject:
        """``tasks/list`` from every member, each showing only the caller's tasks.

        Raises:
            MethodNotFound: no member serves ``tasks/list``.
        """
        message = call.request
        indices = sorted(session.upstreams) if session is not None else range(len(self.members))
        owner = call.ctx.principal.binding_key
        params = {k: v for k, v in message.params.items() if k != "cursor"}
        raw = {**message.raw, "params": params}

        async def one(index: int) -> JsonObject:
            return await _final(
                await self._session(call, session, index).request(
                    raw, self._headers(headers, session, index)
                )
            )

        finals = await asyncio.gather(*(one(i) for i in indices), return_exceptions=True)
        tasks: list[Any] = []
        answered = False
        for index, final in zip(indices, finals, strict=True):
            if not isinstance(final, dict) or _result(final) is None:
                continue
            answered = True
            mine = _result(self.tasks.filter_list(final, owner, index)) or {}
            tasks.extend(mine.get("tasks") or ())
        if not answered:
            raise MethodNotFound("no member of this route serves tasks/list")
        # Members' cursors are not followed: the caller's own tasks are few (capped).
        return {"jsonrpc": "2.0", "id": message.id, "result": {"tasks": tasks}}

    async def post(
        self, call: Call, session: GatewaySession | None, headers: Mapping[str, str]
    ) -> int:
        """Responses go to the member whose request they answer; notifications to all."""
        ctx, message = call.ctx, call.request
        if message.kind == "response":
            found = untag_request_id(message.raw.get("id"))
            if found is None or (session is not None and found[0] not in session.upstreams):
                log.info(
                    "dropping a response to an unknown request",
                    extra={"decision_id": ctx.decision_id},
                )
                return 202
            index, original = found
            raw = {**message.raw, "id": original}
            return await self._session(call, session, index).post(
                raw, self._headers(headers, session, index)
            )
        indices = sorted(session.upstreams) if session is not None else range(len(self.members))
        statuses = await asyncio.gather(
            *(
                self._session(call, session, i).post(
                    message.raw, self._headers(headers, session, i)
                )
                for i in indices
            ),
            return_exceptions=True,
        )
        return 202 if any(s == 202 for s in statuses) else 502

    async def listen(
        self, call: Call, session: GatewaySession, headers: Mapping[str, str]
    ) -> Reply | None:
        """Open the standalone server-to-client stream of a session.

        Raises:
            WardgateError: the upstream refused or failed.
        """
        resume = untag_event_id(headers.get(H_LAST_EVENT_ID))
        base = {k: v for k, v in headers.items() if k != H_LAST_EVENT_ID}
        replies: list[tuple[int, Reply]] = []
        for index in sorted(session.upstreams):
            one = self._headers(base, session, index)
            if resume is not None and resume[0] == index:
                one[H_LAST_EVENT_ID] = resume[1]
            reply = await session.upstreams[index].listen(one)
            if reply is not None:
                reject = self._rejecter(call, session, headers, index)
                replies.append((index, self._guarded(call, reply, reject, self._retagger(index))))
        if not replies:
            return None
        return Reply(merge_streams(replies), streaming=True)
