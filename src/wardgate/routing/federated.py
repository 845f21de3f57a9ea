"""A federated route: several upstreams behind one MCP endpoint.

Tools and prompts carry a per-upstream prefix, resources are routed to the member that
lists them, lists paginate across members with composite cursors, and server-to-client
request ids and SSE event ids are tagged with their member so answers and resumptions
find their way back (the pure parts live in :mod:`wardgate.routing.federation`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
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
from wardgate.routing.route import Member, Route, _final, _result
from wardgate.routing.sessions import GatewaySession, SessionStore
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
    ) -> None:
        super().__init__(name, members, pipeline, sessions, separator=separator)
        self._prefixes = [m.prefix for m in members]
        #: Resource URI -> upstream index, learnt from list results.
        self._resource_owner: dict[str, int] = {}
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
            slot.commit(session)
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
        if method in ("logging/setLevel", "server/discover"):
            return self._guarded(call, single(await self._fan_out(call, message, session, headers)))
        index = call.state.get("route.member")
        if not isinstance(index, int):
            raise MethodNotFound(f"{method} cannot be routed on a federated route")
        if modern and index in await self._legacy_only(call, message, headers):
            raise InvalidParams("that upstream does not serve this protocol version")
        raw = self._unprefixed(message)
        out_headers = self._headers(headers, session, index)
        name = raw.get("params", {}).get("name")
        if method in _RENAMED and isinstance(name, str) and H_NAME in out_headers:
            out_headers[H_NAME] = encode_header_value(name)
        raw = self._outbound(call, raw, out_headers, index)
        reply = await self._session(call, session, index).request(raw, out_headers)
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

    def _known_owner(self, uri: str) -> int | None:
        owners = self._resource_owner
        if uri in owners:
            return owners[uri]
        for known, index in owners.items():
            # Templates are recorded by their literal prefix (the part before "{").
            if known.endswith("{") and uri.startswith(known[:-1]):
                return index
        return None

    async def _owner_of(
        self,
        uri: Any,
        message: Message,
        session: GatewaySession | None,
        headers: Mapping[str, str],
    ) -> int:
        """The upstream serving ``uri``: learnt from list results, listing on a miss.

        Raises:
            InvalidParams: the URI is not a string.
            UnknownTarget: no upstream lists the resource or a template matching it.
        """
        if not isinstance(uri, str):
            raise InvalidParams("uri must be a string")
        index = self._known_owner(uri)
        if index is None:
            await self._learn_resources(message, session, headers)
            index = self._known_owner(uri)
        if index is None:
            raise UnknownTarget("unknown resource", data={"uri": uri})
        return index

    async def _learn_resources(
        self, message: Message, session: GatewaySession | None, headers: Mapping[str, str]
    ) -> None:
        """List every upstream's resources and templates (bounded) to learn their owners."""
        meta = message.params.get("_meta")
        for method in ("resources/list", "resources/templates/list"):
            hdrs = {
                k: v for k, v in headers.items() if k != H_NAME and not k.startswith(H_PARAM_PREFIX)
            }
            if H_METHOD in hdrs:
                hdrs[H_METHOD] = method
            params: JsonObject = {} if meta is None else {"_meta": meta}
            cursor: str | None = None
            for _ in range(_LEARN_PAGES):
                if cursor is not None:
                    params = {**params, "cursor": cursor}
                raw: JsonObject = {
                    "jsonrpc": "2.0",
                    "id": f"wardgate-learn-{method}",
                    "method": method,
                    "params": params,
                }
                result = await self._list(None, Message(raw, "request"), session, hdrs)
                next_cursor = result.get("nextCursor")
                if not isinstance(next_cursor, str):
                    break
                cursor = next_cursor

    async def _list(
        self,
        call: Call | None,
        message: Message,
        session: GatewaySession | None,
        headers: Mapping[str, str],
    ) -> JsonObject:
        method = message.method or ""
        key = LIST_KEYS[method]
        modern = session is None and headers.get(H_PROTOCOL_VERSION) in MODERN_VERSIONS
        legacy_only = await self._legacy_only(call, message, headers) if modern else frozenset()
        params = dict(message.params)
        cursor = params.pop("cursor", None)
        index, up_cursor = (0, None) if cursor is None else decode_cursor(cursor, len(self.members))
        ttls: list[int] = []
        scopes: set[str] = set()
        while True:
            if (session is not None and index not in session.upstreams) or index in legacy_only:
                items: list[Any] = []
                up_next = None
            else:
                page_params = dict(params)
                if up_cursor is not None:
                    page_params["cursor"] = up_cursor
                raw = {**message.raw, "params": page_params}
                try:
                    final = await _final(
                        await self._session(call, session, index).request(
                            raw, self._headers(headers, session, index)
                        )
                    )
                except WardgateError as exc:
                    log.warning(
                        "listing %s on %s failed: %s", key, self.members[index].prefix, exc.detail
                    )
                    final = {}
                result = _result(final) or {}
                found = result.get(key)
                items = (
                    [self._expose(index, key, item) for item in found]
                    if isinstance(found, list)
                    else []
                )
                up_next = (
                    result.get("nextCursor") if isinstance(result.get("nextCursor"), str) else None
                )
                if isinstance(result.get("ttlMs"), int):
                    ttls.append(result["ttlMs"])
                scopes.add(str(result.get("cacheScope", "private")))
            out: JsonObject = {key: items}
            if modern:
                # 2026 list results carry caching fields: the strictest of the pages merged.
                out["resultType"] = "complete"
                out["ttlMs"] = min(ttls, default=0)
                out["cacheScope"] = "public" if scopes == {"public"} else "private"
            if up_next is not None:
                out["nextCursor"] = encode_cursor(index, up_next)
                return out
            if index + 1 < len(self.members):
                index, up_cursor = index + 1, None
                if not items:
                    continue
                out["nextCursor"] = encode_cursor(index, None)
            return out

    def _expose(self, index: int, key: str, item: Any) -> Any:
        if not isinstance(item, dict):
            return item
        if key in ("tools", "prompts") and isinstance(item.get("name"), str):
            return {
                **item,
                "name": expose_name(self._prefixes[index], self.separator, item["name"]),
            }
        for field in ("uri", "uriTemplate"):
            value = item.get(field)
            if isinstance(value, str):
                recorded = value.split("{", 1)[0] + "{" if field == "uriTemplate" else value
                self._resource_owner[recorded] = index
        return item

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
