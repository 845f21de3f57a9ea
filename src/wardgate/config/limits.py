"""The ``[limits]`` section: rate limits, cost quotas, concurrency caps, circuit breakers
and the state store they share. Off unless configured; see docs/limits.md."""

from __future__ import annotations

import zoneinfo
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from wardgate.config._base import ConfigFault
from wardgate.config._base import StrictModel as _Strict

__all__ = [
    "ArgumentRule",
    "BreakerConfig",
    "BudgetConfig",
    "ConcurrencyConfig",
    "LimitsConfig",
    "PagerConfig",
    "RateConfig",
    "RedisConfig",
    "RouteLimitsConfig",
    "ToolLimitsConfig",
]

KeyPart = Literal["subject", "tenant", "tool", "client_ip"]


class RedisConfig(_Strict):
    """The shared store. TLS: a ``rediss://`` URL and the files below."""

    url: str = "redis://127.0.0.1:6379/0"
    #: Names the deployment: every key starts with it.
    key_prefix: str = Field("wardgate:", min_length=1, max_length=64)
    username: str | None = None
    #: The password is read from this environment variable (never written in the file).
    password_env: str | None = None
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    max_connections: int = Field(64, ge=1, le=10_000)
    socket_timeout_seconds: float = Field(0.5, gt=0, le=30)
    cluster: bool = False

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value


class RateConfig(_Strict):
    """A token bucket: ``burst`` calls at once, refilled at ``requests`` per ``per_seconds``."""

    requests: int = Field(100, ge=1)
    per_seconds: float = Field(60.0, gt=0)
    burst: int = Field(20, ge=1)
    #: What one bucket counts: one per subject by default.
    key: tuple[KeyPart, ...] = ("subject",)


class ConcurrencyConfig(_Strict):
    """Calls in flight at once; 0 means no cap. A call waits up to ``queue_seconds``."""

    per_tool: int = Field(0, ge=0)
    per_subject: int = Field(0, ge=0)
    queue_seconds: float = Field(0.5, ge=0, le=60)
    #: A slot of a replica that died is given back after this long.
    slot_ttl_seconds: float = Field(330.0, gt=0)


class BreakerConfig(_Strict):
    window_seconds: float = Field(60.0, gt=0)
    min_calls: int = Field(20, ge=1)
    error_rate: float = Field(0.10, gt=0, le=1)
    p99_seconds: float = Field(2.0, gt=0)
    open_seconds: float = Field(300.0, gt=0)
    half_open_calls: int = Field(3, ge=1)
    #: The window slides in this many steps (constant work per call, however busy).
    slices: int = Field(10, ge=1, le=120)
    per: tuple[Literal["tool", "upstream"], ...] = ("tool", "upstream")


class ArgumentRule(_Strict):
    """A bound on one argument of a costly tool."""

    required: bool = True
    max: float | None = None
    min: float | None = None


class BudgetConfig(_Strict):
    """Monthly budgets in USD, per tenant (and per subject when set)."""

    #: A tenant's total across tools; ``None``: no overall budget.
    monthly_usd: float | None = Field(None, ge=0)
    #: Each subject's total within its tenant.
    subject_monthly_usd: float | None = Field(None, ge=0)
    #: IANA time zone the calendar month is counted in.
    timezone: str = "UTC"
    tenant_timezones: dict[str, str] = Field(default_factory=dict)
    #: The key of ``result._meta`` where an upstream reports what a call cost (USD).
    cost_meta_key: str = "wardgate.dev/costUsd"

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return _check_zone(value)

    @field_validator("tenant_timezones")
    @classmethod
    def _zones(cls, value: dict[str, str]) -> dict[str, str]:
        for zone in value.values():
            _check_zone(zone)
        return value


def _check_zone(name: str) -> str:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc
    return name


class ToolLimitsConfig(_Strict):
    """Overrides and costs for one tool (keyed by the tool name a client calls)."""

    rate: RateConfig | None = None
    max_cost_usd: float | None = Field(None, ge=0)
    #: Per tenant (and per subject when ``subject_monthly_usd`` is set) for this tool.
    monthly_usd: float | None = Field(None, ge=0)
    concurrency: int | None = Field(None, ge=0)
    arguments: dict[str, ArgumentRule] = Field(default_factory=dict)


class RouteLimitsConfig(_Strict):
    """A route's own limits, in place of the top-level ones."""

    enabled: bool = True
    rate: RateConfig | None = None
    concurrency: ConcurrencyConfig | None = None
    tools: dict[str, ToolLimitsConfig] | None = None


class PagerConfig(_Strict):
    """Where an opened or closed breaker is paged."""

    #: PagerDuty Events API v2 endpoint (``https://events.pagerduty.com/v2/enqueue``).
    pagerduty_url: str | None = None
    pagerduty_routing_key_env: str | None = None
    webhook_url: str | None = None
    #: For tests and sidecars only: lets pages go to loopback over plain http.
    allow_loopback: bool = False
    source: str = "wardgate"


class LimitsConfig(_Strict):
    store: Literal["memory", "redis"] = "memory"
    redis: RedisConfig = RedisConfig()
    #: When the store fails: ``deny`` every limited call (default), or ``local``: count
    #: in this replica's memory until the store answers again.
    on_store_failure: Literal["deny", "local"] = "deny"
    #: How long after a store failure this replica tries the store again.
    store_retry_seconds: float = Field(1.0, gt=0, le=60)
    rate: RateConfig | None = None
    concurrency: ConcurrencyConfig | None = None
    breaker: BreakerConfig | None = None
    budgets: BudgetConfig = BudgetConfig()
    pager: PagerConfig = PagerConfig()
    tools: dict[str, ToolLimitsConfig] = Field(default_factory=dict)
    routes: dict[
        Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")], RouteLimitsConfig
    ] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _budgets_need_costs(self) -> LimitsConfig:
        b = self.budgets
        tools: dict[tuple[str, ...], ToolLimitsConfig] = {
            ("limits", "tools", n): t for n, t in self.tools.items()
        }
        for r, route in self.routes.items():
            for n, t in (route.tools or {}).items():
                tools["limits", "routes", r, "tools", n] = t
        budgeted = b.monthly_usd is not None or b.subject_monthly_usd is not None
        for loc, tool in tools.items():
            if tool.monthly_usd is not None:
                budgeted = True
                if tool.max_cost_usd is None:
                    raise ConfigFault((*loc, "monthly_usd"), "needs max_cost_usd")
        if budgeted and not any(t.max_cost_usd is not None for t in tools.values()):
            raise ConfigFault(("limits", "budgets"), "no tool has a max_cost_usd to count")
        return self
