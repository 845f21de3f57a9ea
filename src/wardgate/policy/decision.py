"""The policy decision's input and output: plain, frozen values.

One :class:`PolicyInput` is built per decision (see :mod:`wardgate.policy.inputs`); the
engines only translate it into their own language and their answer back into a
:class:`PolicyDecision`. Policy is data in, a decision out: enforcement is the guard's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wardgate.core.obligations import Obligations

__all__ = [
    "Action",
    "DecisionObligations",
    "PolicyContext",
    "PolicyDecision",
    "PolicyInput",
    "Resource",
    "Subject",
]


@dataclass(frozen=True, slots=True)
class Subject:
    """Who asks: a human user or an agent (a workload or a client-credentials client)."""

    id: str
    tenant: str | None = None
    kind: str = "human"
    groups: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    auth_method: str = "anonymous"
    mfa: bool = False
    device_trusted: bool = False


@dataclass(frozen=True, slots=True)
class Action:
    """What is asked: the MCP method and the unprefixed name it names, if any.

    ``kind`` is ``tool``, ``prompt``, ``resource`` or ``none`` (a method that names no
    target, such as ``ping``).
    """

    method: str
    name: str | None = None
    kind: str = "none"
    upstream: str | None = None


@dataclass(frozen=True, slots=True)
class Resource:
    """What the action reaches: the route, the upstream, whose data it is, and the
    attributes the tool's arguments map to (declared per tool in config)."""

    route: str
    upstream: str | None = None
    tenant: str | None = None
    #: Sorted ``(name, value)`` pairs (a tuple, so that an input is hashable).
    attributes: tuple[tuple[str, str], ...] = ()

    @property
    def attrs(self) -> dict[str, str]:
        return dict(self.attributes)


@dataclass(frozen=True, slots=True)
class PolicyContext:
    """The conditions of the request: network risk, local time, recent rate."""

    client_addr: str | None = None
    risk: int = 0
    hour: int = 0
    weekday: int = 0
    request_rate: int = 0


@dataclass(frozen=True, slots=True)
class PolicyInput:
    """Everything a policy may look at for one decision; frozen and JSON-shaped."""

    subject: Subject
    action: Action
    resource: Resource
    context: PolicyContext

    def to_json(self) -> dict[str, Any]:
        """The input as the JSON document Rego, OPA and the decision log see."""
        s, a, r, c = self.subject, self.action, self.resource, self.context
        return {
            "subject": {
                "id": s.id,
                "tenant": s.tenant,
                "kind": s.kind,
                "groups": sorted(s.groups),
                "scopes": sorted(s.scopes),
                "auth_method": s.auth_method,
                "mfa": s.mfa,
                "device_trusted": s.device_trusted,
            },
            "action": {"method": a.method, "name": a.name, "kind": a.kind, "upstream": a.upstream},
            "resource": {
                "route": r.route,
                "upstream": r.upstream,
                "tenant": r.tenant,
                "attributes": r.attrs,
            },
            "context": {
                "client_addr": c.client_addr,
                "risk": c.risk,
                "hour": c.hour,
                "weekday": c.weekday,
                "request_rate": c.request_rate,
            },
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> PolicyInput:
        """Rebuild an input from :meth:`to_json`'s shape (policy test cases use it).

        Missing fields take their defaults; only ``action.method`` and
        ``resource.route`` are required.

        Raises:
            KeyError: a required field is missing.
            TypeError: a field has the wrong shape.
        """
        s = dict(doc.get("subject") or {})
        a = dict(doc["action"])
        r = dict(doc["resource"])
        c = dict(doc.get("context") or {})
        return cls(
            Subject(
                id=str(s.get("id", "anonymous")),
                tenant=s.get("tenant"),
                kind=str(s.get("kind", "human")),
                groups=frozenset(s.get("groups", ())),
                scopes=frozenset(s.get("scopes", ())),
                auth_method=str(s.get("auth_method", "anonymous")),
                mfa=bool(s.get("mfa", False)),
                device_trusted=bool(s.get("device_trusted", False)),
            ),
            Action(
                method=str(a["method"]),
                name=a.get("name"),
                kind=str(a.get("kind", "none")),
                upstream=a.get("upstream"),
            ),
            Resource(
                route=str(r["route"]),
                upstream=r.get("upstream"),
                tenant=r.get("tenant"),
                attributes=tuple(
                    sorted((str(k), str(v)) for k, v in dict(r.get("attributes") or {}).items())
                ),
            ),
            PolicyContext(
                client_addr=c.get("client_addr"),
                risk=int(c.get("risk", 0)),
                hour=int(c.get("hour", 0)),
                weekday=int(c.get("weekday", 0)),
                request_rate=int(c.get("request_rate", 0)),
            ),
        )


@dataclass(frozen=True, slots=True)
class DecisionObligations:
    """Conditions an allow carries for the reply phase (they only ever tighten)."""

    max_result_bytes: int | None = None
    redact_fields: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return self.max_result_bytes is not None or bool(self.redact_fields)

    def bind(self, target: Obligations) -> None:
        """Tighten a call's obligations with these (a lower cap wins, fields add up)."""
        if self.max_result_bytes is not None:
            target.cap(self.max_result_bytes)
        if self.redact_fields:
            target.redact(self.redact_fields)

    def merge(self, other: DecisionObligations) -> DecisionObligations:
        """The tighter of two sets of obligations."""
        caps = [c for c in (self.max_result_bytes, other.max_result_bytes) if c is not None]
        return DecisionObligations(
            min(caps) if caps else None, self.redact_fields | other.redact_fields
        )


@dataclass(frozen=True, slots=True)
class PolicyDecision:
    """An engine's answer. ``reasons`` name the determining policies (or the failure);
    ``revision`` is the policy set (bundle) revision that decided."""

    allowed: bool
    reasons: tuple[str, ...] = ()
    obligations: DecisionObligations = DecisionObligations()
    revision: str = ""
    engine: str = ""
    #: Set when the engine failed and this decision is the failure rule's answer.
    error: str | None = None

    @classmethod
    def deny(
        cls, reason: str, *, revision: str = "", engine: str = "", error: str | None = None
    ) -> PolicyDecision:
        return cls(False, (reason,), DecisionObligations(), revision, engine, error)
