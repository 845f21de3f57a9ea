"""The JWT attack battery: every forgery refused, legitimate tokens accepted."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest
from joserfc.jwk import RSAKey

from wardgate.errors import AuthenticationFailed, ConfigError
from wardgate.identity import IssuerConfig, JwtVerifier

from .conftest import LOOPBACK, NOW, RESOURCE, FakeClock, LocalIssuer, Served


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(signature)}"


async def refused(verifier: JwtVerifier, token: str) -> AuthenticationFailed:
    with pytest.raises(AuthenticationFailed) as info:
        await verifier.verify(token)
    assert info.value.code == "wardgate.unauthenticated"
    return info.value


# --- legitimate tokens -------------------------------------------------------------


@pytest.mark.parametrize(
    ("key_index", "alg"), [(0, "RS256"), (0, "PS256"), (1, "ES256"), (2, "EdDSA")]
)
async def test_a_valid_token_verifies_with_each_default_algorithm(
    verifier: JwtVerifier, issuer_a: LocalIssuer, key_index: int, alg: str
) -> None:
    token = issuer_a.mint(issuer_a.keys[key_index], alg)
    result = await verifier.verify(token)
    assert result.subject == "user-1"
    assert result.tenant == "tenant-a"
    assert result.client_id == "agent-1"
    assert result.scopes == {"tools:read", "tools:call"}
    assert result.issuer.issuer == issuer_a.name


async def test_aud_may_be_a_list_and_differ_in_host_case_and_trailing_slash(
    verifier: JwtVerifier, issuer_a: LocalIssuer
) -> None:
    token = issuer_a.mint(aud=["https://other.example", "HTTPS://MCP.Example.com:443/mcp/"])
    assert (await verifier.verify(token)).subject == "user-1"


async def test_a_verified_token_is_cached_until_it_expires(
    verifier: JwtVerifier, issuer_a: LocalIssuer, http_server: Served, clock: FakeClock
) -> None:
    token = issuer_a.mint(exp=int(NOW) + 60)
    first = await verifier.verify(token)
    hits = len(http_server.hits)
    assert await verifier.verify(token) is first
    assert len(http_server.hits) == hits
    clock.now = NOW + 60 + 30  # exp + skew
    await refused(verifier, token)


# --- algorithm attacks -------------------------------------------------------------


async def test_alg_none_is_refused(verifier: JwtVerifier, issuer_a: LocalIssuer) -> None:
    for alg in ("none", "None", "NONE"):
        token = forge({"alg": alg, "typ": "JWT"}, issuer_a.claims())
        err = await refused(verifier, token)
        assert "not allowed" in err.detail


async def test_hs256_signed_with_the_rsa_public_key_is_refused(
    verifier: JwtVerifier, issuer_a: LocalIssuer
) -> None:
    public_pem = issuer_a.rsa.as_pem(private=False)
    header = {"alg": "HS256", "typ": "JWT", "kid": issuer_a.rsa.kid}
    unsigned = forge(header, issuer_a.claims()).rsplit(".", 1)[0]
    sig = hmac.new(public_pem, unsigned.encode(), hashlib.sha256).digest()
    await refused(verifier, f"{unsigned}.{b64(sig)}")


async def test_hmac_cannot_even_be_configured() -> None:
    with pytest.raises(ConfigError):
        IssuerConfig(issuer="https://x", audience=RESOURCE, algorithms=frozenset({"HS256"}))


async def test_an_allowed_alg_on_the_wrong_key_type_is_refused(
    verifier: JwtVerifier, issuer_a: LocalIssuer
) -> None:
    # ES256 header but the kid names the RSA key
    token = forge({"alg": "ES256", "kid": issuer_a.rsa.kid}, issuer_a.claims(), b"x" * 64)
    await refused(verifier, token)


# --- key selection attacks ---------------------------------------------------------


@pytest.mark.parametrize(
    "kid",
    [
        "../../../../../../dev/null",
        "/etc/passwd",
        "..\\..\\windows\\win.ini",
        "x' OR '1'='1",
        "1; DROP TABLE keys; --",
        "' UNION SELECT 'secret' --",
        "",
        "k" * 1000,
    ],
)
async def test_kid_tricks_are_only_ever_a_failed_lookup(
    verifier: JwtVerifier, issuer_a: LocalIssuer, kid: str
) -> None:
    attacker = RSAKey.generate_key(2048)
    token = issuer_a.mint(attacker, header={"kid": kid})
    await refused(verifier, token)


@pytest.mark.parametrize("header_name", ["jku", "x5u"])
async def test_jku_and_x5u_are_never_fetched(
    verifier: JwtVerifier, issuer_a: LocalIssuer, http_server: Served, header_name: str
) -> None:
    attacker = RSAKey.generate_key(2048, parameters={"kid": "evil"})
    http_server.routes["/evil/jwks"] = lambda: {"keys": [attacker.as_dict(private=False)]}
    token = issuer_a.mint(
        attacker, header={"kid": "evil", header_name: f"{http_server.base}/evil/jwks"}
    )
    await refused(verifier, token)
    assert "/evil/jwks" not in http_server.hits


async def test_an_embedded_jwk_is_ignored(verifier: JwtVerifier, issuer_a: LocalIssuer) -> None:
    attacker = RSAKey.generate_key(2048, parameters={"kid": str(issuer_a.rsa.kid)})
    token = issuer_a.mint(attacker, header={"jwk": attacker.as_dict(private=False)})
    err = await refused(verifier, token)
    assert "signature" in err.detail


async def test_an_unknown_kid_refetches_at_most_once_per_interval(
    verifier: JwtVerifier, issuer_a: LocalIssuer, http_server: Served
) -> None:
    attacker = RSAKey.generate_key(2048)
    before = http_server.hits.count("/a/jwks")
    for i in range(20):
        await refused(verifier, issuer_a.mint(attacker, header={"kid": f"unknown-{i}"}))
    assert http_server.hits.count("/a/jwks") - before <= 1


async def test_a_rotated_key_is_picked_up_by_refetch(
    http_server: Served, issuer_a: LocalIssuer, clock: FakeClock
) -> None:
    http_server.routes["/a/jwks"] = issuer_a.jwks
    mono = FakeClock(0.0)
    v = JwtVerifier(
        [
            IssuerConfig(
                issuer=issuer_a.name, audience=RESOURCE, jwks_uri=f"{http_server.base}/a/jwks"
            )
        ],
        fetch_policy=LOOPBACK,
        clock=clock,
        jwks_clock=mono,
    )
    await v.start()
    new_key = RSAKey.generate_key(2048, parameters={"kid": "rotated"})
    issuer_a.keys.append(new_key)
    mono.now = 31.0  # past the refetch interval
    assert (await v.verify(issuer_a.mint(new_key))).subject == "user-1"
    await v.aclose()


# --- claim attacks ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"exp": int(NOW) - 31}, "expired"),
        ({"exp": None}, "missing exp"),
        ({"exp": "never"}, "not a number"),
        ({"exp": True}, "not a number"),
        ({"nbf": int(NOW) + 31}, "not valid before"),
        ({"iat": int(NOW) + 120}, "future"),
        ({"aud": "https://other.example/mcp"}, "aud"),
        ({"aud": ["https://other.example/mcp"]}, "aud"),
        ({"aud": None}, "aud"),
        ({"aud": [RESOURCE, 5]}, "aud"),
        ({"sub": None}, "subject"),
        ({"sub": ""}, "subject"),
        ({"tenant": "tenant-z"}, "tenant"),
        ({"tenant": None}, "tenant"),
        ({"cnf": {"jwk": {"kty": "EC"}}}, "cnf"),
    ],
)
async def test_bad_claims_are_refused(
    verifier: JwtVerifier, issuer_a: LocalIssuer, claims: dict[str, Any], reason: str
) -> None:
    err = await refused(verifier, issuer_a.mint(**claims))
    assert reason in err.detail


async def test_skew_is_bounded_but_honoured(verifier: JwtVerifier, issuer_a: LocalIssuer) -> None:
    assert await verifier.verify(issuer_a.mint(exp=int(NOW) - 29))
    assert await verifier.verify(issuer_a.mint(nbf=int(NOW) + 29))


async def test_wrong_iss_is_refused(verifier: JwtVerifier, issuer_a: LocalIssuer) -> None:
    for iss in ("https://evil.example", "https://idp-a.example/", "HTTPS://IDP-A.EXAMPLE", None):
        err = await refused(verifier, issuer_a.mint(iss=iss))
        assert "issuer" in err.detail


async def test_a_token_of_one_issuer_signed_by_another_issuers_key_is_refused(
    verifier: JwtVerifier, issuer_a: LocalIssuer, issuer_b: LocalIssuer
) -> None:
    # B's key, A's iss, B's kid: kid lookup happens in A's key set only
    await refused(verifier, issuer_b.mint(iss=issuer_a.name))


async def test_a_second_issuers_token_maps_to_its_own_tenant_only(
    verifier: JwtVerifier, issuer_b: LocalIssuer
) -> None:
    result = await verifier.verify(issuer_b.mint(tenant="tenant-a", sub="svc-b"))
    assert result.tenant == "tenant-b"
    assert result.issuer.issuer == issuer_b.name


async def test_a_dpop_proof_is_not_an_access_token(
    verifier: JwtVerifier, issuer_a: LocalIssuer
) -> None:
    await refused(verifier, issuer_a.mint(header={"typ": "dpop+jwt"}))


@pytest.mark.parametrize(
    "token",
    ["", "abc", "a.b", "a.b.c.d.e", "é.b.c", "x" * 20_000, "e30.e30.", "W10.e30.", "@@@.e30.x"],
)
async def test_malformed_tokens_are_refused(verifier: JwtVerifier, token: str) -> None:
    await refused(verifier, token)


async def test_a_tampered_payload_is_refused(verifier: JwtVerifier, issuer_a: LocalIssuer) -> None:
    header, _, sig = issuer_a.mint().split(".")
    payload = b64(json.dumps(issuer_a.claims(sub="admin")).encode())
    await refused(verifier, f"{header}.{payload}.{sig}")


async def test_required_typ_is_enforced(
    http_server: Served, issuer_a: LocalIssuer, clock: FakeClock
) -> None:

    http_server.routes["/a/jwks"] = issuer_a.jwks
    cfg = IssuerConfig(
        issuer=issuer_a.name,
        audience=RESOURCE,
        jwks_uri=f"{http_server.base}/a/jwks",
        required_typ="at+jwt",
    )
    v = JwtVerifier([cfg], fetch_policy=LOOPBACK, clock=clock)
    await v.start()
    assert await v.verify(issuer_a.mint(header={"typ": "application/at+jwt"}))
    with pytest.raises(AuthenticationFailed):
        await v.verify(issuer_a.mint(header={"typ": "JWT"}))
    await v.aclose()


async def test_keys_are_found_by_oidc_discovery(
    http_server: Served, issuer_a: LocalIssuer, clock: FakeClock
) -> None:

    iss = http_server.base
    http_server.routes["/.well-known/openid-configuration"] = lambda: {
        "issuer": iss,
        "jwks_uri": f"{iss}/jwks",
    }
    http_server.routes["/jwks"] = issuer_a.jwks
    v = JwtVerifier(
        [IssuerConfig(issuer=iss, audience=RESOURCE)], fetch_policy=LOOPBACK, clock=clock
    )
    await v.start()
    assert (await v.verify(issuer_a.mint(iss=iss))).subject == "user-1"
    assert "/.well-known/oauth-authorization-server" in http_server.hits  # RFC 8414 tried first
    await v.aclose()


async def test_discovery_with_a_mismatched_issuer_yields_no_keys(
    http_server: Served, issuer_a: LocalIssuer, clock: FakeClock
) -> None:

    iss = http_server.base
    http_server.routes["/.well-known/openid-configuration"] = lambda: {
        "issuer": "https://evil.example",
        "jwks_uri": f"{iss}/jwks",
    }
    http_server.routes["/jwks"] = issuer_a.jwks
    v = JwtVerifier(
        [IssuerConfig(issuer=iss, audience=RESOURCE)], fetch_policy=LOOPBACK, clock=clock
    )
    await v.start()
    with pytest.raises(AuthenticationFailed):
        await v.verify(issuer_a.mint(iss=iss))
    assert "/jwks" not in http_server.hits
    await v.aclose()


async def test_symmetric_and_private_keys_in_a_jwks_are_ignored(
    http_server: Served, issuer_a: LocalIssuer, clock: FakeClock
) -> None:

    oct_key = {"kty": "oct", "kid": "hmac", "k": b64(issuer_a.rsa.as_pem(private=False))}
    http_server.routes["/jwks"] = lambda: {"keys": [oct_key, issuer_a.rsa.as_dict(private=True)]}
    cfg = IssuerConfig(issuer=issuer_a.name, audience=RESOURCE, jwks_uri=f"{http_server.base}/jwks")
    v = JwtVerifier([cfg], fetch_policy=LOOPBACK, clock=clock)
    await v.start()
    await refused(v, issuer_a.mint())  # the only RSA entry carried private members
    await v.aclose()
