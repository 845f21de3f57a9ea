"""Cost quotas (denial of wallet) and argument guards for costly tools.

Before a ``tools/call`` to a tool with a ``max_cost_usd``, the guard reserves that
amount against every budget that applies (the tenant's overall and per-tool monthly
budgets, the subject's when set), all or nothing in one store decision; a budget that
would overflow refuses the call (:class:`BudgetExhausted`, a ``limits.budget_exhausted``
event). At the end of the call the reservation is settled: to the cost the upstream
reported in ``result._meta`` (``budgets.cost_meta_key``), released when the call never
reached the upstream (denied by a later guard), and otherwise kept (a timeout or a
client that went away may still have cost the full amount). Amounts are counted in
micro-dollars, as integers, so that no rounding drifts.

Months are calendar months in the tenant's time zone, from the injected wall clock.
"""

from __future__ import annotations

import math
import time
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from wardgate.config.limits import ArgumentRule, BudgetConfig, ToolLimitsConfig
from wardgate.core.call import Call, Outcome
from wardgate.limits.fallback import part
from wardgate.limits.limit_events import BudgetExhaustedEvent, LimitsObserver
from wardgate.limits.rate import tool_entry
from wardgate.limits.refusals import ArgumentRefused, BudgetExhausted
from wardgate.state.store import StateStore
from wardgate.wire.jsonrpc import Message

__all__ = ["ArgumentGuard", "CostQuotaGuard", "month_window", "to_micros"]

_MICROS = 1_000_000
#: Counters outlive their month by this long (for reports), then expire.
_KEEP_SECONDS = 35 * 86_400


def to_micros(usd: float) -> int:
    return math.ceil(usd * _MICROS)


def month_window(now: float, zone: zoneinfo.ZoneInfo) -> tuple[str, float]:
    """The calendar month of ``now`` in ``zone`` (``YYYY-MM``) and the seconds left in it."""
    local = datetime.fromtimestamp(now, zone)
    start_next = (
        datetime(local.year + 1, 1, 1, tzinfo=zone)
        if local.month == 12
        else datetime(local.year, local.month + 1, 1, tzinfo=zone)
    )
    return f"{local.year:04d}-{local.month:02d}", max(0.0, start_next.timestamp() - now)


class ArgumentGuard:
    """Refuses a call to a costly tool whose bounding argument is missing or too large."""

    name = "argument_bounds"
    methods: frozenset[str] | None = frozenset({"tools/call"})
    fail_open = False

    def __init__(self, rules: Mapping[str, Mapping[str, ArgumentRule]]) -> None:
        self._rules = {tool: dict(r) for tool, r in rules.items() if r}

    async def on_request(self, call: Call, message: Message) -> Message:
        """Raises:
        ArgumentRefused: a required argument is absent, not a number, or out of bounds.
        """
        entry = tool_entry(self._rules, call.ctx.upstream, call.ctx.target)
        if entry is None:
            return message
        params = message.raw.get("params")
        args = params.get("arguments") if isinstance(params, dict) else None
        args = args if isinstance(args, dict) else {}
        for name, rule in self._rules[entry].items():
            value = args.get(name)
            if value is None:
                if rule.required:
                    raise ArgumentRefused(f"{entry}: argument {name} is required")
                continue
            if isinstance(value, str):
                # BigQuery's maximum_bytes_billed is an int64 sent as a string.
                try:
                    value = int(value)
                except ValueError:
                    raise ArgumentRefused(f"{entry}: argument {name} is not a number") from None
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ArgumentRefused(f"{entry}: argument {name} is not a number")
            if not math.isfinite(value):
                raise ArgumentRefused(f"{entry}: argument {name} is not finite")
            if rule.max is not None and value > rule.max:
                raise ArgumentRefused(f"{entry}: argument {name}={value} above {rule.max}")
            if rule.min is not None and value < rule.min:
                raise ArgumentRefused(f"{entry}: argument {name}={value} below {rule.min}")
        return message


@dataclass(slots=True)
class _Reservation:
    entry: str
    tag: str
    names: tuple[str, ...]
    amount: int
    ttl: float
    actual: int | None = None


