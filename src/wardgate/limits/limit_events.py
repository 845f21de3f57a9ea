"""Events of the abuse controls (the pipeline's ``guard.decision`` covers each refusal;
these say what changed), and :class:`LimitsObserver`, the small interface through which
the guards report what they see on every call (breaker states, money spent) to metrics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, Protocol

from wardgate.telemetry.events import GatewayEvent

__all__ = [
    "BreakerChanged",
    "BreakerState",
    "BudgetExhaustedEvent",
    "LimitsObserver",
    "LimitsStoreChanged",
]

BreakerState = Literal["closed", "open", "half_open"]


class LimitsObserver(Protocol):
    """Told what the limit guards see; must be cheap and never raise (called per call).

    ``breaker_state``: the state of the breaker of ``tool`` on ``upstream`` (``tool``
    ``None``: the upstream's own breaker) as read from the shared store, with the time an
    open breaker turns half-open (``None``: open until closed by hand). ``spent``: the
    amount a call was charged once its reservation settled.
    """

    def breaker_state(
        self, upstream: str | None, tool: str | None, state: BreakerState, until: float | None
    ) -> None: ...

    def spent(self, route: str | None, tool: str, usd: float) -> None: ...


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
