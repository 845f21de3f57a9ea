"""A federated route: several upstreams behind one MCP endpoint.

Tools and prompts carry a per-upstream prefix; resources are routed to the one member
that lists them or whose template matches them (conflicts route nowhere, misses are
bounded: :mod:`wardgate.routing.resource_owners`); a list's first page is every member's
first page, fetched at once, and its cursor carries each member's remaining cursor;
server-to-client
request ids and SSE event ids are tagged with their member so answers and resumptions
find their way back (the pure parts live in :mod:`wardgate.routing.federation`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
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
from wardgate.routing.federation import (
    LIST_KEYS,
    decode_cursor,
    encode_cursor,
    expose_name,
    merge_discover,
    merge_initialize,
    split_name,
    tag_event_id,
    tag_request_id,
    untag_event_id,
    untag_request_id,
)
from wardgate.routing.resource_owners import ResourceOwners
from wardgate.routing.route import Member, Route, _final, _result
from wardgate.routing.sessions import GatewaySession, SessionStore
from wardgate.routing.tasks import TASK_LIST, TaskBinding
from wardgate.upstream.seam import Event, Reply, UpstreamSession, single
from wardgate.wire.jsonrpc import JsonObject, Message
from wardgate.wire.mcp import (
    H_LAST_EVENT_ID,
    H_METHOD,
    H_NAME,
    H_PARAM_PREFIX,
    H_PROTOCOL_VERSION,
    MODERN_VERSIONS,
    encode_header_value,
)

__all__ = ["FederatedRoute"]


@dataclass(frozen=True, slots=True)
class _Page:
    """One member's page of a list, names already exposed."""

    items: list[Any]
    next: str | None
    ttl_ms: int | None
    scope: str


log = logging.getLogger("wardgate.routing.federated")

_RENAMED = {"tools/call": "tools", "prompts/get": "prompts"}
_BY_URI = frozenset({"resources/read", "resources/subscribe", "resources/unsubscribe"})
_LEARN_PAGES = 50
#: Methods 2026-07-28 removed; a federated route answers them 404/-32601 in that era.
_REMOVED_2026 = frozenset(
    {"ping", "logging/setLevel", "resources/subscribe", "resources/unsubscribe"}
)


