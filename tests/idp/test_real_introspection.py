"""RFC 7662 introspection against the real OpenID provider (oidc-provider)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from joserfc.jwk import ECKey

from wardgate.errors import AuthenticationFailed
from wardgate.identity import IntrospectionConfig, IntrospectionVerifier, Secret

from .provider import GATEWAY_CLIENT, GATEWAY_SECRET, OPAQUE_RESOURCE, RunningIdp

Make = Callable[..., IntrospectionVerifier]


@pytest.fixture
async def make(idp_ready: RunningIdp) -> AsyncIterator[Make]:
    made: list[IntrospectionVerifier] = []

    def build(
        client_id: str = GATEWAY_CLIENT, secret: str = GATEWAY_SECRET
    ) -> IntrospectionVerifier:
        v = IntrospectionVerifier(
            IntrospectionConfig(
                endpoint=idp_ready.introspection_endpoint,
                client_id=client_id,
                client_secret=Secret(secret),
                issuer=idp_ready.issuer,
                audience=OPAQUE_RESOURCE,
                tenant_claim="tenant",
            ),
            allow_loopback=True,
        )
        made.append(v)
        return v

    yield build
    for v in made:
        await v.aclose()


async def test_a_real_opaque_token_introspects(idp: RunningIdp, make: Make) -> None:
    token = await idp.token("agent", resource=OPAQUE_RESOURCE, scope="tools:read")
    t = await make().verify(token["access_token"])
    assert (t.subject, t.client_id, t.tenant, t.issuer) == (
        "agent",
        "agent",
        "tenant-a",
        idp.issuer,
    )
    assert t.scopes == {"tools:read"} and t.cnf == {}


async def test_a_real_dpop_bound_opaque_token_carries_its_key(idp: RunningIdp, make: Make) -> None:
    key = ECKey.generate_key("P-256")
    token = await idp.token("agent-dpop", resource=OPAQUE_RESOURCE, dpop_key=key)
    t = await make().verify(token["access_token"])
    assert t.cnf == {"jkt": key.thumbprint()}


@pytest.mark.parametrize(
    ("client_id", "secret"),
    [(GATEWAY_CLIENT, "wrong-secret"), ("agent", "agent-secret")],
    ids=["wrong-secret", "not-the-resource-server"],
)
async def test_the_provider_refusing_the_caller_refuses_the_token(
    idp: RunningIdp, make: Make, client_id: str, secret: str
) -> None:
    token = (await idp.token("agent", resource=OPAQUE_RESOURCE))["access_token"]
    with pytest.raises(AuthenticationFailed) as info:
        await make(client_id, secret).verify(token)
    assert info.value.code == "wardgate.unauthenticated"
    assert secret not in info.value.detail
