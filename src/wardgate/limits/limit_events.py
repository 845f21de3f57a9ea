"""Events of the abuse controls (the pipeline's ``guard.decision`` covers each refusal;
these say what changed)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from wardgate.telemetry.events import GatewayEvent

__all__ = ["BreakerChanged", "BudgetExhaustedEvent", "LimitsStoreChanged"]


@dataclass(slots=True)
class BudgetExhaustedEvent(GatewayEvent):
    """A call was cut because a monthly budget is spent."""

    kind: ClassVar[str] = "limits.budget_exhausted"
    tenant: str | None
    subject: str
    tool: str | None
    budget: str
    limit_usd: float
    month: str


@dataclass(slots=True)
class BreakerChanged(GatewayEvent):
    """A circuit breaker opened, closed or went half-open (``by``: ``auto`` or ``operator``)."""

    kind: ClassVar[str] = "limits.breaker"
    breaker: str
    state: str
    by: str
    reason: str


@dataclass(slots=True)
class LimitsStoreChanged(GatewayEvent):
    """The shared store failed (``down``) or answers again (``up``): an alert."""

    kind: ClassVar[str] = "limits.store"
    state: str
    mode: str
    detail: str
