"""Abuse controls on shared state: rate limits, cost quotas, concurrency caps and
circuit breakers, counted once across every replica (see docs/limits.md)."""

from __future__ import annotations

from wardgate.limits.build import Limits, build_store
from wardgate.limits.refusals import (
    ArgumentRefused,
    BudgetExhausted,
    ConcurrencyLimited,
    LimitError,
    RateLimited,
    ToolDisabled,
)

__all__ = [
    "ArgumentRefused",
    "BudgetExhausted",
    "ConcurrencyLimited",
    "LimitError",
    "Limits",
    "RateLimited",
    "ToolDisabled",
    "build_store",
]