class FederatedRoute(Route):
    """Several members behind one endpoint; see the module docstring."""

    def __init__(
        self,
        name: str,
        members: Sequence[Member],
        pipeline: Pipeline,
        sessions: SessionStore,
        *,
        separator: str = "__",
        resources: ResourceOwners | None = None,
        tasks: TaskBinding | None = None,
    ) -> None:
        super().__init__(name, members, pipeline, sessions, separator=separator)
        self._prefixes = [m.prefix for m in members]
        #: Which member serves which resource URI, learnt from list results.
        self.resources = resources or ResourceOwners([m.prefix or m.upstream.name for m in members])
        self._learn_lock = asyncio.Lock()
        #: Tasks bound to the caller and member that created them.
        self.tasks = tasks if tasks is not None else TaskBinding()
        #: Members whose ``server/discover`` failed (None: not asked yet).
        self._legacy_members: frozenset[int] | None = None

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
        await self.sessions.add(session)
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

    async def _owner_of(
        self,
        uri: Any,
        message: Message,
        session: GatewaySession | None,
        headers: Mapping[str, str],
    ) -> int:
        """The member serving ``uri``: learnt from list results, listing on a miss.

        A miss re-lists the members at most once per learn interval (concurrent misses
        share one listing) and is remembered for a while, so random URIs cannot make
        the route list every member for each one.

        Raises:
            InvalidParams: the URI is not a string.
            UnknownTarget: no member serves the URI, or several claim it (a conflict,
                logged with the members' names; answered as an unknown resource).
        """
        if not isinstance(uri, str):
            raise InvalidParams("uri must be a string")
        owners = self.resources
        found = owners.lookup(uri)
        if not found.members and not owners.recently_missed(uri):
            seen = owners.learn_generation
            async with self._learn_lock:
                if owners.learn_generation == seen and owners.may_learn():
                    owners.learning()
                    await self._learn_resources(message, session, headers)
            found = owners.lookup(uri)
            if not found.members:
                owners.missed(uri)
        if found.conflict:
            raise UnknownTarget("resource claimed by several members", data={"uri": uri})
        if found.owner is None:
            raise UnknownTarget("unknown resource", data={"uri": uri})
        return found.owner

    async def _learn_resources(
        self, message: Message, session: GatewaySession | None, headers: Mapping[str, str]
    ) -> None:
        """List every member's resources and templates (bounded) to learn their owners.

        A member whose listing completes replaces what was known of it (so a conflict
        ends when one side stops listing the URI); a failed listing changes nothing.
        """
        meta = message.params.get("_meta")
        base: JsonObject = {} if meta is None else {"_meta": meta}
        indices = sorted(session.upstreams) if session is not None else range(len(self.members))

        async def everything(index: int, method: str) -> list[Any] | None:
            hdrs = {
                k: v for k, v in headers.items() if k != H_NAME and not k.startswith(H_PARAM_PREFIX)
            }
            if H_METHOD in hdrs:
                hdrs[H_METHOD] = method
            items: list[Any] = []
            cursor: str | None = None
            for _ in range(_LEARN_PAGES):
                params = base if cursor is None else {**base, "cursor": cursor}
                raw: JsonObject = {
                    "jsonrpc": "2.0",
                    "id": f"wardgate-learn-{method}",
                    "method": method,
                    "params": params,
                }
                page = await self._page(None, raw, session, hdrs, index, record=False)
                if page is None:
                    return None
                items.extend(page.items)
                cursor = page.next
                if cursor is None:
                    break
            return items

        async def one(index: int) -> None:
            resources, templates = await asyncio.gather(
                everything(index, "resources/list"), everything(index, "resources/templates/list")
            )
            if resources is None or templates is None:
                return
            self.resources.replace(
                index,
                (
                    r["uri"]
                    for r in resources
                    if isinstance(r, dict) and isinstance(r.get("uri"), str)
                ),
                (
                    t["uriTemplate"]
                    for t in templates
                    if isinstance(t, dict) and isinstance(t.get("uriTemplate"), str)
                ),
            )

        await asyncio.gather(*(one(i) for i in indices))

    async def _page(
        self,
        call: Call | None,
        raw: JsonObject,
        session: GatewaySession | None,
        headers: Mapping[str, str],
        index: int,
        *,
        record: bool = True,
    ) -> _Page | None:
        """One page of a list from one member (``None``: it failed, logged)."""
        method = str(raw.get("method"))
        key = LIST_KEYS[method]
        try:
            final = await _final(
                await self._session(call, session, index).request(
                    raw, self._headers(headers, session, index)
                )
            )
        except WardgateError as exc:
            log.warning("listing %s on %s failed: %s", key, self.members[index].prefix, exc.detail)
            return None
        result = _result(final)
        if result is None:
            log.warning("listing %s on %s was refused", key, self.members[index].prefix)
            return None
        found = result.get(key)
        items = (
            [self._expose(index, key, item, record) for item in found]
            if isinstance(found, list)
            else []
        )
        up_next = result.get("nextCursor")
        ttl = result.get("ttlMs")
        return _Page(
            items,
            up_next if isinstance(up_next, str) else None,
            ttl if isinstance(ttl, int) and not isinstance(ttl, bool) else None,
            str(result.get("cacheScope", "private")),
        )

    async def _list(
        self,
        call: Call | None,
        message: Message,
        session: GatewaySession | None,
        headers: Mapping[str, str],
    ) -> JsonObject:
        """A merged list page: every member's first page at once, then each one's next.

        A client that never follows ``nextCursor`` still sees every member's first page;
        the cursor carries each member's remaining cursor.

        Raises:
            InvalidParams: the client's cursor was not made by this route.
        """
        method = message.method or ""
        key = LIST_KEYS[method]
        modern = session is None and headers.get(H_PROTOCOL_VERSION) in MODERN_VERSIONS
        params = dict(message.params)
        cursor = params.pop("cursor", None)
        wanted: dict[int, str | None]
        if cursor is None:
            wanted = dict.fromkeys(range(len(self.members)))
        else:
            wanted = dict(decode_cursor(cursor, len(self.members)))
        legacy_only = await self._legacy_only(call, message, headers) if modern else frozenset()
        wanted = {
            i: c
            for i, c in wanted.items()
            if (session is None or i in session.upstreams) and i not in legacy_only
        }

        def page_raw(up_cursor: str | None) -> JsonObject:
            page_params = dict(params)
            if up_cursor is not None:
                page_params["cursor"] = up_cursor
            return {**message.raw, "params": page_params}

        pages = await asyncio.gather(
            *(self._page(call, page_raw(c), session, headers, i) for i, c in wanted.items())
        )
        items: list[Any] = []
        remaining: dict[int, str] = {}
        ttls: list[int] = []
        scopes: set[str] = set()
        for index, page in zip(wanted, pages, strict=True):
            if page is None:
                continue
            items.extend(page.items)
            if page.next is not None:
                remaining[index] = page.next
            if page.ttl_ms is not None:
                ttls.append(page.ttl_ms)
            scopes.add(page.scope)
        out: JsonObject = {key: items}
        if modern:
            # 2026 list results carry caching fields: the strictest of the pages merged.
            out["resultType"] = "complete"
            out["ttlMs"] = min(ttls, default=0)
            out["cacheScope"] = "public" if scopes == {"public"} else "private"
        if remaining:
            out["nextCursor"] = encode_cursor(remaining)
        return out

    def _expose(self, index: int, key: str, item: Any, record: bool = True) -> Any:
        if not isinstance(item, dict):
            return item
        if key in ("tools", "prompts") and isinstance(item.get("name"), str):
            return {
                **item,
                "name": expose_name(self._prefixes[index], self.separator, item["name"]),
            }
        if record and key == "resources" and isinstance(item.get("uri"), str):
            self.resources.add(index, uris=(item["uri"],))
        if record and key == "resourceTemplates" and isinstance(item.get("uriTemplate"), str):
            self.resources.add(index, templates=(item["uriTemplate"],))
        return item

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

    async def _legacy_only(
        self, call: Call | None, message: Message, headers: Mapping[str, str]
    ) -> frozenset[int]:
        """Members that do not speak the stateless era: kept out of 2026 traffic.

        Learnt from ``server/discover`` (the client's, or one sent once on its behalf).
        """
        if self._legacy_members is None:
            meta = message.params.get("_meta")
            probe: JsonObject = {
                "jsonrpc": "2.0",
                "id": "wardgate-discover",
                "method": "server/discover",
                "params": {} if meta is None else {"_meta": meta},
            }
            hdrs = {k: v for k, v in headers.items() if k != H_NAME}
            if H_METHOD in hdrs:
                hdrs[H_METHOD] = "server/discover"
            await self._fan_out(call, Message(probe, "request"), None, hdrs)
        return self._legacy_members or frozenset()

    async def _fan_out(
        self,
        call: Call | None,
        message: Message,
        session: GatewaySession | None,
        headers: Mapping[str, str],
    ) -> JsonObject:
        indices = sorted(session.upstreams) if session is not None else range(len(self.members))

        async def one(index: int) -> JsonObject:
            return await _final(
                await self._session(call, session, index).request(
                    message.raw, self._headers(headers, session, index)
                )
            )

        finals = await asyncio.gather(*(one(i) for i in indices), return_exceptions=True)
        if message.method == "server/discover" and session is None:
            self._legacy_members = frozenset(
                i
                for i, f in zip(indices, finals, strict=True)
                if not isinstance(f, dict) or _result(f) is None
            )
        if message.method == "server/discover" and self._legacy_members:
            # The route is only as stateless as its least capable member: refusing
            # discover sends dual-era clients to initialize, where every member works.
            raise MethodNotFound("a member of this route does not serve 2026-07-28")
        results = [_result(f) for f in finals if isinstance(f, dict)]
        good = [r for r in results if r is not None]
        if not good:
            raise UpstreamError(f"no upstream answered {message.method}")
        result: JsonObject = {}
        if message.method == "server/discover":
            result = merge_discover(good, self.name)
        return {"jsonrpc": "2.0", "id": message.id, "result": result}

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
        return Reply(_merge(replies), streaming=True)


async def _merge(replies: Sequence[tuple[int, Reply]]) -> AsyncIterator[Event]:
    """Interleave several upstream streams into one, as events arrive."""
    queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=256)

    async def pump(reply: Reply) -> None:
        try:
            async for event in reply.events:
                await queue.put(event)
        finally:
            await queue.put(None)

    tasks = [asyncio.create_task(pump(reply)) for _, reply in replies]
    remaining = len(tasks)
    try:
        while remaining:
            event = await queue.get()
            if event is None:
                remaining -= 1
                continue
            yield event
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
