"""Assemble the ``[telemetry]`` section: sinks for the bus, guards for the routes, the
operations listener, and their lifecycle. ``Gateway`` holds one :class:`Telemetry`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from wardgate.config.telemetry import TelemetryConfig
from wardgate.errors import ConfigError
from wardgate.telemetry.events import EventSink
from wardgate.telemetry.ops_listener import Check, OpsListener

if TYPE_CHECKING:
    from wardgate.telemetry.audit import AuditSink
    from wardgate.telemetry.metrics import Metrics
    from wardgate.telemetry.otlp_metrics import OtlpMetrics
    from wardgate.telemetry.siem import Forwarder
    from wardgate.telemetry.tracing import Tracing

__all__ = ["Telemetry"]

log = logging.getLogger("wardgate.telemetry")


class Telemetry:
    """Everything ``[telemetry]`` configures; construction does no I/O.

    Raises:
        ConfigError: a part needs an extra that is not installed, or a key is unreadable.
    """

    def __init__(
        self,
        config: TelemetryConfig,
        routes: Iterable[str],
        *,
        span_exporter: Any = None,
        metric_exporter: Any = None,
    ) -> None:
        self.config = config
        self.audit: AuditSink | None = None
        self.tracing: Tracing | None = None
        self.metrics: Metrics | None = None
        self.listener: OpsListener | None = None
        from wardgate.telemetry.siem import build_forwarder

        self.forwarders = [build_forwarder(sink) for sink in config.sinks]
        self.ueba_guard: Any = None
        if config.ueba is not None:
            from wardgate.state import MemoryStateStore
            from wardgate.telemetry.ueba import GeoIp2Fast, Ueba, UebaGuard

            geo: Any = None
            if config.ueba.geoip == "geoip2fast":
                try:
                    geo = GeoIp2Fast()
                except ImportError:
                    raise ConfigError("telemetry.ueba.geoip needs 'wardgate[geoip]'") from None
            # Memory until attach() finds the shared [limits] store.
            self.ueba_guard = UebaGuard(Ueba(config.ueba, MemoryStateStore(), geo))
        if config.audit is not None:
            from wardgate.telemetry.audit import AuditSink, load_private_key

            a = config.audit
            try:
                key = load_private_key(a.signing_key_file)
            except (OSError, ValueError) as exc:
                raise ConfigError(f"telemetry.audit.signing_key_file: {exc}") from None
            self.audit = AuditSink(
                a.path,
                key,
                kinds=a.kinds,
                queue_size=a.queue_size,
                seal_every=a.seal_every_records,
                seal_seconds=a.seal_interval_seconds,
                max_bytes=a.max_file_bytes,
                fsync=a.fsync,
            )
        if config.tracing is not None:
            try:
                from wardgate.telemetry.tracing import Tracing
            except ImportError:
                raise ConfigError("telemetry.tracing needs: pip install 'wardgate[otel]'") from None
            from wardgate.content.redactor import Redactor

            self.tracing = Tracing(config.tracing, exporter=span_exporter, redactor=Redactor())
        self.otlp_metrics: OtlpMetrics | None = None
        if config.metrics_port is not None or config.otlp_metrics is not None:
            try:
                from wardgate.telemetry.metrics import Metrics
            except ImportError:
                what = "metrics_port" if config.metrics_port is not None else "otlp_metrics"
                raise ConfigError(f"telemetry.{what} needs 'wardgate[metrics]'") from None
            self.metrics = Metrics(routes, max_tools=config.max_tool_labels)
        if config.otlp_metrics is not None and self.metrics is not None:
            try:
                from wardgate.telemetry.otlp_metrics import OtlpMetrics
            except ImportError:
                raise ConfigError("telemetry.otlp_metrics needs 'wardgate[otel]'") from None
            self.otlp_metrics = OtlpMetrics(
                config.otlp_metrics, self.metrics.registry, exporter=metric_exporter
            )
            otlp = self.otlp_metrics
            self.metrics.count_dropped("otlp_metrics", lambda: otlp.dropped)
        if config.metrics_port is not None and self.metrics is not None:
            self.listener = OpsListener(
                config.metrics_host, config.metrics_port, self.metrics.registry
            )
            if self.audit is not None:
                audit = self.audit
                self.metrics.count_dropped("audit", lambda: audit.dropped)
                self.add_check("audit", self._audit_ready)
            if self.tracing is not None:
                tracing = self.tracing
                self.metrics.count_dropped("otlp", lambda: tracing.dropped)
            for fwd in self.forwarders:
                self.metrics.count_dropped(f"siem:{fwd.name}", _dropped_of(fwd))
                self.add_check(f"sink:{fwd.name}", _healthy_of(fwd))

    @property
    def sinks(self) -> list[EventSink]:
        out: list[EventSink] = []
        for sink in (self.audit, self.metrics, self.tracing):
            if sink is not None:
                out.append(sink)
        out.extend(self.forwarders)
        return out

    def first_guards(self) -> list[Any]:
        """Guards that go first in every route (the call span)."""
        out: list[Any] = [self.tracing.guards()[0]] if self.tracing is not None else []
        if self.ueba_guard is not None:
            out.append(self.ueba_guard)
        return out

    def last_guards(self) -> list[Any]:
        """Guards that go last in every route (the upstream span, tool names for metrics)."""
        out: list[Any] = []
        if self.metrics is not None:
            from wardgate.telemetry.metrics import ToolListGuard

            out.append(ToolListGuard(self.metrics))
        if self.tracing is not None:
            out.append(self.tracing.guards()[1])
        return out

    def attach(self, gateway: Any) -> None:
        """Learn the gateway's guard and upstream names (metric label bounds) and add
        readiness checks for what its config needs (the shared state store)."""
        if self.metrics is not None:
            self.metrics.known_guards(
                g.name for route in gateway.routes.values() for g in route.pipeline.guards
            )
            self.metrics.known_upstreams(gateway.upstreams)
            limits_config = getattr(getattr(gateway, "limits", None), "config", None)
            if limits_config is not None:
                self.metrics.known_cost_tools(
                    name
                    for tools in (
                        limits_config.tools,
                        *(r.tools or {} for r in limits_config.routes.values()),
                    )
                    for name, t in tools.items()
                    if t.max_cost_usd is not None
                )
            sessions = getattr(gateway, "sessions", None)
            if sessions is not None:
                self.metrics.count_sessions(sessions.by_route)
            redactor = getattr(getattr(gateway, "guards", None), "redactor", None)
            if redactor is not None:
                counts = redactor.counts
                self.metrics.count_redactions(lambda: counts)
        limits = getattr(gateway, "limits", None)
        if limits is not None and self.ueba_guard is not None:
            from wardgate.telemetry.ueba import Ueba

            old = self.ueba_guard.ueba
            self.ueba_guard.ueba = Ueba(old.config, limits.store, old._geo)
        if self.ueba_guard is not None:
            self.ueba_guard.end_session = _session_ender(gateway)
        # The policy engine: a policy set loaded (not the deny-all stand-in).
        runtime = getattr(getattr(gateway, "guards", None), "policy", None)
        if runtime is not None:
            self.add_check("policy", _policy_loaded(runtime))
        # Identity key sets: each issuer's JWKS fetched, and not older than twice its
        # refresh period (a JWKS endpoint that stopped answering shows here first).
        jwt = getattr(getattr(gateway, "auth", None), "_jwt", None)
        for issuer, cache in (getattr(jwt, "_keys", None) or {}).items():
            self.add_check(f"jwks:{issuer}", _jwks_fresh(cache))
        if limits is not None:
            # Ask the backend itself: a fallback store answers locally while it is down.
            store = getattr(limits.store, "primary", limits.store)

            async def store_ready() -> str | None:
                await store.now()
                return None

            self.add_check("state_store", store_ready)

    def add_check(self, name: str, check: Check) -> None:
        """A readiness check for ``/readyz`` (ignored without a listener)."""
        if self.listener is not None:
            self.listener.add_check(name, check)

    async def _audit_ready(self) -> str | None:
        audit = self.audit
        if audit is None or audit.alive:
            return None
        return "audit writer is not running"

    async def start(self) -> None:
        """Open the audit trail and bind the listener.

        Raises:
            OSError: the audit file or the listener's port cannot be opened.
        """
        if self.audit is not None:
            await asyncio.to_thread(self.audit.start)
        geo = self.ueba_guard.ueba._geo if self.ueba_guard is not None else None
        if geo is not None and hasattr(geo, "load"):
            await asyncio.to_thread(geo.load)  # the database, before the first call
        for fwd in self.forwarders:
            await fwd.start()
        if self.listener is not None:
            await self.listener.start()
        if self.otlp_metrics is not None:
            self.otlp_metrics.start()

    async def aclose(self) -> None:
        for fwd in self.forwarders:
            await fwd.aclose()
        if self.listener is not None:
            await self.listener.aclose()
        if self.otlp_metrics is not None:
            await asyncio.to_thread(self.otlp_metrics.shutdown)
        if self.tracing is not None:
            await asyncio.to_thread(self.tracing.shutdown)
        if self.audit is not None:
            await asyncio.to_thread(self.audit.close)


def _session_ender(gateway: Any) -> Callable[[str, str], Awaitable[None]]:
    """Ends a session this replica holds, as a DELETE would: the sealed id revoked
    fleet-wide first, then the session taken out of the table and closed upstream."""

    async def end(route: str, session_id: str) -> None:
        session = gateway.sessions.get(session_id)
        owner = gateway.routes.get(route)
        if session is None or owner is None or session.route != route:
            return
        await gateway.sessions.revoke(session)
        await owner.end_session(session, "revoked")

    return end


def _dropped_of(fwd: Forwarder) -> Callable[[], int]:
    return lambda: fwd.dropped


def _healthy_of(fwd: Forwarder) -> Check:
    async def check() -> str | None:
        return None if fwd.healthy else f"delivery failing; {fwd.pending} pending in spool"

    return check


def _jwks_fresh(cache: Any) -> Check:
    async def check() -> str | None:
        fetched = cache.fetched_at
        if fetched is None:
            return "key set never fetched"
        age = cache._clock() - fetched
        if age > 2 * cache._ttl:
            return f"key set is {age:.0f} s old"
        return None

    return check


def _policy_loaded(runtime: Any) -> Check:
    async def check() -> str | None:
        from wardgate.policy.engines import DenyAllEngine

        if isinstance(runtime.holder.engine, DenyAllEngine):
            return "no policy set loaded"
        return None

    return check
