"""Isolation keys: who shares a process, who the caller is, and no claim can forge either."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from wardgate.identity.principal import Principal
from wardgate.routing.isolation import IsolationKey, isolation_key

_text = st.text(max_size=20)
_principals = st.builds(
    Principal,
    subject=_text,
    method=st.just("jwt"),
    tenant=st.none() | _text,
    client_id=st.none() | _text,
    issuer=st.none() | _text,
)


def test_modes_name_the_right_groups() -> None:
    alice = Principal("alice", "jwt", tenant="t1", issuer="i")
    bob = Principal("bob", "jwt", tenant="t1", issuer="i")
    carol = Principal("carol", "jwt", tenant="t2", issuer="i")
    solo = Principal("dave", "jwt", issuer="i")

    def group(p: Principal, mode: str) -> str:
        return IsolationKey.parse(isolation_key(p, mode)).group  # type: ignore[arg-type]

    assert group(alice, "tenant") == group(bob, "tenant") != group(carol, "tenant")
    assert group(alice, "principal") != group(bob, "principal")
    assert group(alice, "shared") == group(carol, "shared") == ""
    assert group(solo, "tenant") == group(solo, "principal")  # no tenant: its own process
    assert IsolationKey.parse(isolation_key(alice, "principal")).exclusive
    assert not IsolationKey.parse(isolation_key(alice, "tenant")).exclusive
    assert IsolationKey.parse(isolation_key(solo, "tenant")).exclusive
    assert not IsolationKey.parse(isolation_key(alice, "shared")).exclusive


@given(_principals, _principals, st.sampled_from(["principal", "tenant", "shared"]))
def test_distinct_principals_are_distinct_callers(a: Principal, b: Principal, mode: str) -> None:
    ka = IsolationKey.parse(isolation_key(a, mode))  # type: ignore[arg-type]
    kb = IsolationKey.parse(isolation_key(b, mode))  # type: ignore[arg-type]
    assert (ka.caller == kb.caller) == (a.binding_key == b.binding_key)
    if mode == "principal":
        assert (ka.group == kb.group) == (a.binding_key == b.binding_key)
    if mode == "tenant" and ka.group == kb.group:
        # Sharing a process needs the same issuer and tenant, or the same principal.
        same_tenant = a.tenant is not None and (a.issuer, a.tenant) == (b.issuer, b.tenant)
        assert same_tenant or a.binding_key == b.binding_key
