"""Rego in process via ``regopy`` (Microsoft's rego-cpp).

The modules and data are compiled once, at load, into a regopy bundle with the
decision rule as its entrypoint; a decision sets the input and runs the compiled
entrypoint (no re-parse, no re-compile). A module that does not compile, a lint
finding, or a probe evaluation that fails refuses the whole set at load.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import regopy

from wardgate.policy._document import decision_from_document
from wardgate.policy.decision import (
    Action,
    PolicyContext,
    PolicyDecision,
    PolicyInput,
    Resource,
    Subject,
)
from wardgate.policy.engines import (
    DecisionCache,
    PolicyLintError,
    PolicyLoadError,
    evaluate_cached,
    failure_decision,
)
from wardgate.policy.lint import lint_rego

__all__ = ["DEFAULT_ENTRYPOINT", "RegoEngine"]

DEFAULT_ENTRYPOINT = "wardgate/authz/decision"

_PROBE = PolicyInput(
    Subject("wardgate-probe"), Action("ping"), Resource("probe"), PolicyContext()
).to_json()


class RegoEngine:
    """Rego modules compiled once (see the module docstring).

    Raises:
        PolicyLoadError: at construction, a module or the data fails to load, or the
            decision rule does not evaluate.
        PolicyLintError: at construction, a rule allows everything.
    """

    name = "rego"

    def __init__(
        self,
        modules: Mapping[str, str],
        *,
        data: str = "{}",
        entrypoint: str = DEFAULT_ENTRYPOINT,
        revision: str = "local",
        fail_open: bool = False,
    ) -> None:
        self.revision = revision
        self.fail_open = fail_open
        self._entrypoint = entrypoint
        if not modules:
            raise PolicyLoadError("rego: no modules (nothing would be allowed)")
        findings = [f for name, src in modules.items() for f in lint_rego(src, name)]
        if findings:
            raise PolicyLintError("rego: " + "; ".join(str(f) for f in findings))
        self._rego = regopy.Interpreter()
        try:
            for name, source in sorted(modules.items()):
                self._rego.add_module(name, source)
            self._rego.add_data_json(data)
            self._bundle = self._rego.build(None, [entrypoint])
        except regopy.RegoError as exc:
            raise PolicyLoadError(f"rego: {exc}") from exc
        try:
            self._query(_PROBE)
        except Exception as exc:
            raise PolicyLoadError(f"rego: the decision rule does not evaluate: {exc}") from exc
        self._cache = DecisionCache()

    def _query(self, document: Mapping[str, object]) -> object:
        # set_input and the query run with no await between them: one decision at a
        # time on this interpreter, so inputs never cross.
        self._rego.set_input(regopy.Input(dict(document)))
        output = self._rego.query_bundle_entrypoint(self._bundle, self._entrypoint)
        if not output.ok():
            raise RuntimeError(f"rego evaluation failed: {str(output)[:300]}")
        text = str(output)
        if text == "undefined":
            return None
        parsed = json.loads(text)
        expressions = parsed.get("expressions") if isinstance(parsed, dict) else None
        return expressions[0] if expressions else None

    def _decide(self, policy_input: PolicyInput) -> PolicyDecision:
        try:
            doc = self._query(policy_input.to_json())
        except Exception as exc:
            return failure_decision(self.name, self.revision, exc, fail_open=self.fail_open)
        return decision_from_document(doc, engine=self.name, revision=self.revision)

    async def evaluate(self, policy_input: PolicyInput) -> PolicyDecision:
        """Decide one input; a Rego failure denies (or allows, named fail-open)."""
        return self._decide(policy_input)

    async def evaluate_many(self, inputs: Sequence[PolicyInput]) -> list[PolicyDecision]:
        """Decide many inputs, remembering list decisions (regopy has no batch call)."""

        async def batch(todo: list[PolicyInput]) -> list[PolicyDecision]:
            return [self._decide(i) for i in todo]

        return await evaluate_cached(inputs, self._cache, batch)
