"""The policy guard: every call asks the policy in force; every list shows only what
the caller may use.

Request phase: build the input, evaluate, emit a :class:`PolicyDecided` event. A deny
raises :class:`~wardgate.errors.Denied`; when the denied target is also one the caller
cannot see (it would be filtered out of its list), :class:`~wardgate.errors.UnknownTarget`
instead, so a hidden tool and an absent one get the same answer. An allow with
obligations tightens ``call.obligations`` for the reply phase.

Reply phase (the list methods): the items of a list result are decided in one batch
and the ones the caller may not use are removed. Items are decided for the method that
would use them (``tools/call`` for a tool), without the request rate (a list is not a
use). Client notifications and client answers to server requests pass (the core
scopes them to their sender), but the standalone stream (``wardgate/listen``) is
decided like any call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from wardgate.core.call import LISTEN, Call
from wardgate.errors import Denied, UnknownTarget
from wardgate.policy.decision import PolicyDecision, PolicyInput
from wardgate.policy.decision_log import PolicyDecided, redact_input
from wardgate.policy.engines import PolicyEngine
from wardgate.policy.holder import PolicyHolder
from wardgate.policy.inputs import InputBuilder
from wardgate.routing.federation import split_name
from wardgate.wire.jsonrpc import Message

__all__ = ["LIST_ITEMS", "NameResolver", "PolicyGuard", "federated_names"]

#: Result keys of list methods: (policy kind, field naming the item).
LIST_ITEMS: dict[str, tuple[str, str]] = {
    "tools": ("tool", "name"),
    "prompts": ("prompt", "name"),
    "resources": ("resource", "uri"),
    "resourceTemplates": ("resource", "name"),
}

_LIST_METHODS = frozenset(
    {
        "tools/list",
        "prompts/list",
        "resources/list",
        "resources/templates/list",
        "server/discover",
    }
)

#: A list item: (result key, index).
Slot = tuple[str, int]
_MEMO_MAX = 4096

#: (call, item kind, exposed name) -> (upstream, unprefixed name). A federated route
#: passes one built from its members' prefixes.
NameResolver = Callable[[Call, str, str], tuple[str | None, str]]


def _same_upstream(call: Call, kind: str, name: str) -> tuple[str | None, str]:
    return call.ctx.upstream, name


def federated_names(members: Sequence[tuple[str, str]], separator: str = "__") -> NameResolver:
    """A resolver for a federated route whose members are ``(prefix, upstream)``.

    Tools and prompts carry the member's prefix; a name no prefix claims belongs to
    the member with the empty prefix, if any, else to no upstream (and the policy
    decides it as such). Resource URIs are not prefixed: the call's upstream.
    """
    prefixes = [p for p, _ in members]

    def resolve(call: Call, kind: str, name: str) -> tuple[str | None, str]:
        if kind == "resource":
            return call.ctx.upstream, name
        found = split_name(name, prefixes, separator)
        if found is None:
            return None, name
        index, bare = found
        return members[index][1], bare

    return resolve


class PolicyGuard:
    """Authorizes calls and filters lists with the engine in ``holder``.

    ``fail_open`` stays ``False``: an engine failure is already a deny decision
    (or the engine's own named fail-open); an exception here denies the call.
    """

    name = "policy"
    methods: frozenset[str] | None = None
    # Obligations (caps, redaction, JSON text included) are applied by the call itself.
    response_methods = _LIST_METHODS
    fail_open = False

    def __init__(
        self,
        holder: PolicyHolder,
        builder: InputBuilder | None = None,
        *,
        names: NameResolver = _same_upstream,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.holder = holder
        self.builder = builder or InputBuilder()
        self._names = names
        self._clock = clock
        self._memo: tuple[PolicyEngine, dict[tuple[object, ...], frozenset[Slot]]] | None = None

    def _emit(
        self,
        call: Call,
        policy_input: PolicyInput,
        decision: PolicyDecision,
        started: float,
        *,
        items: int = 0,
        hidden: int = 0,
    ) -> None:
        events = call.pipeline.events
        if not events.sinks:
            return  # nobody listens: do not pay for building the event
        ctx = call.ctx
        events.emit(
            PolicyDecided(
                ctx.decision_id,
                ctx.route,
                decision.engine,
                decision.revision,
                call.request.method,
                ctx.target,
                ctx.principal.subject,
                ctx.principal.tenant,
                decision.allowed,
                decision.reasons,
                redact_input(policy_input),
                round((self._clock() - started) * 1000, 4),
                decision.error,
                items,
                hidden,
            )
        )

    async def on_request(self, call: Call, message: Message) -> Message:
        """Decide the request.

        Raises:
            Denied: the policy denies the call.
            UnknownTarget: the policy denies it and the caller may not see the target.
        """
        if message.kind != "request" and message.method != LISTEN:
            # Client notifications, and client answers to server requests (sampling,
            # elicitation, roots), are scoped to their sender's session by the core;
            # opening a standalone stream (GET, legacy SSE) is a call and is decided.
            return message
        engine = self.holder.engine  # one engine for the whole decision
        started = self._clock()
        policy_input = self.builder.for_request(call.ctx, message)
        decision = await engine.evaluate(policy_input)
        self._emit(call, policy_input, decision, started)
        call.state[self.name] = decision
        if not decision.allowed:
            detail = f"policy {decision.engine}@{decision.revision} denied: " + ",".join(
                decision.reasons
            )
            action = policy_input.action
            if action.kind != "none" and action.name is not None:
                # Would the caller see this target in its list? If not, it is hidden:
                # answer exactly as for a target that does not exist.
                (seen,) = await engine.evaluate_many(
                    self.builder.for_items(call.ctx, action.kind, [(action.name, action.upstream)])
                )
                if not seen.allowed:
                    raise UnknownTarget(detail)
            raise Denied(detail)
        if decision.obligations:
            decision.obligations.bind(call.obligations)
        return message

    def _memo_for(self, engine: PolicyEngine) -> dict[tuple[object, ...], frozenset[Slot]] | None:
        """The filtered-list memo of ``engine`` (a new engine starts an empty one)."""
        if not getattr(engine, "memoize", True):
            return None  # e.g. OPA: its policy can change behind our back
        if self._memo is None or self._memo[0] is not engine:
            self._memo = (engine, {})
        return self._memo[1]

    async def on_message(self, call: Call, message: Message) -> Message | None:
        """Remove from a list result every item the caller may not use.

        All items are decided in one batch; the outcome for the same caller, context
        and list is remembered per engine (a new policy starts afresh).
        """
        if message.kind != "response":
            return message
        result = message.raw.get("result")
        if not isinstance(result, dict):
            return message
        keys = [k for k in LIST_ITEMS if isinstance(result.get(k), list)]
        if not keys:
            return message
        engine = self.holder.engine
        started = self._clock()
        ctx = call.ctx
        subject = self.builder.subject(ctx.principal)
        context = self.builder.context(ctx, count=False)
        entries: list[tuple[str, int, str, str, str | None]] = []
        for key in keys:
            kind, field = LIST_ITEMS[key]
            for index, item in enumerate(result[key]):
                exposed = item.get(field) if isinstance(item, dict) else None
                if not isinstance(exposed, str):
                    continue  # malformed items are dropped below (never shown unchecked)
                upstream, name = self._names(call, kind, exposed)
                entries.append((key, index, kind, name, upstream))
        memo = self._memo_for(engine)
        memo_key = (subject, context, ctx.route, ctx.principal.tenant, tuple(entries))
        allowed = memo.get(memo_key) if memo is not None else None
        if allowed is None:
            inputs = [self.builder.item(ctx, subject, context, *e[2:]) for e in entries]
            decisions = await engine.evaluate_many(inputs) if inputs else []
            allowed = frozenset(
                (e[0], e[1]) for e, d in zip(entries, decisions, strict=True) if d.allowed
            )
            summary = _summary(decisions, engine.name, engine.revision)
            if memo is not None and summary.error is None:
                if len(memo) >= _MEMO_MAX:
                    memo.clear()
                memo[memo_key] = allowed
        else:
            summary = PolicyDecision(
                bool(allowed), ("remembered",), revision=engine.revision, engine=engine.name
            )
        filtered: dict[str, Any] = dict(result)
        total = hidden = 0
        for key in keys:
            items = result[key]
            kept = [item for i, item in enumerate(items) if (key, i) in allowed]
            total += len(items)
            hidden += len(items) - len(kept)
            filtered[key] = kept
        if entries and call.pipeline.events.sinks:
            first = self.builder.item(ctx, subject, context, *entries[0][2:])
            self._emit(call, first, summary, started, items=total, hidden=hidden)
        if not hidden:
            return message
        return Message({**message.raw, "result": filtered}, "response")


def _summary(decisions: list[PolicyDecision], engine: str, revision: str) -> PolicyDecision:
    """One decision standing for a filtered list in the decision log."""
    errors = sorted({d.error for d in decisions if d.error})
    reasons = sorted({r for d in decisions for r in d.reasons})
    return PolicyDecision(
        any(d.allowed for d in decisions),
        tuple(reasons),
        revision=revision,
        engine=engine,
        error="; ".join(errors) or None,
    )
