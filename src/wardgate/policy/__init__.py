"""Authorization as code: a policy engine decides every call, default deny.

The pieces: :mod:`.model` (the input and the decision), :mod:`.inputs` (built from
the core's call context), :mod:`.engine` (the seam), :mod:`.cedar` (the embedded
default), :mod:`.rego` and :mod:`.opa`, :mod:`.lint`, :mod:`.holder` and
:mod:`.bundle` (the policy in force and its signed bundles), :mod:`.guard`,
:mod:`.runtime` (what the gateway wires), :mod:`.cli` (``wardgate policy``).
Engines with optional dependencies (Cedar, Rego) are imported from their modules.
"""

from __future__ import annotations

from wardgate.policy.decision import (
    Action,
    DecisionObligations,
    PolicyContext,
    PolicyDecision,
    PolicyInput,
    Resource,
    Subject,
)
from wardgate.policy.decision_log import PolicyDecided
from wardgate.policy.engines import (
    BundleRejected,
    DenyAllEngine,
    EngineFailure,
    PolicyEngine,
    PolicyLintError,
    PolicyLoadError,
)
from wardgate.policy.guard import PolicyGuard
from wardgate.policy.holder import PolicyHolder
from wardgate.policy.inputs import InputBuilder, InputConfig
from wardgate.policy.runtime import PolicyRuntime, PolicySettings

__all__ = [
    "Action",
    "BundleRejected",
    "DecisionObligations",
    "DenyAllEngine",
    "EngineFailure",
    "InputBuilder",
    "InputConfig",
    "PolicyContext",
    "PolicyDecided",
    "PolicyDecision",
    "PolicyEngine",
    "PolicyGuard",
    "PolicyHolder",
    "PolicyInput",
    "PolicyLintError",
    "PolicyLoadError",
    "PolicyRuntime",
    "PolicySettings",
    "Resource",
    "Subject",
]
