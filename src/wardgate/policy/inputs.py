"""Building the policy input from the core's call context and the message.

Nothing here re-derives identity or routing from headers: the subject comes from the
principal the edge authenticated, the upstream and the unprefixed name from what the
route resolved (``CallContext.upstream`` / ``target``). What the operator supplies:
which tool arguments map to which resource attributes, a table of CIDRs and their risk
scores, each tenant's time zone, and the tenant a route's data belongs to.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from wardgate.core.context import CallContext
from wardgate.identity.principal import Principal
from wardgate.policy.decision import Action, PolicyContext, PolicyInput, Resource, Subject
from wardgate.wire.jsonrpc import Message

__all__ = ["USE_METHOD", "InputBuilder", "InputConfig", "RateTracker", "target_kind"]

#: The method that uses an item of each list kind: a list shows what the caller may use.
USE_METHOD = {"tool": "tools/call", "prompt": "prompts/get", "resource": "resources/read"}

_KIND_OF = {
    "tools/call": "tool",
    "prompts/get": "prompt",
    "completion/complete": "prompt",
    "resources/read": "resource",
    "resources/subscribe": "resource",
    "resources/unsubscribe": "resource",
}

_Net = ipaddress.IPv4Network | ipaddress.IPv6Network


def target_kind(method: str) -> str:
    """``tool``, ``prompt``, ``resource`` or ``none`` for an MCP method."""
    return _KIND_OF.get(method, "none")


@dataclass(frozen=True, slots=True)
class InputConfig:
    """What the operator declares for building inputs.

    ``tool_attributes`` maps a tool (unprefixed name) to ``{attribute: argument path}``;
    the path is dotted into ``params.arguments`` (``"customer.tenant"``). The attribute
    ``tenant`` sets ``resource.tenant``: whose data the call reaches. Without it, the
    route's tenant (``route_tenants``), else the caller's own tenant.
    ``risk_table`` pairs CIDRs with scores; the most specific match wins.
    """

    tool_attributes: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    risk_table: Sequence[tuple[str, int]] = ()
    default_risk: int = 0
    tenant_time_zones: Mapping[str, str] = field(default_factory=dict)
    default_time_zone: str = "UTC"
    route_tenants: Mapping[str, str] = field(default_factory=dict)
    groups_claim: str = "groups"
    #: A claim that says ``human`` or ``agent``; without it, SPIFFE and mTLS
    #: workloads and tokens whose subject is their own client are agents.
    kind_claim: str = "wardgate_kind"
    device_claim: str = "device_trusted"
    rate_window_s: float = 60.0
    rate_max_subjects: int = 10_000


class RateTracker:
    """Requests per subject in a sliding window, counted in one-second buckets.

    Bounded twice over: at most ``max_subjects`` subjects (the least recently seen
    is dropped) and at most one bucket per second of the window per subject, however
    fast a subject sends.
    """

    def __init__(self, window_s: float, max_subjects: int, clock: Callable[[], float]) -> None:
        self._window = window_s
        self._max = max_subjects
        self._clock = clock
        self._seen: OrderedDict[str, deque[list[int]]] = OrderedDict()

    def hit(self, key: str) -> int:
        """Count one request for ``key``; return the count in the window, this one included."""
        now = self._clock()
        second = int(now)
        buckets = self._seen.get(key)
        if buckets is None:
            buckets = deque()
            self._seen[key] = buckets
            if len(self._seen) > self._max:
                self._seen.popitem(last=False)
        else:
            self._seen.move_to_end(key)
        horizon = now - self._window
        while buckets and buckets[0][0] <= horizon:
            buckets.popleft()
        if buckets and buckets[-1][0] == second:
            buckets[-1][1] += 1
        else:
            buckets.append([second, 1])
        return sum(count for _, count in buckets)


class InputBuilder:
    """Turns (call context, message) into a :class:`PolicyInput`.

    Raises:
        ValueError: at construction, a malformed CIDR or an unknown time zone.
    """

    def __init__(
        self,
        config: InputConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        rate_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config or InputConfig()
        self._clock = clock
        table = [
            (ipaddress.ip_network(cidr, strict=False), int(s)) for cidr, s in self.config.risk_table
        ]
        # Most specific first, so the first match is the one that wins.
        self._risk: list[tuple[_Net, int]] = sorted(table, key=lambda t: -t[0].prefixlen)
        self._risk_cache: OrderedDict[str, int] = OrderedDict()
        self._zones = {t: ZoneInfo(z) for t, z in self.config.tenant_time_zones.items()}
        self._default_zone = ZoneInfo(self.config.default_time_zone)
        self._rates = RateTracker(
            self.config.rate_window_s, self.config.rate_max_subjects, rate_clock
        )

    # -- the parts --------------------------------------------------------------------

    def subject(self, principal: Principal) -> Subject:
        claims = principal.claims
        groups = claims.get(self.config.groups_claim, ())
        if isinstance(groups, str):
            groups = groups.split()
        kind = claims.get(self.config.kind_claim)
        if kind not in ("human", "agent"):
            workload = principal.method in ("spiffe", "mtls")
            own_client = (
                principal.client_id is not None and principal.subject == principal.client_id
            )
            kind = "agent" if workload or own_client else "human"
        amr = claims.get("amr", ())
        mfa = isinstance(amr, list | tuple) and any(m in ("mfa", "otp", "hwk", "swk") for m in amr)
        return Subject(
            id=principal.subject,
            tenant=principal.tenant,
            kind=str(kind),
            groups=frozenset(str(g) for g in groups if isinstance(g, str)),
            scopes=principal.scopes,
            auth_method=principal.method,
            mfa=mfa,
            device_trusted=claims.get(self.config.device_claim) is True,
        )

    def risk(self, addr: str | None) -> int:
        """The risk score of a client address (unknown or unparsable: the default)."""
        if addr is None:
            return self.config.default_risk
        cached = self._risk_cache.get(addr)
        if cached is not None:
            return cached
        score = self.config.default_risk
        try:
            ip = ipaddress.ip_address(addr.split("%", 1)[0])
        except ValueError:
            return score
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        for net, value in self._risk:
            if ip.version == net.version and ip in net:
                score = value
                break
        self._risk_cache[addr] = score
        if len(self._risk_cache) > 4096:
            self._risk_cache.popitem(last=False)
        return score

    def context(self, ctx: CallContext, *, count: bool = True) -> PolicyContext:
        when = ctx.received_at or self._clock()
        tenant = ctx.principal.tenant
        zone = self._zones.get(tenant, self._default_zone) if tenant else self._default_zone
        local = datetime.fromtimestamp(when, zone)
        key = f"{tenant or ''}\x00{ctx.principal.subject}"
        rate = self._rates.hit(key) if count else 0
        return PolicyContext(
            client_addr=ctx.client_addr,
            risk=self.risk(ctx.client_addr),
            hour=local.hour,
            weekday=local.isoweekday(),
            request_rate=rate,
        )

    def attributes(self, tool: str | None, message: Message) -> dict[str, str]:
        mapping = self.config.tool_attributes.get(tool or "")
        if not mapping:
            return {}
        args = message.params.get("arguments")
        out: dict[str, str] = {}
        for attr, path in mapping.items():
            value = _dig(args, path)
            if isinstance(value, str | int) and not isinstance(value, bool):
                out[attr] = str(value)
        return out

    # -- whole inputs -----------------------------------------------------------------

    def for_request(self, ctx: CallContext, message: Message) -> PolicyInput:
        """The input for one client request (counts it toward the request rate)."""
        method = message.method or ""
        kind = target_kind(method)
        name = (ctx.target or message.target_name) if kind != "none" else None
        attrs = self.attributes(name, message) if kind == "tool" else {}
        return PolicyInput(
            self.subject(ctx.principal),
            Action(method, name, kind, ctx.upstream),
            self._resource(ctx, ctx.upstream, attrs),
            self.context(ctx),
        )

    def for_items(
        self, ctx: CallContext, kind: str, items: Sequence[tuple[str, str | None]]
    ) -> list[PolicyInput]:
        """Inputs asking whether the caller may use each listed ``(name, upstream)``."""
        subject = self.subject(ctx.principal)
        context = self.context(ctx, count=False)
        return [self.item(ctx, subject, context, kind, name, up) for name, up in items]

    def item(
        self,
        ctx: CallContext,
        subject: Subject,
        context: PolicyContext,
        kind: str,
        name: str,
        upstream: str | None,
    ) -> PolicyInput:
        """The input for one list item, with a subject and context built once per list."""
        return PolicyInput(
            subject,
            Action(USE_METHOD[kind], name, kind, upstream),
            self._resource(ctx, upstream, {}),
            context,
        )

    def _resource(self, ctx: CallContext, upstream: str | None, attrs: dict[str, str]) -> Resource:
        tenant = attrs.pop("tenant", None)
        if tenant is None:
            tenant = self.config.route_tenants.get(ctx.route, ctx.principal.tenant)
        return Resource(ctx.route, upstream, tenant, tuple(sorted(attrs.items())))


def _dig(value: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value
