"""Assemble the abuse controls from ``[limits]``: one store, one pager, guards per route.

The guards' order within the limit stage: rate limit first (a flood is refused before
it costs anything else), then the breaker, argument bounds, concurrency, and the cost
reservation last (nothing is reserved for a call that another limit refuses). End hooks
run in reverse: the reservation is settled, the slot released, the sample recorded.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from wardgate.config.limits import ConcurrencyConfig, LimitsConfig, RedisConfig
from wardgate.core.pipeline import Guard
from wardgate.errors import ConfigError
from wardgate.limits.breaker import BreakerGuard
from wardgate.limits.concurrency import ConcurrencyGuard
from wardgate.limits.fallback import FallbackStore
from wardgate.limits.limit_events import LimitsObserver
from wardgate.limits.pager import Pager
from wardgate.limits.quota import ArgumentGuard, CostQuotaGuard
from wardgate.limits.rate import RateLimitGuard
from wardgate.state.memory import MemoryStateStore
from wardgate.state.redis_store import RedisOptions, RedisStateStore
from wardgate.state.store import StateStore
from wardgate.telemetry.events import EventBus

__all__ = ["Limits", "build_store"]


def build_store(config: LimitsConfig) -> StateStore:
    """The configured shared store (not started).

    Raises:
        ConfigError: the Redis password variable is named but not set.
    """
    if config.store == "memory":
        return MemoryStateStore()
    r: RedisConfig = config.redis
    password = None
    if r.password_env is not None:
        password = os.environ.get(r.password_env)
        if password is None:
            raise ConfigError(f"limits.redis.password_env: ${r.password_env} is not set")
    return RedisStateStore(
        r.url,
        key_prefix=r.key_prefix,
        socket_timeout=r.socket_timeout_seconds,
        options=RedisOptions(
            username=r.username,
            password=password,
            tls_ca_file=r.tls_ca_file,
            tls_cert_file=r.tls_cert_file,
            tls_key_file=r.tls_key_file,
            max_connections=r.max_connections,
            cluster=r.cluster,
        ),
    )


class Limits:
    """The store, the pager and the guards of every route; ``observer`` (metrics) is told
    the breaker states and the money spent."""

    def __init__(
        self,
        config: LimitsConfig,
        events: EventBus,
        *,
        store: StateStore | None = None,
        wall_clock: Callable[[], float] = time.time,
        pager: Pager | None = None,
        observer: LimitsObserver | None = None,
    ) -> None:
        """Raises:
        ConfigError: see :func:`build_store`.
        """
        self.config = config
        self.events = events
        self.store = FallbackStore(
            store if store is not None else build_store(config),
            mode=config.on_store_failure,
            retry_seconds=config.store_retry_seconds,
            events=events,
        )
        self.pager = pager or Pager(config.pager)
        self._wall = wall_clock
        self._observer = observer

    def guards_for(self, route: str) -> list[Guard]:
        """The limit guards of ``route``, in order (empty when nothing applies)."""
        c = self.config
        override = c.routes.get(route)
        if override is not None and not override.enabled:
            return []
        rate = override.rate if override is not None and override.rate is not None else c.rate
        concurrency = (
            override.concurrency
            if override is not None and override.concurrency is not None
            else c.concurrency
        )
        tools = override.tools if override is not None and override.tools is not None else c.tools
        guards: list[Guard] = []
        tool_rates = {n: t.rate for n, t in tools.items() if t.rate is not None}
        if rate is not None or tool_rates:
            guards.append(RateLimitGuard(self.store, route, rate, tool_rates))
        if c.breaker is not None:
            guards.append(
                BreakerGuard(
                    self.store,
                    c.breaker,
                    self.pager,
                    self.events,
                    wall_clock=self._wall,
                    observer=self._observer,
                )
            )
        rules = {n: t.arguments for n, t in tools.items() if t.arguments}
        if rules:
            guards.append(ArgumentGuard(rules))
        caps = {n: t.concurrency for n, t in tools.items() if t.concurrency is not None}
        if concurrency is not None or caps:
            guards.append(
                ConcurrencyGuard(self.store, route, concurrency or ConcurrencyConfig(), caps)
            )
        if any(t.max_cost_usd is not None for t in tools.values()):
            guards.append(
                CostQuotaGuard(
                    self.store, c.budgets, tools, wall_clock=self._wall, observer=self._observer
                )
            )
        return guards

    async def start(self) -> None:
        await self.store.start()

    async def aclose(self) -> None:
        await self.pager.aclose()
        await self.store.aclose()
