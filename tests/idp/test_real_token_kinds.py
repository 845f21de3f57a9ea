"""Tokens from the real provider (oidc-provider) meet the default access-token rules, and
a per-issuer audience alias maps another resource indicator onto this gateway.

oidc-provider types its JWT access tokens ``at+jwt`` (RFC 9068), so the default rules
(``typ`` must be an access token's, no ID-token claims) accept them untouched. A token
the provider minted for another resource is refused, until the operator names that
resource as an alias for this issuer: the real IdP's ``aud`` then names this gateway.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable

import pytest

from wardgate.errors import AuthenticationFailed
from wardgate.identity import FetchPolicy, IssuerConfig, JwtVerifier

from .provider import OTHER_RESOURCE, RESOURCE, RunningIdp

LOOPBACK = FetchPolicy(allow_loopback=True, timeout_seconds=5)
Make = Callable[..., JwtVerifier]


@pytest.fixture
async def make(idp_ready: RunningIdp) -> AsyncIterator[Make]:
    made: list[JwtVerifier] = []

    def build(**options: object) -> JwtVerifier:
        cfg = IssuerConfig(
            issuer=idp_ready.issuer,
            audience=RESOURCE,
            tenant_claim="tenant",
            algorithms=frozenset({"ES256"}),
            **options,  # type: ignore[arg-type]
        )
        v = JwtVerifier([cfg], fetch_policy=LOOPBACK)
        made.append(v)
        return v

    yield build
    for v in made:
        await v.aclose()


def header_of(token: str) -> dict[str, object]:
    segment = token.split(".")[0]
    value: dict[str, object] = json.loads(
        base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    )
    return value


async def test_a_real_access_token_passes_the_default_rules(
    idp_ready: RunningIdp, make: Make
) -> None:
    token = (await idp_ready.token())["access_token"]
    assert str(header_of(token)["typ"]).lower() in ("at+jwt", "application/at+jwt")
    verifier = make()
    await verifier.start()
    assert (await verifier.verify(token)).subject == "agent"


async def test_an_audience_alias_maps_a_real_tokens_resource(
    idp_ready: RunningIdp, make: Make
) -> None:
    other = (await idp_ready.token(resource=OTHER_RESOURCE))["access_token"]
    plain = make()
    await plain.start()
    with pytest.raises(AuthenticationFailed) as info:
        await plain.verify(other)
    assert "aud" in info.value.detail
    aliased = make(audience_aliases=frozenset({OTHER_RESOURCE}))
    await aliased.start()
    assert (await aliased.verify(other)).subject == "agent"
    # And the alias does not loosen anything else: the gateway's own still passes.
    assert await aliased.verify((await idp_ready.token())["access_token"])