class CostQuotaGuard:
    """Reserves a tool's ``max_cost_usd`` against the monthly budgets; see the module."""

    name = "cost_quota"
    methods: frozenset[str] | None = frozenset({"tools/call"})
    fail_open = False

    def __init__(
        self,
        store: StateStore,
        budgets: BudgetConfig,
        tools: Mapping[str, ToolLimitsConfig],
        *,
        wall_clock: Callable[[], float] = time.time,
        observer: LimitsObserver | None = None,
    ) -> None:
        self._store = store
        self._observer = observer
        self._budgets = budgets
        self._tools = {n: t for n, t in tools.items() if t.max_cost_usd is not None}
        self._wall = wall_clock
        self._zones: dict[str | None, zoneinfo.ZoneInfo] = {
            tenant: zoneinfo.ZoneInfo(z) for tenant, z in budgets.tenant_timezones.items()
        }
        self._default_zone = zoneinfo.ZoneInfo(budgets.timezone)

    async def on_request(self, call: Call, message: Message) -> Message:
        """Raises:
        BudgetExhausted: a budget this call counts against is spent.
        StateStoreUnavailable: the store failed (deny).
        """
        ctx = call.ctx
        entry = tool_entry(self._tools, ctx.upstream, ctx.target)
        if entry is None:
            return message
        tool = self._tools[entry]
        b = self._budgets
        tenant, subject = ctx.principal.tenant, ctx.principal.subject
        names: list[str] = []
        limits: list[float] = []
        if b.monthly_usd is not None:
            names.append("tenant")
            limits.append(b.monthly_usd)
        if tool.monthly_usd is not None:
            names.append("tool=" + part(entry))
            limits.append(tool.monthly_usd)
        if b.subject_monthly_usd is not None:
            names.append("s=" + part(subject))
            limits.append(b.subject_monthly_usd)
        if not names:
            return message
        month, left = month_window(self._wall(), self._zones.get(tenant, self._default_zone))
        tag = f"budget:t={part(tenant)}:{month}"
        amount = to_micros(tool.max_cost_usd or 0.0)
        ttl = left + _KEEP_SECONDS
        over = await self._store.counters_reserve(
            tag, names, amount, [to_micros(x) for x in limits], ttl
        )
        if over >= 0:
            call.pipeline.events.emit(
                BudgetExhaustedEvent(
                    ctx.decision_id,
                    ctx.route,
                    tenant,
                    subject,
                    entry,
                    names[over],
                    limits[over],
                    month,
                )
            )
            raise BudgetExhausted(
                f"budget {names[over]} of tenant {tenant} spent for {month}", retry_after=left
            )
        call.state[self.name] = _Reservation(entry, tag, tuple(names), amount, ttl)
        return message

    async def on_message(self, call: Call, message: Message) -> Message | None:
        """Note the cost the upstream reported, if any (the final response only)."""
        reservation = call.state.get(self.name)
        if reservation is None or message.kind != "response":
            return message
        result = message.raw.get("result")
        meta = result.get("_meta") if isinstance(result, dict) else None
        cost = meta.get(self._budgets.cost_meta_key) if isinstance(meta, dict) else None
        if isinstance(cost, int | float) and not isinstance(cost, bool) and math.isfinite(cost):
            reservation.actual = to_micros(max(0.0, float(cost)))
        return message

    async def on_end(self, call: Call, outcome: Outcome) -> None:
        """Settle the reservation (see the module docstring)."""
        reservation: _Reservation | None = call.state.get(self.name)
        if reservation is None:
            return
        if outcome.status == "denied" and outcome.messages == 0:
            delta = -reservation.amount
        elif reservation.actual is not None:
            delta = reservation.actual - reservation.amount
        else:
            delta = 0
        if delta:
            await self._store.counters_add(
                reservation.tag, reservation.names, delta, reservation.ttl
            )
        charged = reservation.amount + delta
        if charged and self._observer is not None:
            self._observer.spent(call.ctx.route, reservation.entry, charged / _MICROS)
