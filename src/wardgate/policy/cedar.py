"""Cedar in process via ``cedarpy``: the embedded default engine.

At load the schema is parsed, the policies are validated against it (a policy that
fails validation never loads) and linted, and the policy set, schema and static
entities are parsed into cedarpy's reusable handles. A decision then parses only
its own small delta (the subject and the target entities) on top of the static
entities: nothing else is re-parsed per call.

Obligations ride on the determining ``permit`` policies as annotations:
``@max_result_bytes("65536")`` caps the result, ``@redact("ssn,dob")`` redacts
fields. Reasons are the determining policies' ``@id`` (or Cedar's positional id).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib import resources
from typing import Any

import cedarpy

from wardgate.policy.decision import DecisionObligations, PolicyDecision, PolicyInput
from wardgate.policy.engines import (
    DecisionCache,
    PolicyLintError,
    PolicyLoadError,
    evaluate_cached,
    failure_decision,
)
from wardgate.policy.lint import lint_cedar

__all__ = ["NS", "CedarEngine", "default_schema"]

NS = "Wardgate"
_SUBJECT, _TARGET, _GROUP, _UPSTREAM = (
    f"{NS}::{t}" for t in ("Subject", "Target", "Group", "Upstream")
)
_ACTION = f"{NS}::Action"


def default_schema() -> str:
    """The Cedar schema of Wardgate's entity types (shipped in the package)."""
    return resources.files("wardgate.policy").joinpath("schema.cedarschema").read_text("utf-8")


def _target_id(i: PolicyInput) -> str:
    a = i.action
    return f"{i.resource.route}|{a.kind}|{a.upstream or ''}|{a.name or ''}"


def _subject_entity(i: PolicyInput) -> dict[str, Any]:
    s = i.subject
    return {
        "uid": {"type": _SUBJECT, "id": s.id},
        "attrs": {
            "tenant": s.tenant or "",
            "kind": s.kind,
            "scopes": sorted(s.scopes),
            "auth_method": s.auth_method,
            "mfa": s.mfa,
            "device_trusted": s.device_trusted,
        },
        "parents": [{"type": _GROUP, "id": g} for g in sorted(s.groups)],
    }


def _target_entity(i: PolicyInput) -> dict[str, Any]:
    a, r = i.action, i.resource
    return {
        "uid": {"type": _TARGET, "id": _target_id(i)},
        "attrs": {"kind": a.kind, "name": a.name or "", "route": r.route, "tenant": r.tenant or ""},
        "parents": [{"type": _UPSTREAM, "id": a.upstream}] if a.upstream else [],
        "tags": dict(r.attributes),
    }


def _request(i: PolicyInput) -> dict[str, Any]:
    c = i.context
    return {
        "principal": {"type": _SUBJECT, "id": i.subject.id},
        "action": {"type": _ACTION, "id": i.action.method},
        "resource": {"type": _TARGET, "id": _target_id(i)},
        "context": {
            "client_addr": c.client_addr or "",
            "risk": c.risk,
            "hour": c.hour,
            "weekday": c.weekday,
            "request_rate": c.request_rate,
        },
    }


