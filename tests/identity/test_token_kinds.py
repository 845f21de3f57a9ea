"""Only access tokens are access tokens; real IdPs' claim shapes map by per-issuer options.

An ID token signed by the very issuer we trust, with our resource in ``aud``, is still
refused by default: its ``typ`` is not an access token's, or it carries ``nonce`` /
``at_hash``. The per-issuer options relax exactly one rule each, and the recipes in
docs/identity.md (Entra ID v1/v2, Keycloak, Auth0, Okta, Google) are checked here with
tokens shaped like each IdP's.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from joserfc import jws

from wardgate.config.identity import IssuerEntry
from wardgate.errors import AuthenticationFailed, ConfigError
from wardgate.identity import IssuerConfig, JwtVerifier
from wardgate.identity.issuer import canonical_resource

from .conftest import LOOPBACK, NOW, RESOURCE, FakeClock, LocalIssuer, Served

Build = Callable[..., JwtVerifier]


@pytest.fixture
async def build(
    http_server: Served, issuer_a: LocalIssuer, clock: FakeClock
) -> AsyncIterator[Build]:
    http_server.routes["/a/jwks"] = issuer_a.jwks
    made: list[JwtVerifier] = []

    def make(**options: Any) -> JwtVerifier:
        entry = IssuerEntry.model_validate(
            {"issuer": issuer_a.name, "jwks_uri": f"{http_server.base}/a/jwks"} | options
        )
        v = JwtVerifier([entry.issuer_config(RESOURCE)], fetch_policy=LOOPBACK, clock=clock)
        made.append(v)
        return v

    yield make
    for v in made:
        await v.aclose()


def untyped(issuer: LocalIssuer, **claims: Any) -> str:
    """A token without ``typ`` (joserfc's ``jwt.encode`` would add ``JWT``)."""
    header = {"alg": "RS256", "kid": issuer.rsa.kid}
    payload = json.dumps(issuer.claims(**claims)).encode()
    return jws.serialize_compact(header, payload, issuer.rsa, algorithms=["RS256"])


async def refused(v: JwtVerifier, token: str) -> str:
    with pytest.raises(AuthenticationFailed) as info:
        await v.verify(token)
    assert info.value.code == "wardgate.unauthenticated"
    return info.value.detail


# ------------------------------------------------------------------ default rules


@pytest.mark.parametrize("typ", ["at+jwt", "application/at+jwt", "AT+JWT", "JWT", "jwt"])
async def test_access_token_typs_pass(build: Build, issuer_a: LocalIssuer, typ: str) -> None:
    assert (await build().verify(issuer_a.mint(header={"typ": typ}))).subject == "user-1"


@pytest.mark.parametrize(
    ("header", "claims", "reason"),
    [
        ({"typ": "id_token+jwt"}, {}, "not an access token"),
        ({"typ": "logout+jwt"}, {}, "not an access token"),
        ({"typ": "secevent+jwt"}, {}, "not an access token"),
        ({"typ": "dpop+jwt"}, {}, "DPoP proof"),
        ({"typ": "JOSE"}, {}, "not an access token"),
        ({"typ": "JWT"}, {"nonce": "n-0S6_WzA2Mj"}, "ID token"),
        ({"typ": "JWT"}, {"at_hash": "77QmUPtjPfzWtF2AnpK9RQ"}, "ID token"),
        ({"typ": "JWT"}, {"c_hash": "LDktKdoQak3Pk0cnXxCltA"}, "ID token"),
        ({"typ": "JWT"}, {"typ": "ID"}, "ID token"),  # Keycloak's payload typ
        ({"typ": "JWT"}, {"token_use": "id"}, "ID token"),  # Cognito
    ],
)
async def test_what_is_not_an_access_token_is_refused_by_default(
    build: Build,
    issuer_a: LocalIssuer,
    header: dict[str, Any],
    claims: dict[str, Any],
    reason: str,
) -> None:
    verifier = build()
    assert reason in await refused(verifier, issuer_a.mint(header=header, **claims))
    assert (await verifier.verify(issuer_a.mint())).subject == "user-1"


async def test_a_token_without_typ_is_refused_by_default(
    build: Build, issuer_a: LocalIssuer
) -> None:
    assert "typ missing" in await refused(build(), untyped(issuer_a))


async def test_each_relaxation_relaxes_only_its_own_rule(
    build: Build, issuer_a: LocalIssuer
) -> None:
    no_typ = untyped(issuer_a)
    with_nonce = issuer_a.mint(nonce="abc")
    relaxed_typ = build(allow_missing_typ=True)
    assert await relaxed_typ.verify(no_typ)
    assert "ID token" in await refused(relaxed_typ, with_nonce)
    relaxed_claims = build(allow_id_token_claims=True)
    assert await relaxed_claims.verify(with_nonce)
    assert "typ missing" in await refused(relaxed_claims, no_typ)
    custom = build(accepted_typs=["application/vnd.example+jwt"])
    assert await custom.verify(issuer_a.mint(header={"typ": "vnd.example+jwt"}))
    assert "not an access token" in await refused(custom, issuer_a.mint())


async def test_required_typ_is_strict(build: Build, issuer_a: LocalIssuer) -> None:
    strict = build(required_typ="at+jwt", allow_missing_typ=True)
    assert await strict.verify(issuer_a.mint(header={"typ": "application/at+jwt"}))
    assert "is not 'at+jwt'" in await refused(strict, issuer_a.mint(header={"typ": "JWT"}))
    assert "typ missing" in await refused(strict, untyped(issuer_a))


# ------------------------------------------------------------------- audience


AUDIENCE_TABLE: list[tuple[str, bool]] = [
    # MCP canonical-URI rules: these name the resource.
    (RESOURCE, True),
    ("HTTPS://MCP.EXAMPLE.COM/mcp", True),
    ("https://Mcp.Example.Com/mcp", True),
    ("https://mcp.example.com:443/mcp", True),
    ("https://mcp.example.com/mcp/", True),
    # Anything else does not.
    ("https://user@mcp.example.com/mcp", False),
    ("https://user:pw@mcp.example.com/mcp", False),
    ("https://@mcp.example.com/mcp", False),
    ("https://mcp.example.com/mcp#frag", False),
    ("https://mcp.example.com/mcp#", False),
    ("https://mcp.example.com/MCP", False),
    ("https://mcp.example.com/mcp//", False),
    ("https://mcp.example.com/mcp?x=1", False),
    ("https://mcp.example.com/mcp?", False),
    ("https://mcp.example.com/%6Dcp", False),
    ("https://mcp.example.com:8443/mcp", False),
    ("https://mcp.example.com:/mcp", False),
    ("http://mcp.example.com/mcp", False),
    ("https://mcp.example.com./mcp", False),
    ("https://mcp.example.com/mcp/x", False),
    ("https://mcp.example.com/mc", False),
    ("https://mcp.example.com", False),
    ("https://mcp.exаmple.com/mcp", False),  # Cyrillic a
    ("https://mcp.example.com/mcp ", False),
    ("mcp.example.com/mcp", False),
    ("", False),
]


@pytest.mark.parametrize(("aud", "matches"), AUDIENCE_TABLE)
async def test_audience_comparison_follows_only_the_canonical_uri_rules(
    build: Build, issuer_a: LocalIssuer, aud: str, matches: bool
) -> None:
    verifier = build()
    token = issuer_a.mint(aud=[aud])
    if matches:
        assert (await verifier.verify(token)).subject == "user-1"
    else:
        assert "aud" in await refused(verifier, token)


def test_userinfo_or_fragment_never_has_a_canonical_form() -> None:
    assert canonical_resource("https://a@mcp.example.com/mcp") is None
    assert canonical_resource("https://mcp.example.com/mcp#x") is None
    assert canonical_resource("HTTPS://MCP.EXAMPLE.COM:443/mcp/") == RESOURCE


def test_an_audience_with_userinfo_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        IssuerConfig(issuer="https://idp", audience="https://u@mcp.example.com/mcp")
    with pytest.raises(ConfigError):
        IssuerConfig(
            issuer="https://idp", audience=RESOURCE, audience_aliases=frozenset({RESOURCE + "#x"})
        )


async def test_an_audience_alias_names_the_resource_for_its_issuer_only(
    build: Build, issuer_a: LocalIssuer
) -> None:
    app_id = "api://8c3a3d58-9ad7-4a6e-9f0e-5e9e2bcbbd11"
    aliased = build(audience_aliases=[app_id])
    assert await aliased.verify(issuer_a.mint(aud=app_id))
    assert await aliased.verify(issuer_a.mint(aud=RESOURCE))
    assert "aud" in await refused(aliased, issuer_a.mint(aud="api://someone-else"))
    assert "aud" in await refused(aliased, issuer_a.mint(aud=app_id + "/x"))
    assert "aud" in await refused(build(), issuer_a.mint(aud=app_id))


# ------------------------------------------------------------------ IdP recipes

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
APP = "8c3a3d58-9ad7-4a6e-9f0e-5e9e2bcbbd11"


def recipes() -> list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any], set[str]]]:
    """(name, issuer options, header, claims, expected scopes) as docs/identity.md gives them."""
    return [
        (
            "entra-v2",
            {
                "audience_aliases": [APP, f"api://{APP}"],
                "tenant_claim": "tid",
                "allowed_tenants": [TENANT],
                "scope_claim": "scp",
                "role_claims": ["roles"],
                "client_id_claim": "azp",
            },
            {"typ": "JWT"},
            {
                "aud": APP,
                "tid": TENANT,
                "scp": "tools.read",
                "roles": ["Tools.Call"],
                "azp": "client-app",
                "scope": None,
                "tenant": None,
                "client_id": None,
                "ver": "2.0",
            },
            {"tools.read", "Tools.Call"},
        ),
        (
            "entra-v1",
            {
                "audience_aliases": [f"api://{APP}"],
                "tenant_claim": "tid",
                "allowed_tenants": [TENANT],
                "scope_claim": "scp",
                "role_claims": ["roles"],
                "client_id_claim": "appid",
            },
            {"typ": "JWT"},
            {
                "aud": f"api://{APP}",
                "tid": TENANT,
                "scp": "tools.read",
                "appid": "c1",
                "scope": None,
                "tenant": None,
                "client_id": None,
                "ver": "1.0",
            },
            {"tools.read"},
        ),
        (
            "keycloak",
            {"role_claims": ["/realm_access/roles"], "client_id_claim": "azp"},
            {"typ": "JWT"},
            {
                "typ": "Bearer",
                "azp": "agent",
                "scope": "tools:read",
                "realm_access": {"roles": ["mcp-user"]},
                "tenant": None,
            },
            {"tools:read", "mcp-user"},
        ),
        (
            "auth0",
            {"role_claims": ["permissions"], "client_id_claim": "azp", "tenant_claim": "org_id"},
            {"typ": "at+jwt"},
            {
                "aud": [RESOURCE, "https://tenant.auth0.com/userinfo"],
                "azp": "agent",
                "scope": "openid tools:read",
                "permissions": ["tools:call"],
                "org_id": "org_1",
                "tenant": None,
            },
            {"openid", "tools:read", "tools:call"},
        ),
        (
            "okta",
            {"scope_claim": "scp", "client_id_claim": "cid"},
            {"typ": "application/okta-internal-at+jwt"},
            {"scp": ["tools:read"], "cid": "0oa1", "scope": None, "tenant": None},
            {"tools:read"},
        ),
        (
            "google",
            {"tenant_claim": "hd", "allowed_tenants": ["example.com"], "client_id_claim": "azp"},
            {"typ": "JWT"},
            {
                "hd": "example.com",
                "azp": "svc",
                "email": "svc@example.com",
                "scope": None,
                "tenant": None,
            },
            set(),
        ),
    ]


@pytest.mark.parametrize(
    ("name", "options", "header", "claims", "expected"),
    recipes(),
    ids=[r[0] for r in recipes()],
)
async def test_idp_recipes_map_each_idps_claims(
    build: Build,
    issuer_a: LocalIssuer,
    name: str,
    options: dict[str, Any],
    header: dict[str, Any],
    claims: dict[str, Any],
    expected: set[str],
) -> None:
    if name == "okta":  # Okta's own typ for custom authorization servers' tokens
        options = options | {"accepted_typs": ["at+jwt", "JWT", "okta-internal-at+jwt"]}
    verifier = build(**options)
    token = await verifier.verify(issuer_a.mint(header=header, **claims))
    assert token.scopes == expected
    assert token.client_id is not None or name == "google"
    # The same IdP's ID token (nonce, aud = the client) is still refused.
    assert await refused(verifier, issuer_a.mint(header=header, **claims, nonce="n"))
    if name.startswith("entra"):
        other_tenant = claims | {"tid": "00000000-0000-0000-0000-000000000000"}
        assert "tenant" in await refused(verifier, issuer_a.mint(header=header, **other_tenant))


def test_clock_is_inside_the_range() -> None:
    assert NOW > 0
