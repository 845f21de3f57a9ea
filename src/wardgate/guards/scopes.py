"""Per-route authorization by token: scopes per route and per tool, and step-up MFA.

A caller without a tool's scopes can neither call it nor see it in ``tools/list``; the
refusal carries the scopes to ask for (``insufficient_scope``), so an OAuth client can
step up. A route can demand a strong authentication method (``amr``, e.g. FIDO2) or
level (``acr``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Any

from wardgate.core.call import Call
from wardgate.errors import Denied
from wardgate.identity.principal import Principal
from wardgate.wire.jsonrpc import Message

__all__ = ["InsufficientScope", "ScopeGuard", "StepUpRequired"]


class InsufficientScope(Denied):
    """The caller lacks scopes; ``scopes`` are the ones to request."""

    code = "wardgate.insufficient_scope"
    # The MCP authorization spec's step-up signal: 403 with WWW-Authenticate.
    http_status = 403
    public_message = "Insufficient scope"

    def __init__(self, detail: str, scopes: Iterable[str]) -> None:
        super().__init__(detail)
        self.scopes = tuple(sorted(set(scopes)))


class StepUpRequired(Denied):
    """The caller authenticated too weakly for this route (RFC 9470)."""

    code = "wardgate.step_up_required"
    http_status = 401
    public_message = "Stronger authentication required"

    def __init__(self, detail: str, acr_values: Sequence[str]) -> None:
        super().__init__(detail)
        self.acr_values = tuple(acr_values)


def _claim_list(value: Any) -> set[str]:
    if isinstance(value, str):
        return {value}
    if isinstance(value, list):
        return {v for v in value if isinstance(v, str)}
    return set()


class ScopeGuard:
    name = "scopes"
    methods: frozenset[str] | None = None
    response_methods: frozenset[str] | None = frozenset({"tools/list"})
    fail_open = False

    def __init__(
        self,
        required_scopes: Sequence[str] = (),
        tool_scopes: Mapping[str, Sequence[str]] | None = None,
        mfa_amr: Sequence[str] = (),
        acr_values: Sequence[str] = (),
    ) -> None:
        self._required = frozenset(required_scopes)
        self._tools = tuple((glob, frozenset(s)) for glob, s in (tool_scopes or {}).items())
        self._amr = frozenset(mfa_amr)
        self._acr = tuple(acr_values)

    def scopes_for(self, tool: str) -> frozenset[str]:
        need: set[str] = set()
        for glob, scopes in self._tools:
            if fnmatchcase(tool, glob):
                need |= scopes
        return frozenset(need)

    def _check_strength(self, principal: Principal) -> None:
        if self._amr and not (_claim_list(principal.claims.get("amr")) & self._amr):
            raise StepUpRequired(
                f"{principal.subject}: amr lacks one of {sorted(self._amr)}", self._acr
            )
        if self._acr and principal.claims.get("acr") not in self._acr:
            raise StepUpRequired(f"{principal.subject}: acr not in {list(self._acr)}", self._acr)

    async def on_request(self, call: Call, message: Message) -> Message:
        principal = call.ctx.principal
        self._check_strength(principal)
        missing = self._required - principal.scopes
        if missing:
            raise InsufficientScope(
                f"{principal.subject} lacks route scopes {sorted(missing)}", self._required
            )
        if message.method == "tools/call":
            tool = str(message.params.get("name", ""))
            need = self.scopes_for(tool)
            if need - principal.scopes:
                raise InsufficientScope(
                    f"{principal.subject} lacks {sorted(need - principal.scopes)} for {tool}",
                    need | self._required,
                )
        return message

    async def on_message(self, call: Call, message: Message) -> Message:
        result = message.raw.get("result")
        if not self._tools or message.kind != "response" or not isinstance(result, dict):
            return message
        tools = result.get("tools")
        if not isinstance(tools, list):
            return message
        held = call.ctx.principal.scopes
        kept = [
            t
            for t in tools
            if isinstance(t, dict) and self.scopes_for(str(t.get("name", ""))) <= held
        ]
        if len(kept) == len(tools):
            return message
        return Message({**message.raw, "result": {**result, "tools": kept}}, "response")
