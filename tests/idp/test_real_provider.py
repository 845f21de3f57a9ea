"""End to end: tokens from a real OpenID provider (oidc-provider) through our checks."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from joserfc.jwk import ECKey
from redis.asyncio import Redis

from wardgate.errors import AuthenticationFailed
from wardgate.identity import (
    Authenticator,
    AuthRequest,
    DpopVerifier,
    FetchPolicy,
    IssuerConfig,
    JwtVerifier,
)
from wardgate.state import RedisStateStore

from .provider import OTHER_RESOURCE, RESOURCE, RunningIdp, dpop_proof

URL = RESOURCE
LOOPBACK = FetchPolicy(allow_loopback=True, timeout_seconds=5)


@pytest.fixture
async def verifier(idp_ready: RunningIdp) -> AsyncIterator[JwtVerifier]:
    cfg = IssuerConfig(
        issuer=idp_ready.issuer,  # keys found by discovery
        audience=RESOURCE,
        tenant_claim="tenant",
        required_typ="at+jwt",
        algorithms=frozenset({"ES256"}),
    )
    v = JwtVerifier([cfg], fetch_policy=LOOPBACK)
    await v.start()
    yield v
    await v.aclose()


@pytest.fixture
async def replay_store() -> AsyncIterator[RedisStateStore]:
    prefix = f"wardgate-test:{uuid.uuid4().hex}:"
    store = RedisStateStore(key_prefix=prefix)
    await store.start()
    yield store
    await store.aclose()
    raw = Redis.from_url("redis://127.0.0.1:6379/0")
    keys = [k async for k in raw.scan_iter(match=prefix + "*")]
    if keys:
        await raw.delete(*keys)
    await raw.aclose()


@pytest.fixture
async def authenticator(verifier: JwtVerifier, replay_store: RedisStateStore) -> Authenticator:
    return Authenticator(jwt=verifier, dpop=DpopVerifier(replay_store))


async def test_a_real_access_token_verifies(idp: RunningIdp, verifier: JwtVerifier) -> None:
    token = (await idp.token("agent", scope="tools:read"))["access_token"]
    result = await verifier.verify(token)
    assert result.subject == "agent"
    assert result.client_id == "agent"
    assert result.tenant == "tenant-a"
    assert result.scopes == {"tools:read"}
    assert result.cnf == {}


async def test_a_real_token_for_another_resource_is_refused(
    idp: RunningIdp, verifier: JwtVerifier
) -> None:
    token = (await idp.token("agent", resource=OTHER_RESOURCE))["access_token"]
    with pytest.raises(AuthenticationFailed) as info:
        await verifier.verify(token)
    assert "aud" in info.value.detail


async def test_a_real_bearer_token_authenticates(
    idp: RunningIdp, authenticator: Authenticator
) -> None:
    token = (await idp.token("agent"))["access_token"]
    principal = await authenticator.authenticate(
        AuthRequest(method="POST", url=URL, authorization=f"Bearer {token}")
    )
    assert principal.method == "jwt"
    assert principal.subject == "agent"
    assert principal.issuer == idp.issuer
    assert principal.scopes == {"tools:read", "tools:call"}


async def test_a_real_dpop_bound_token_authenticates_once_per_proof(
    idp: RunningIdp, authenticator: Authenticator
) -> None:
    key = ECKey.generate_key("P-256")
    response = await idp.token("agent-dpop", dpop_key=key)
    assert response["token_type"] == "DPoP"
    token = response["access_token"]
    proof = dpop_proof(key, "POST", URL, access_token=token)
    request = AuthRequest(method="POST", url=URL, authorization=f"DPoP {token}", dpop=proof)

    principal = await authenticator.authenticate(request)
    assert principal.method == "dpop"
    assert principal.cnf == {"jkt": key.thumbprint()}

    with pytest.raises(AuthenticationFailed, match="replayed"):
        await authenticator.authenticate(request)


async def test_a_real_dpop_bound_token_is_refused_as_a_bearer_token(
    idp: RunningIdp, authenticator: Authenticator
) -> None:
    key = ECKey.generate_key("P-256")
    token = (await idp.token("agent-dpop", dpop_key=key))["access_token"]
    with pytest.raises(AuthenticationFailed, match="bearer"):
        await authenticator.authenticate(
            AuthRequest(method="POST", url=URL, authorization=f"Bearer {token}")
        )


async def test_a_real_dpop_bound_token_with_a_proof_from_another_key_is_refused(
    idp: RunningIdp, authenticator: Authenticator
) -> None:
    key, thief = ECKey.generate_key("P-256"), ECKey.generate_key("P-256")
    token = (await idp.token("agent-dpop", dpop_key=key))["access_token"]
    proof = dpop_proof(thief, "POST", URL, access_token=token)
    with pytest.raises(AuthenticationFailed, match=r"cnf\.jkt"):
        await authenticator.authenticate(
            AuthRequest(method="POST", url=URL, authorization=f"DPoP {token}", dpop=proof)
        )


async def test_a_real_certificate_bound_token_needs_the_same_client_cert(
    idp: RunningIdp, authenticator: Authenticator
) -> None:
    ca = trustme.CA()
    mine = ca.issue_cert("agent.example.org").cert_chain_pems[0].bytes()
    other = ca.issue_cert("agent.example.org").cert_chain_pems[0].bytes()
    response = await idp.token("agent-mtls", client_cert_pem=mine)
    token = response["access_token"]

    def der(pem: bytes) -> bytes:
        return x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)

    principal = await authenticator.authenticate(
        AuthRequest(
            method="POST", url=URL, authorization=f"Bearer {token}", peer_certificate=der(mine)
        )
    )
    assert principal.method == "mtls"
    assert "x5t#S256" in principal.cnf
    for cert in (der(other), None):
        with pytest.raises(AuthenticationFailed, match="mtls"):
            await authenticator.authenticate(
                AuthRequest(
                    method="POST", url=URL, authorization=f"Bearer {token}", peer_certificate=cert
                )
            )
