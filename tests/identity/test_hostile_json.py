"""No JOSE JSON may carry NaN or Infinity, and time claims must be finite numbers.

Each attack is a well-formed, correctly signed token (or proof, or answer) whose JSON
holds a value Python's ``json`` would happily accept: ``NaN`` in ``nbf`` compares false
with everything (so "not valid before" never fires), ``Infinity`` in ``exp`` never
expires, ``1e400`` overflows to infinity, ``10**400`` overflows ``float()``. A good
token next to each shows the verifier still serving.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest
from aiohttp import web
from joserfc import jws
from joserfc.jwk import ECKey, Key

from wardgate.errors import AuthenticationFailed
from wardgate.identity import DpopVerifier, IssuerConfig, JwtVerifier
from wardgate.identity._jose import b64url_sha256
from wardgate.net.fetch import loads_strict
from wardgate.state import MemoryStateStore

from .conftest import LOOPBACK, NOW, RESOURCE, FakeClock, LocalIssuer, Served
from .test_dpop import TOKEN, URL, proof

HUGE_INT = "1" + "0" * 400
#: JSON number texts that are not acceptable time claims (and the JSON-level ones that
#: are not JSON at all).
HOSTILE_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", HUGE_INT, "1e20"]
HOSTILE_TIMES = [*HOSTILE_NUMBERS, "true", '"1800000300"', "null_as_string", "-5"]


def _value(text: str) -> str:
    return '"null"' if text == "null_as_string" else text


def raw_claims(issuer: LocalIssuer, **raw: str) -> str:
    """The issuer's usual claims as JSON text, with members replaced by raw JSON text."""
    claims = issuer.claims()
    parts = [f"{json.dumps(k)}:{json.dumps(v)}" for k, v in claims.items() if k not in raw]
    parts += [f"{json.dumps(k)}:{v}" for k, v in raw.items()]
    return "{" + ",".join(parts) + "}"


def sign_raw(
    key: Key, payload: str, header: dict[str, Any] | None = None, alg: str = "RS256"
) -> str:
    protected = {"alg": alg, "typ": "at+jwt", "kid": key.kid} | (header or {})
    return jws.serialize_compact(protected, payload.encode(), key, algorithms=[alg])


async def refused(verifier: JwtVerifier, token: str) -> str:
    with pytest.raises(AuthenticationFailed) as info:
        await verifier.verify(token)
    assert info.value.code == "wardgate.unauthenticated"
    return info.value.detail


# ---------------------------------------------------------------- the parser itself


@pytest.mark.parametrize(
    "text",
    [
        '{"a": NaN}',
        '{"a": Infinity}',
        '{"a": -Infinity}',
        '{"a": 1e400}',
        '{"a": [1, {"b": -1e999}]}',
        '{"a": 1, "a": 2}',
    ],
)
def test_the_strict_parser_refuses_non_json_numbers_and_repeated_members(text: str) -> None:
    with pytest.raises(ValueError):
        loads_strict(text)


def test_the_strict_parser_reads_ordinary_json() -> None:
    assert loads_strict('{"exp": 1800000300, "x": 1.5, "l": [1e10]}') == {
        "exp": 1800000300,
        "x": 1.5,
        "l": [1e10],
    }


# ------------------------------------------------------------------ access tokens


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
@pytest.mark.parametrize("value", HOSTILE_TIMES)
async def test_a_time_claim_that_is_not_a_finite_number_is_refused(
    verifier: JwtVerifier, issuer_a: LocalIssuer, claim: str, value: str
) -> None:
    token = sign_raw(issuer_a.rsa, raw_claims(issuer_a, **{claim: _value(value)}))
    detail = await refused(verifier, token)
    assert claim in detail or "JSON" in detail, detail
    # Beside it, the same issuer's good token passes.
    good = sign_raw(issuer_a.rsa, raw_claims(issuer_a))
    assert (await verifier.verify(good)).subject == "user-1"


