"""Prometheus metrics from the event stream, with every label bounded.

Labels come only from bounded sets: routes and guards from the config, MCP methods
from the protocol's own list, error codes from Wardgate's (an upstream's JSON-RPC code
is ``jsonrpc``), tool names from what upstreams listed in ``tools/list`` replies (at
most ``max_tools``; past that, and for any name never listed, ``other``), redaction
kinds from the configured secret patterns. A client cannot grow the registry by calling
made-up methods or tools. Subjects and tenants are never labels.

Most series follow the events (:meth:`Metrics.emit`); what the owning components see
without an event comes through small interfaces: the limit guards report breaker states
and money spent (:class:`~wardgate.limits.limit_events.LimitsObserver`), the secret
redactor's counts and the sinks' drop counts are read at collection time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from wardgate.limits.limit_events import BreakerState, BudgetExhaustedEvent
from wardgate.policy.decision_log import PolicyDecided
from wardgate.telemetry.events import (
    AuthFailed,
    CallEnded,
    GatewayEvent,
    GuardDecision,
    UpstreamResult,
)
from wardgate.telemetry.ueba.detect import UebaAlert

if TYPE_CHECKING:
    from wardgate.core.call import Call
    from wardgate.wire.jsonrpc import Message

__all__ = ["Metrics", "ToolListGuard"]

OTHER = "other"
_MCP_METHODS = frozenset(
    {
        "initialize",
        "ping",
        "tools/list",
        "tools/call",
        "resources/list",
        "resources/templates/list",
        "resources/read",
        "resources/subscribe",
        "resources/unsubscribe",
        "prompts/list",
        "prompts/get",
        "completion/complete",
        "logging/setLevel",
        "notifications/initialized",
        "notifications/cancelled",
        "notifications/progress",
        "notifications/roots/list_changed",
        "server/discover",
        "wardgate/listen",
    }
)
_SCOPES = frozenset({"tenant", "tool", "subject"})
_DETECTORS = frozenset(
    {"impossible_travel", "token_continents", "scripting", "new_asn", "first_seen_tool"}
)
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


def _method(method: str | None) -> str:
    return method if method in _MCP_METHODS else OTHER


def _code(code: str | None) -> str:
    if code is None:
        return ""
    # Our codes are a fixed set; an upstream's JSON-RPC code is its own, so one bucket.
    return code if code.startswith("wardgate.") and len(code) <= 64 else "jsonrpc"


_K = TypeVar("_K")
_V = TypeVar("_V")


def _items(table: Mapping[_K, _V]) -> list[tuple[_K, _V]]:
    """A copy of ``table``'s items, safe while the event loop's thread changes it
    (the OTLP exporter collects on a thread of its own)."""
    for _ in range(8):
        try:
            return list(table.items())
        except RuntimeError:  # changed size during the copy: try again
            continue
    return []


class _Dropped(Collector):
    def __init__(self, sources: Mapping[str, Callable[[], int]]) -> None:
        self._sources = sources

    def collect(self) -> Iterable[CounterMetricFamily]:
        family = CounterMetricFamily(
            "wardgate_telemetry_dropped", "Telemetry records dropped, by sink", labels=["sink"]
        )
        for name, read in _items(self._sources):
            family.add_metric([name], float(read()))
        yield family


_BREAKER_STATES: tuple[BreakerState, ...] = ("closed", "open", "half_open")


class _Breakers(Collector):
    """One gauge per breaker and state, 1 for the state it is in (an enum, the Prometheus
    way); an open breaker whose time is up reads half-open."""

    def __init__(self, wall: Callable[[], float]) -> None:
        self.states: dict[tuple[str, str], tuple[BreakerState, float | None]] = {}
        self._wall = wall

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "wardgate_breaker_state",
            "Circuit breaker state by upstream and tool (1: the state it is in)",
            labels=["upstream", "tool", "state"],
        )
        now = self._wall()
        for (upstream, tool), (state, until) in sorted(_items(self.states)):
            if state == "open" and until is not None and now >= until:
                state = "half_open"
            for name in _BREAKER_STATES:
                family.add_metric([upstream, tool, name], 1.0 if name == state else 0.0)
        yield family


class _Sessions(Collector):
    def __init__(self, routes: frozenset[str]) -> None:
        self.read: Callable[[], Mapping[str, int]] | None = None
        self._routes = routes

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "wardgate_sessions", "Handshake sessions this replica holds, by route", labels=["route"]
        )
        counts: dict[str, int] = dict.fromkeys(sorted(self._routes), 0)
        held: Mapping[str, int] = {}
        for _ in range(8):  # the table may change under a collection on another thread
            try:
                held = self.read() if self.read is not None else {}
                break
            except RuntimeError:
                continue
        for route, n in held.items():
            name = route if route in self._routes else OTHER
            counts[name] = counts.get(name, 0) + n
        for route, n in counts.items():
            family.add_metric([route], float(n))
        yield family


class _Redactions(Collector):
    def __init__(self) -> None:
        self.sources: list[Callable[[], Mapping[str, int]]] = []

    def collect(self) -> Iterable[CounterMetricFamily]:
        family = CounterMetricFamily(
            "wardgate_redactions", "Secrets redacted from replies, by kind", labels=["kind"]
        )
        totals: dict[str, int] = {}
        for read in self.sources:
            for kind, n in _items(read()):
                totals[kind] = totals.get(kind, 0) + n
        for kind, n in sorted(totals.items()):
            family.add_metric([kind], float(n))
        yield family


class Metrics:
    """The gateway's metrics; an event sink, plus :class:`ToolListGuard` for tool names.

    ``routes`` and ``guards`` are the configured names (anything else is ``other``).
    """

    def __init__(
        self,
        routes: Iterable[str],
        *,
        max_tools: int = 200,
        registry: CollectorRegistry | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._routes = frozenset(routes)
        self._max_tools = max_tools
        self._tools: set[str] = set()
        self._lock = threading.Lock()
        self._guards: set[str] = set()
        self._dropped_sources: dict[str, Callable[[], int]] = {}
        r = self.registry
        self.calls = Counter(
            "wardgate_calls", "Calls by outcome", ["route", "method", "status"], registry=r
        )
        self.denials = Counter(
            "wardgate_denials", "Denials by guard and code", ["route", "guard", "code"], registry=r
        )
        self.latency = Histogram(
            "wardgate_call_duration_seconds",
            "Call latency",
            ["route", "method", "tool"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_errors = Counter(
            "wardgate_upstream_errors",
            "Upstream failures",
            ["route", "upstream", "status"],
            registry=r,
        )
        self.auth_failures = Counter(
            "wardgate_auth_failures", "Failed authentications", ["route", "cause"], registry=r
        )
        self.policy = Counter(
            "wardgate_policy_decisions",
            "Policy decisions",
            ["route", "engine", "allowed"],
            registry=r,
        )
        self.quota_spend = Counter(
            "wardgate_quota_spend_usd",
            "Money charged to cost budgets (USD), by route and costly tool",
            ["route", "tool"],
            registry=r,
        )
        self.budget_exhausted = Counter(
            "wardgate_budget_exhausted",
            "Calls refused because a monthly budget is spent, by budget scope",
            ["route", "scope"],
            registry=r,
        )
        self.ueba_alerts = Counter(
            "wardgate_ueba_alerts",
            "Behaviour alerts by detector",
            ["route", "detector"],
            registry=r,
        )
        self.registry.register(_Dropped(self._dropped_sources))
        self._breakers = _Breakers(wall_clock)
        self.registry.register(self._breakers)
        self._redactions = _Redactions()
        self.registry.register(self._redactions)
        self._sessions = _Sessions(self._routes)
        self.registry.register(self._sessions)
        self._upstreams: set[str] = set()
        self._cost_tools: set[str] = set()

    # -- bounds ---------------------------------------------------------------------

    def known_guards(self, names: Iterable[str]) -> None:
        self._guards.update(names)

    def known_upstreams(self, names: Iterable[str]) -> None:
        self._upstreams.update(names)

    def known_cost_tools(self, names: Iterable[str]) -> None:
        """The tools with a configured cost (``[limits.tools]`` keys), for the spend label."""
        self._cost_tools.update(names)

    def count_dropped(self, sink: str, read: Callable[[], int]) -> None:
        """Report ``read()`` as the drop count of ``sink`` at every scrape."""
        self._dropped_sources[sink] = read

    def count_sessions(self, read: Callable[[], Mapping[str, int]]) -> None:
        """Report ``read()`` (sessions held, by route) as the sessions gauge at every
        scrape: the table itself, so sweeps and shutdowns count without an event."""
        self._sessions.read = read

    def count_redactions(self, read: Callable[[], Mapping[str, int]]) -> None:
        """Report ``read()`` (totals by kind since start; kinds from the configured
        patterns, a bounded set) as redactions at every scrape."""
        self._redactions.sources.append(read)

    # -- the limits observer (wardgate.limits.limit_events.LimitsObserver) ------------

    def breaker_state(
        self, upstream: str | None, tool: str | None, state: BreakerState, until: float | None
    ) -> None:
        up = upstream if upstream in self._upstreams else OTHER
        name = "" if tool is None else (tool if tool in self._tools else OTHER)
        self._breakers.states[(up, name)] = (state, until)

    def spent(self, route: str | None, tool: str, usd: float) -> None:
        name = tool if tool in self._cost_tools else OTHER
        self.quota_spend.labels(self._route(route), name).inc(usd)

    def learn_tools(self, names: Iterable[str]) -> None:
        with self._lock:
            for name in names:
                if len(self._tools) >= self._max_tools:
                    return
                if isinstance(name, str) and len(name) <= 128:
                    self._tools.add(name)

    def _route(self, route: str | None) -> str:
        return route if route in self._routes else OTHER

    def _tool(self, method: str | None, target: str | None) -> str:
        if method != "tools/call":
            return ""
        return target if target in self._tools else OTHER

    # -- the sink ---------------------------------------------------------------------

    def emit(self, event: GatewayEvent) -> None:
        route = self._route(event.route)
        if isinstance(event, CallEnded):
            method = _method(event.method)
            self.calls.labels(route, method, event.status).inc()
            self.latency.labels(route, method, self._tool(event.method, event.target)).observe(
                event.latency_ms / 1000
            )
        elif isinstance(event, GuardDecision):
            if not event.allowed:
                guard = event.guard if event.guard in self._guards else OTHER
                self.denials.labels(route, guard, _code(event.code)).inc()
        elif isinstance(event, UpstreamResult):
            upstream = event.upstream if event.upstream in self._upstreams else OTHER
            self.upstream_errors.labels(route, upstream, event.status).inc()
        elif isinstance(event, AuthFailed):
            self.auth_failures.labels(route, _code(event.cause)).inc()
        elif isinstance(event, PolicyDecided):
            engine = event.engine if event.engine in ("cedar", "rego", "opa") else OTHER
            self.policy.labels(route, engine, str(event.allowed).lower()).inc()
        elif isinstance(event, BudgetExhaustedEvent):
            # "tenant", "tool=NAME" or "s=SUBJECT": the scope only, never the subject.
            scope = event.budget.partition("=")[0]
            scope = {"s": "subject"}.get(scope, scope)
            self.budget_exhausted.labels(route, scope if scope in _SCOPES else OTHER).inc()
        elif isinstance(event, UebaAlert):
            detector = event.detector if event.detector in _DETECTORS else OTHER
            self.ueba_alerts.labels(route, detector).inc()


class ToolListGuard:
    """Reads tool names from ``tools/list`` replies, so the tool label knows them."""

    name = "metrics-tools"
    methods: frozenset[str] | None = frozenset({"tools/list"})
    fail_open = True  # metrics must never deny

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    async def on_message(self, call: Call, message: Message) -> Message | None:
        if message.kind == "response":
            result: Any = message.raw.get("result")
            tools = result.get("tools") if isinstance(result, dict) else None
            if isinstance(tools, list):
                names = [t.get("name") for t in tools if isinstance(t, dict)]
                self._metrics.learn_tools(n for n in names if isinstance(n, str))
        return message
