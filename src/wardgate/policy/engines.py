"""The engine seam: one small Protocol, a deny-everything default, the failure rule.

Error tree (the policy package's additions to :mod:`wardgate.errors`)::

    ConfigError                        wardgate.config
    └── PolicyLoadError                wardgate.policy.load     a policy set will not load
        ├── PolicyLintError            wardgate.policy.lint     a wildcard grant without exception
        └── BundleRejected             wardgate.policy.bundle   bad signature, archive, content
    WardgateError
    └── EngineFailure                  wardgate.policy.engine   error, timeout, unreachable

An engine that fails answers with :func:`failure_decision`: a deny carrying the error,
unless the operator named ``fail_open`` for it, which allows and logs every time.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, runtime_checkable

from wardgate.errors import ConfigError, WardgateError
from wardgate.policy.decision import PolicyDecision, PolicyInput

__all__ = [
    "BundleRejected",
    "DecisionCache",
    "DenyAllEngine",
    "EngineFailure",
    "PolicyEngine",
    "PolicyLintError",
    "PolicyLoadError",
    "evaluate_cached",
    "failure_decision",
]

log = logging.getLogger("wardgate.policy")


class PolicyLoadError(ConfigError):
    """A policy set failed to parse, validate against its schema, or load."""

    code = "wardgate.policy.load"


class PolicyLintError(PolicyLoadError):
    """A policy grants every action or every resource and is not an audited exception."""

    code = "wardgate.policy.lint"


class BundleRejected(PolicyLoadError):
    """A bundle failed to verify, unpack, parse or lint; the one in force stays."""

    code = "wardgate.policy.bundle"


class EngineFailure(WardgateError):
    """The engine errored, timed out or was unreachable (the call is denied)."""

    code = "wardgate.policy.engine"


@runtime_checkable
class PolicyEngine(Protocol):
    """Answers policy inputs. ``evaluate_many`` answers in input order (list filtering).

    Engines never raise for a decision: a failure is a deny (see
    :func:`failure_decision`). ``revision`` names the policy set in force.
    """

    name: str
    revision: str

    async def evaluate(self, policy_input: PolicyInput) -> PolicyDecision: ...

    async def evaluate_many(self, inputs: Sequence[PolicyInput]) -> list[PolicyDecision]: ...


class DenyAllEngine:
    """No policy: nothing is allowed (the default before a policy set is loaded)."""

    name = "none"
    revision = "none"

    async def evaluate(self, policy_input: PolicyInput) -> PolicyDecision:
        return PolicyDecision.deny("no-policy", revision=self.revision, engine=self.name)

    async def evaluate_many(self, inputs: Sequence[PolicyInput]) -> list[PolicyDecision]:
        return [await self.evaluate(i) for i in inputs]


def failure_decision(
    engine: str, revision: str, exc: BaseException, *, fail_open: bool
) -> PolicyDecision:
    """What a failed evaluation answers: deny, or allow when ``fail_open`` is named.

    Either way the failure is logged; the error travels in the decision (and so in
    the decision event), never to the client.
    """
    error = f"{type(exc).__name__}: {exc}"
    if fail_open:
        log.warning("policy engine %s failed, FAIL-OPEN allows: %s", engine, error)
        return PolicyDecision(
            True, ("engine-failure-fail-open",), revision=revision, engine=engine, error=error
        )
    log.error("policy engine %s failed, denying: %s", engine, error)
    return PolicyDecision.deny("engine-failure", revision=revision, engine=engine, error=error)


class DecisionCache:
    """A bounded memo of decisions for list filtering, per engine (so per revision).

    List items are evaluated with a context that does not change from list to list
    for the same caller and hour (no request rate), so a second ``tools/list`` costs
    dictionary lookups. Decisions are pure functions of the input and the policy set.
    """

    __slots__ = ("_items", "_max")

    def __init__(self, max_entries: int = 20_000) -> None:
        self._items: dict[PolicyInput, PolicyDecision] = {}
        self._max = max_entries

    def get(self, key: PolicyInput) -> PolicyDecision | None:
        return self._items.get(key)

    def put(self, key: PolicyInput, decision: PolicyDecision) -> None:
        if decision.error is not None:
            return  # a failure is never remembered
        if len(self._items) >= self._max:
            # Drop the oldest half: cheap, and bounded whatever the callers send.
            for old in list(self._items)[: self._max // 2]:
                del self._items[old]
        self._items[key] = decision


async def evaluate_cached(
    inputs: Sequence[PolicyInput],
    cache: DecisionCache,
    evaluate_batch: Callable[[list[PolicyInput]], Awaitable[list[PolicyDecision]]],
) -> list[PolicyDecision]:
    """Answer ``inputs`` from ``cache``, evaluating only the misses in one batch."""
    out: list[PolicyDecision | None] = [cache.get(i) for i in inputs]
    missing = [k for k, d in enumerate(out) if d is None]
    if missing:
        fresh = await evaluate_batch([inputs[k] for k in missing])
        for k, decision in zip(missing, fresh, strict=True):
            out[k] = decision
            cache.put(inputs[k], decision)
    return [d for d in out if d is not None]