@pytest.mark.parametrize("value", HOSTILE_NUMBERS[:5])
async def test_nan_or_infinity_anywhere_in_an_access_token_is_refused(
    verifier: JwtVerifier, issuer_a: LocalIssuer, value: str
) -> None:
    in_claims = sign_raw(issuer_a.rsa, raw_claims(issuer_a, extra=f'{{"deep": [{value}]}}'))
    assert "JSON" in await refused(verifier, in_claims)
    # In the header: joserfc never sees it, our own strict parse refuses first.
    header = sign_raw(issuer_a.rsa, raw_claims(issuer_a)).split(".")
    bad_header = base64.urlsafe_b64encode(
        f'{{"alg":"RS256","typ":"at+jwt","kid":"{issuer_a.rsa.kid}","x":{value}}}'.encode()
    ).rstrip(b"=")
    assert "JSON" in await refused(verifier, ".".join([bad_header.decode(), *header[1:]]))


async def test_a_repeated_claim_is_refused_not_read_twice(
    verifier: JwtVerifier, issuer_a: LocalIssuer
) -> None:
    # The second "sub" would win in Python; another parser may read the first.
    payload = raw_claims(issuer_a)[:-1] + ',"sub":"admin"}'
    assert "JSON" in await refused(verifier, sign_raw(issuer_a.rsa, payload))


async def test_an_exp_at_the_edge_of_the_range_is_still_a_number(
    verifier: JwtVerifier, issuer_a: LocalIssuer
) -> None:
    # 9999-12-31: far, but finite and comparable: accepted.
    token = sign_raw(issuer_a.rsa, raw_claims(issuer_a, exp="253402300799"))
    assert (await verifier.verify(token)).expires_at == 253402300799.0


# ------------------------------------------------------------------- DPoP proofs


@pytest.mark.parametrize("value", [*HOSTILE_NUMBERS, "true", '"1800000000"'])
async def test_a_dpop_proof_with_a_hostile_iat_is_refused(clock: FakeClock, value: str) -> None:
    dpop = DpopVerifier(MemoryStateStore(clock=clock), clock=clock)
    key = ECKey.generate_key("P-256")
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": key.as_dict(private=False)}
    payload = (
        f'{{"jti":"{uuid.uuid4().hex}","htm":"POST","htu":"{URL}","iat":{value},'
        f'"ath":"{b64url_sha256(TOKEN.encode())}"}}'
    )
    hostile = jws.serialize_compact(header, payload.encode(), key, algorithms=["ES256"])
    with pytest.raises(AuthenticationFailed) as info:
        await dpop.verify(hostile, method="POST", url=URL, access_token=TOKEN)
    assert "iat" in info.value.detail or "JSON" in info.value.detail, info.value.detail
    # The same key's honest proof passes.
    good = proof(key)
    assert await dpop.verify(good, method="POST", url=URL, access_token=TOKEN) == key.thumbprint()


# ------------------------------------------------------------------------- JWKS


async def test_a_jwks_with_nan_is_not_used(
    http_server: Served, issuer_a: LocalIssuer, clock: FakeClock
) -> None:
    def hostile() -> web.Response:
        doc = json.dumps(issuer_a.jwks())[:-1] + ', "x": NaN}'
        return web.Response(text=doc, content_type="application/json")

    http_server.routes["/bad/jwks"] = hostile
    http_server.routes["/good/jwks"] = issuer_a.jwks
    mono = FakeClock(0.0)

    def make(path: str) -> JwtVerifier:
        cfg = IssuerConfig(
            issuer=issuer_a.name, audience=RESOURCE, jwks_uri=http_server.base + path
        )
        return JwtVerifier([cfg], fetch_policy=LOOPBACK, clock=clock, jwks_clock=mono)

    bad, good = make("/bad/jwks"), make("/good/jwks")
    await bad.start()
    await good.start()
    try:
        token = issuer_a.mint()
        assert "no keys" in await refused(bad, token)
        assert (await good.verify(token)).subject == "user-1"
    finally:
        await bad.aclose()
        await good.aclose()


def test_now_is_inside_the_accepted_range() -> None:
    assert 0 < NOW < 253402300799
