"""The listing half of a federated route: merged list pages, resource owners, discovery.

:class:`MemberLists` is the base of :class:`~wardgate.routing.federated.FederatedRoute`:
it asks members for list pages (every member's first page at once; the cursor carries
each member's remaining cursor), learns which member serves which resource
(:mod:`wardgate.routing.resource_owners`), and knows which members do not speak the
stateless era (from ``server/discover``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
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
)
from wardgate.routing.isolation import Isolation
from wardgate.routing.resource_owners import ResourceOwners
from wardgate.routing.route import Member, Route, _final, _result
from wardgate.routing.sessions import GatewaySession, SessionStore
from wardgate.wire.jsonrpc import JsonObject, Message
from wardgate.wire.mcp import H_METHOD, H_NAME, H_PARAM_PREFIX, H_PROTOCOL_VERSION, MODERN_VERSIONS

__all__ = ["MemberLists"]

log = logging.getLogger("wardgate.routing.federated")

_LEARN_PAGES = 50


@dataclass(frozen=True, slots=True)
class _Page:
    """One member's page of a list, names already exposed."""

    items: list[Any]
    next: str | None
    ttl_ms: int | None
    scope: str


class MemberLists(Route):
    """List pages, resource owners and discovery across a route's members."""

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
    ) -> None:
        super().__init__(
            name, members, pipeline, sessions, separator=separator, isolation=isolation
        )
        self._prefixes = [m.prefix for m in members]
        #: Which member serves which resource URI, learnt from list results.
        self.resources = resources or ResourceOwners([m.prefix or m.upstream.name for m in members])
        self._learn_lock = asyncio.Lock()
        #: Members whose ``server/discover`` failed (None: not asked yet).
        self._legacy_members: frozenset[int] | None = None

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
