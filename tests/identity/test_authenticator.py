"""The one entry point: which credentials yield which Principal, and every refusal."""

from __future__ import annotations

from typing import Any

import pytest
import trustme
from joserfc.jwk import ECKey, Key

from wardgate.errors import AuthenticationFailed, ConfigError
from wardgate.identity import (
    Authenticator,
    AuthRequest,
    DpopVerifier,
    JwtVerifier,
    SpiffeVerifier,
    certificate_thumbprint,
)
from wardgate.state import MemoryStateStore, StateStoreUnavailable

from ._certs import NOW as CERT_NOW
from ._certs import ca_certificate, issue
from .conftest import NOW, FakeClock, LocalIssuer
from .test_dpop import proof

URL = "https://mcp.example.com/mcp"


class BrokenStore:
    async def start(self) -> None: ...
    async def aclose(self) -> None: ...
    async def add_once(self, key: str, ttl_seconds: float) -> bool:
        raise StateStoreUnavailable("redis down")


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def auth(verifier: JwtVerifier, clock: FakeClock, ca: trustme.CA) -> Authenticator:
    return Authenticator(
        jwt=verifier,
        dpop=DpopVerifier(MemoryStateStore(clock=clock), clock=clock),
        spiffe=SpiffeVerifier({"example.org": [ca_certificate(ca)]}, clock=CERT_NOW.timestamp),
        spiffe_tenants={"example.org": "tenant-w"},
    )


async def refused(auth: Authenticator, **kw: Any) -> str:
    with pytest.raises(AuthenticationFailed) as info:
        await auth.authenticate(AuthRequest(**({"method": "POST", "url": URL} | kw)))
    assert info.value.code == "wardgate.unauthenticated"
    return info.value.detail


async def test_a_bearer_token_yields_a_jwt_principal(
    auth: Authenticator, issuer_a: LocalIssuer
) -> None:
    p = await auth.authenticate(AuthRequest("POST", URL, authorization=f"Bearer {issuer_a.mint()}"))
    assert (p.method, p.subject, p.tenant, p.client_id) == ("jwt", "user-1", "tenant-a", "agent-1")
    assert p.issuer == issuer_a.name
    assert p.expires_at == NOW + 300
    assert p.binding_key == (issuer_a.name, "tenant-a", "agent-1", "user-1")


async def test_the_scheme_is_case_insensitive(auth: Authenticator, issuer_a: LocalIssuer) -> None:
    p = await auth.authenticate(AuthRequest("POST", URL, authorization=f"bEaReR {issuer_a.mint()}"))
    assert p.method == "jwt"


@pytest.mark.parametrize(
    "authorization", ["", "Bearer", "Bearer ", "Basic dXNlcjpwdw==", "Token abc", "Bearer a b"]
)
async def test_malformed_authorization_is_refused(auth: Authenticator, authorization: str) -> None:
    await refused(auth, authorization=authorization)


async def test_no_credentials_is_refused(auth: Authenticator) -> None:
    assert "no credentials" in await refused(auth)


async def test_a_dpop_proof_without_a_token_is_refused(auth: Authenticator) -> None:
    await refused(auth, dpop=proof(ECKey.generate_key("P-256")))


def bound(issuer: LocalIssuer, key: Key) -> str:
    return issuer.mint(cnf={"jkt": key.thumbprint()})


async def test_a_dpop_bound_token_with_its_proof_yields_a_dpop_principal(
    auth: Authenticator, issuer_a: LocalIssuer
) -> None:
    key = ECKey.generate_key("P-256")
    token = bound(issuer_a, key)
    p = await auth.authenticate(
        AuthRequest("POST", URL, authorization=f"DPoP {token}", dpop=proof(key, token=token))
    )
    assert p.method == "dpop"
    assert p.cnf == {"jkt": key.thumbprint()}


@pytest.mark.parametrize(
    ("proof_args", "request_args", "reason"),
    [
        ({"htu": "https://mcp.example.com/other"}, {}, "htu"),
        ({"htm": "GET"}, {}, "htm"),
        ({}, {"method": "GET"}, "htm"),
        ({}, {"url": "https://evil.example/mcp"}, "htu"),
        ({"iat": NOW - 3600}, {}, "stale"),
        ({"token": None}, {}, "ath"),
    ],
)
async def test_dpop_proof_defects_are_refused(
    auth: Authenticator,
    issuer_a: LocalIssuer,
    proof_args: dict[str, Any],
    request_args: dict[str, Any],
    reason: str,
) -> None:
    key = ECKey.generate_key("P-256")
    token = bound(issuer_a, key)
    args: dict[str, Any] = {"token": token} | proof_args
    detail = await refused(
        auth, authorization=f"DPoP {token}", dpop=proof(key, **args), **request_args
    )
    assert reason in detail