class CedarEngine:
    """Cedar policies, validated, linted and parsed once (see the module docstring).

    Raises:
        PolicyLoadError: at construction, the schema, policies or entities do not
            parse or the policies fail validation against the schema.
        PolicyLintError: at construction, a policy grants every action or resource.
    """

    name = "cedar"

    def __init__(
        self,
        policies: str,
        *,
        entities: str = "[]",
        schema: str | None = None,
        revision: str = "local",
        fail_open: bool = False,
    ) -> None:
        self.revision = revision
        self.fail_open = fail_open
        schema_text = schema if schema is not None else default_schema()
        try:
            self._schema = cedarpy.Schema.from_str(schema_text)
            self._policies = cedarpy.PolicySet.from_str(policies)
        except ValueError as exc:
            raise PolicyLoadError(f"cedar: {exc}") from exc
        if not policies.strip():
            raise PolicyLoadError("cedar: the policy set is empty (nothing would be allowed)")
        checked = cedarpy.validate_policies(policies, self._schema)
        if not checked.validation_passed:
            errors = "; ".join(str(e) for e in checked.errors)
            raise PolicyLoadError(f"cedar: policies fail schema validation: {errors}")
        findings = lint_cedar(self._policies)
        if findings:
            raise PolicyLintError("cedar: " + "; ".join(str(f) for f in findings))
        try:
            self._entities = cedarpy.Entities.from_json_str(entities, self._schema)
        except ValueError as exc:
            raise PolicyLoadError(f"cedar: entities: {exc}") from exc
        self._ids, self._obligations = self._annotations()
        self._cache = DecisionCache()
        self._deltas: dict[tuple[object, ...], cedarpy.Entities] = {}
        # Each kept delta holds the static entities too: fewer when those are many.
        self._max_deltas = max(16, min(4096, 200_000 // (len(self._entities) + 2)))

    def _annotations(self) -> tuple[dict[str, str], dict[str, DecisionObligations]]:
        tree = self._policies.to_pst()
        ids: dict[str, str] = {}
        obligations: dict[str, DecisionObligations] = {}
        for pid, policy in tree.static_policies.items():
            notes = policy.annotations
            ids[pid] = notes.get("id", pid)
            cap, redact = notes.get("max_result_bytes"), notes.get("redact")
            try:
                max_bytes = int(cap) if cap is not None else None
            except ValueError as exc:
                raise PolicyLoadError(f"cedar: policy {ids[pid]}: bad @max_result_bytes") from exc
            fields = frozenset(f.strip() for f in (redact or "").split(",") if f.strip())
            if max_bytes is not None or fields:
                obligations[pid] = DecisionObligations(max_bytes, fields)
        return ids, obligations

    # -- decisions ----------------------------------------------------------------------

    def _decide(self, result: cedarpy.AuthzResult) -> PolicyDecision:
        diagnostics = result.diagnostics
        reasons = tuple(sorted(self._ids.get(p, p) for p in diagnostics.reasons))
        error = "; ".join(str(e) for e in diagnostics.errors) or None
        if not result.allowed:
            return PolicyDecision(
                False,
                reasons or ("default-deny",),
                revision=self.revision,
                engine=self.name,
                error=None if reasons else error,
            )
        obligations = DecisionObligations()
        for pid in diagnostics.reasons:
            extra = self._obligations.get(pid)
            if extra is not None:
                obligations = obligations.merge(extra)
        return PolicyDecision(True, reasons, obligations, self.revision, self.name)

    def _authorize_one(self, i: PolicyInput) -> PolicyDecision:
        # The entity delta (subject and target) of a repeated call is reused: the
        # same caller on the same tool parses nothing at all.
        key = (i.subject, i.action.kind, i.action.name, i.action.upstream, i.resource)
        entities = self._deltas.get(key)
        if entities is None:
            delta = json.dumps([_subject_entity(i), _target_entity(i)])
            entities = self._entities.with_added_json_str(delta)
            if len(self._deltas) >= self._max_deltas:
                for old in list(self._deltas)[: self._max_deltas // 2]:
                    del self._deltas[old]
            self._deltas[key] = entities
        return self._decide(cedarpy.is_authorized(_request(i), self._policies, entities))

    def _authorize(self, inputs: Sequence[PolicyInput]) -> list[PolicyDecision]:
        # One entity per uid: an input whose subject or target differs from one
        # already in this batch under the same uid goes to a batch of its own.
        delta: dict[tuple[str, str], dict[str, Any]] = {}
        now: list[int] = []
        later: list[int] = []
        for k, i in enumerate(inputs):
            pair = (
                ((_SUBJECT, i.subject.id), _subject_entity(i)),
                ((_TARGET, _target_id(i)), _target_entity(i)),
            )
            if any(delta.get(uid, entity) != entity for uid, entity in pair):
                later.append(k)
                continue
            delta.update(pair)
            now.append(k)
        entities = self._entities.with_added_json_str(json.dumps(list(delta.values())))
        requests = [_request(inputs[k]) for k in now]
        results = cedarpy.is_authorized_batch(requests, self._policies, entities)
        out: list[PolicyDecision | None] = [None] * len(inputs)
        for k, result in zip(now, results, strict=True):
            out[k] = self._decide(result)
        if later:
            for k, decision in zip(later, self._authorize([inputs[k] for k in later]), strict=True):
                out[k] = decision
        return [d for d in out if d is not None]

    async def evaluate(self, policy_input: PolicyInput) -> PolicyDecision:
        """Decide one input; a Cedar failure denies (or allows, named fail-open)."""
        try:
            return self._authorize_one(policy_input)
        except Exception as exc:
            return failure_decision(self.name, self.revision, exc, fail_open=self.fail_open)

    async def evaluate_many(self, inputs: Sequence[PolicyInput]) -> list[PolicyDecision]:
        """Decide many inputs in one cedarpy batch, remembering list decisions."""
        if not inputs:
            return []

        async def batch(todo: list[PolicyInput]) -> list[PolicyDecision]:
            try:
                return self._authorize(todo)
            except Exception as exc:
                failed = failure_decision(self.name, self.revision, exc, fail_open=self.fail_open)
                return [failed] * len(todo)

        return await evaluate_cached(inputs, self._cache, batch)
