"""Token-bucket rate limits per subject (and optionally tenant, tool, source IP)."""

from __future__ import annotations

from collections.abc import Mapping

from wardgate.config.limits import RateConfig
from wardgate.core.call import Call
from wardgate.limits.fallback import part
from wardgate.limits.refusals import RateLimited
from wardgate.state.store import StateStore
from wardgate.wire.jsonrpc import Message

__all__ = ["RateLimitGuard", "tool_entry"]


def tool_entry(table: Mapping[str, object], upstream: str | None, tool: str | None) -> str | None:
    """The key of ``table`` for a tool: ``upstream/tool`` first, then the bare name."""
    if tool is None:
        return None
    if upstream is not None and f"{upstream}/{tool}" in table:
        return f"{upstream}/{tool}"
    return tool if tool in table else None


class _Bucket:
    __slots__ = ("burst", "key", "rate")

    def __init__(self, config: RateConfig) -> None:
        self.rate = config.requests / config.per_seconds
        self.burst = config.burst
        self.key = config.key


class RateLimitGuard:
    """Takes one token per request from the caller's bucket; refuses with
    :class:`RateLimited` (429, ``Retry-After``) when it is empty.

    A tool with a rate of its own uses its bucket instead of the route's. Notifications
    are not counted: they have no answer to carry a refusal.
    """

    name = "rate_limit"
    methods: frozenset[str] | None = None
    fail_open = False

    def __init__(
        self,
        store: StateStore,
        route: str,
        default: RateConfig | None,
        tools: Mapping[str, RateConfig],
    ) -> None:
        self._store = store
        self._route = part(route)
        self._default = _Bucket(default) if default is not None else None
        self._tools = {name: _Bucket(c) for name, c in tools.items()}

    async def on_request(self, call: Call, message: Message) -> Message:
        """Raises:
        RateLimited: the bucket is empty.
        StateStoreUnavailable: the store failed (deny).
        """
        if message.kind != "request":
            return message
        ctx = call.ctx
        bucket, scope = self._default, "route"
        if self._tools and message.method == "tools/call":
            entry = tool_entry(self._tools, ctx.upstream, ctx.target)
            if entry is not None:
                bucket, scope = self._tools[entry], "tool:" + part(entry)
        if bucket is None:
            return message
        key = ["rl", self._route, scope]
        for k in bucket.key:
            if k == "subject":
                key.append("s=" + part(ctx.principal.subject))
            elif k == "tenant":
                key.append("t=" + part(ctx.principal.tenant))
            elif k == "tool":
                key.append("m=" + part(ctx.target or message.method))
            else:
                key.append("ip=" + part(ctx.client_addr))
        taken = await self._store.take_token(":".join(key), bucket.rate, bucket.burst)
        if not taken.allowed:
            raise RateLimited(
                f"rate limit {scope} for {ctx.principal.subject}", retry_after=taken.retry_after
            )
        return message