async def test_a_replayed_dpop_request_is_refused(
    auth: Authenticator, issuer_a: LocalIssuer
) -> None:
    key = ECKey.generate_key("P-256")
    token = bound(issuer_a, key)
    req = AuthRequest("POST", URL, authorization=f"DPoP {token}", dpop=proof(key, token=token))
    await auth.authenticate(req)
    with pytest.raises(AuthenticationFailed, match="replayed"):
        await auth.authenticate(req)


async def test_a_proof_key_not_matching_cnf_jkt_is_refused(
    auth: Authenticator, issuer_a: LocalIssuer
) -> None:
    key, other = ECKey.generate_key("P-256"), ECKey.generate_key("P-256")
    token = bound(issuer_a, key)
    detail = await refused(auth, authorization=f"DPoP {token}", dpop=proof(other, token=token))
    assert "cnf.jkt" in detail


async def test_dpop_scheme_needs_a_bound_token_and_a_single_proof(
    auth: Authenticator, issuer_a: LocalIssuer
) -> None:
    key = ECKey.generate_key("P-256")
    plain = issuer_a.mint()
    assert "not DPoP-bound" in await refused(
        auth, authorization=f"DPoP {plain}", dpop=proof(key, token=plain)
    )
    token = bound(issuer_a, key)
    assert "missing" in await refused(auth, authorization=f"DPoP {token}")
    two = f"{proof(key, token=token)}, {proof(key, token=token)}"
    assert "more than one" in await refused(auth, authorization=f"DPoP {token}", dpop=two)


async def test_a_dpop_bound_token_used_as_bearer_is_refused(
    auth: Authenticator, issuer_a: LocalIssuer
) -> None:
    token = bound(issuer_a, ECKey.generate_key("P-256"))
    assert "bearer" in await refused(auth, authorization=f"Bearer {token}")


async def test_a_certificate_bound_token_needs_that_certificate(
    auth: Authenticator, issuer_a: LocalIssuer, ca: trustme.CA
) -> None:
    mine, other = issue(ca, "spiffe://example.org/a"), issue(ca, "spiffe://example.org/a")
    token = issuer_a.mint(cnf={"x5t#S256": certificate_thumbprint(mine)})
    p = await auth.authenticate(
        AuthRequest("POST", URL, authorization=f"Bearer {token}", peer_certificate=mine)
    )
    assert p.method == "mtls"
    await refused(auth, authorization=f"Bearer {token}", peer_certificate=other)
    await refused(auth, authorization=f"Bearer {token}")


async def test_a_spiffe_svid_alone_yields_a_spiffe_principal(
    auth: Authenticator, ca: trustme.CA
) -> None:
    cert = issue(ca, "spiffe://example.org/ns/prod/sa/agent")
    p = await auth.authenticate(AuthRequest("POST", URL, peer_certificate=cert))
    assert (p.method, p.subject, p.tenant) == (
        "spiffe",
        "spiffe://example.org/ns/prod/sa/agent",
        "tenant-w",
    )
    assert p.cnf == {"x5t#S256": certificate_thumbprint(cert)}


async def test_an_svid_from_another_ca_is_refused(auth: Authenticator) -> None:
    cert = issue(trustme.CA(), "spiffe://example.org/ns/prod/sa/agent")
    assert "does not verify" in await refused(auth, peer_certificate=cert)


async def test_unbound_tokens_can_be_refused_by_policy(
    verifier: JwtVerifier, issuer_a: LocalIssuer
) -> None:
    strict = Authenticator(jwt=verifier, require_bound_tokens=True)
    with pytest.raises(AuthenticationFailed, match="unbound"):
        await strict.authenticate(
            AuthRequest("POST", URL, authorization=f"Bearer {issuer_a.mint()}")
        )


async def test_a_failing_replay_cache_fails_closed(
    verifier: JwtVerifier, issuer_a: LocalIssuer, clock: FakeClock
) -> None:
    auth = Authenticator(jwt=verifier, dpop=DpopVerifier(BrokenStore(), clock=clock))
    key = ECKey.generate_key("P-256")
    token = bound(issuer_a, key)
    with pytest.raises(AuthenticationFailed, match="redis down") as info:
        await auth.authenticate(
            AuthRequest("POST", URL, authorization=f"DPoP {token}", dpop=proof(key, token=token))
        )
    assert isinstance(info.value.__cause__, StateStoreUnavailable)


def test_an_authenticator_needs_a_verifier() -> None:
    with pytest.raises(ConfigError):
        Authenticator()
