"""DPoP proofs (RFC 9449): replay, other URL / method, stale iat, wrong key, no ath."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, Key, RSAKey

from wardgate.errors import AuthenticationFailed, ConfigError
from wardgate.identity import DpopConfig, DpopNonceRequired, DpopNonces, DpopVerifier
from wardgate.identity._jose import b64url_sha256
from wardgate.identity.dpop import normalize_htu
from wardgate.state import MemoryStateStore

from .conftest import NOW, FakeClock

URL = "https://mcp.example.com/mcp"
TOKEN = "eyJhbGciOiJFUzI1NiJ9.e30.sig"


def proof(
    key: Key,
    *,
    alg: str = "ES256",
    htm: str = "POST",
    htu: str = URL,
    iat: float = NOW,
    token: str | None = TOKEN,
    header: dict[str, Any] | None = None,
    **extra: Any,
) -> str:
    h: dict[str, Any] = {"typ": "dpop+jwt", "alg": alg, "jwk": key.as_dict(private=False)}
    h.update(header or {})
    claims: dict[str, Any] = {"jti": uuid.uuid4().hex, "htm": htm, "htu": htu, "iat": int(iat)}
    if token is not None:
        claims["ath"] = b64url_sha256(token.encode())
    claims.update(extra)
    return jwt.encode({k: v for k, v in h.items() if v is not None}, claims, key, algorithms=[alg])


@pytest.fixture
def key() -> Key:
    return ECKey.generate_key("P-256")


@pytest.fixture
def dpop(clock: FakeClock) -> DpopVerifier:
    return DpopVerifier(MemoryStateStore(clock=clock), clock=clock)


async def refused(dpop: DpopVerifier, value: str, **kw: Any) -> AuthenticationFailed:
    args: dict[str, Any] = {"method": "POST", "url": URL, "access_token": TOKEN} | kw
    with pytest.raises(AuthenticationFailed) as info:
        await dpop.verify(value, **args)
    return info.value


async def test_a_valid_proof_returns_the_key_thumbprint(dpop: DpopVerifier, key: Key) -> None:
    jkt = await dpop.verify(proof(key), method="POST", url=URL, access_token=TOKEN)
    assert jkt == key.thumbprint()


async def test_an_rsa_proof_is_accepted(dpop: DpopVerifier) -> None:
    rsa = RSAKey.generate_key(2048)
    assert await dpop.verify(proof(rsa, alg="PS256"), method="POST", url=URL, access_token=TOKEN)


async def test_htu_is_compared_without_query_fragment_case_or_default_port(
    dpop: DpopVerifier, key: Key
) -> None:
    value = proof(key, htu="HTTPS://MCP.example.com:443/mcp")
    assert await dpop.verify(value, method="POST", url=URL + "?x=1#f", access_token=TOKEN)


async def test_a_replayed_proof_is_refused(dpop: DpopVerifier, key: Key) -> None:
    value = proof(key)
    await dpop.verify(value, method="POST", url=URL, access_token=TOKEN)
    assert "replayed" in (await refused(dpop, value)).detail


async def test_a_proof_for_another_url_is_refused(dpop: DpopVerifier, key: Key) -> None:
    for htu in (
        "https://mcp.example.com/other",
        "https://evil.example/mcp",
        "http://mcp.example.com/mcp",
    ):
        assert "htu" in (await refused(dpop, proof(key, htu=htu))).detail


async def test_a_proof_for_another_method_is_refused(dpop: DpopVerifier, key: Key) -> None:
    assert "htm" in (await refused(dpop, proof(key, htm="GET"))).detail
    assert "htm" in (await refused(dpop, proof(key, htm="post"))).detail


@pytest.mark.parametrize(("offset", "reason"), [(-61, "stale"), (-3600, "stale"), (6, "future")])
async def test_a_proof_outside_the_iat_window_is_refused(
    dpop: DpopVerifier, key: Key, offset: float, reason: str
) -> None:
    assert reason in (await refused(dpop, proof(key, iat=NOW + offset))).detail


async def test_a_proof_without_ath_is_refused(dpop: DpopVerifier, key: Key) -> None:
    assert "ath" in (await refused(dpop, proof(key, token=None))).detail


async def test_a_proof_for_another_access_token_is_refused(dpop: DpopVerifier, key: Key) -> None:
    assert "ath" in (await refused(dpop, proof(key, token="other.token.value"))).detail


@pytest.mark.parametrize(
    "header",
    [
        {"typ": "JWT"},
        {"typ": None},
        {"jwk": None},
    ],
)
async def test_malformed_proof_headers_are_refused(
    dpop: DpopVerifier, key: Key, header: dict[str, Any]
) -> None:
    await refused(dpop, proof(key, header=header))


async def test_a_proof_with_a_private_jwk_is_refused(dpop: DpopVerifier, key: Key) -> None:
    await refused(dpop, proof(key, header={"jwk": key.as_dict(private=True)}))


async def test_a_proof_signed_by_another_key_than_its_jwk_is_refused(
    dpop: DpopVerifier, key: Key
) -> None:
    other = ECKey.generate_key("P-256")
    assert "signature" in (await refused(dpop, proof(key, header={"jwk": other.as_dict()}))).detail


def forge(header: dict[str, Any], claims: dict[str, Any]) -> str:
    def enc(v: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(v).encode()).rstrip(b"=").decode()

    return f"{enc(header)}.{enc(claims)}.c2ln"


async def test_symmetric_and_none_algorithms_are_refused(dpop: DpopVerifier, key: Key) -> None:
    claims = {
        "jti": "j",
        "htm": "POST",
        "htu": URL,
        "iat": int(NOW),
        "ath": b64url_sha256(TOKEN.encode()),
    }
    for alg in ("none", "HS256"):
        header = {"typ": "dpop+jwt", "alg": alg, "jwk": key.as_dict()}
        assert "alg" in (await refused(dpop, forge(header, claims))).detail


async def test_a_jwk_that_is_not_an_object_is_refused(dpop: DpopVerifier, key: Key) -> None:
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": "https://evil.example/key"}
    assert "jwk" in (await refused(dpop, forge(header, {"jti": "j"}))).detail


async def test_a_missing_jti_is_refused(dpop: DpopVerifier, key: Key) -> None:
    await refused(dpop, proof(key, jti=None))


async def test_a_full_replay_cache_fails_closed(clock: FakeClock, key: Key) -> None:
    from wardgate.state import StateStoreUnavailable

    dpop = DpopVerifier(MemoryStateStore(max_keys=1, clock=clock), clock=clock)
    await dpop.verify(proof(key), method="POST", url=URL, access_token=TOKEN)
    with pytest.raises(StateStoreUnavailable):
        await dpop.verify(proof(key), method="POST", url=URL, access_token=TOKEN)


async def test_a_required_nonce_is_demanded_and_then_accepted(clock: FakeClock, key: Key) -> None:
    nonces = DpopNonces(b"s" * 32, clock=clock)
    dpop = DpopVerifier(
        MemoryStateStore(clock=clock),
        config=DpopConfig(require_nonce=True),
        nonces=nonces,
        clock=clock,
    )
    with pytest.raises(DpopNonceRequired) as info:
        await dpop.verify(proof(key), method="POST", url=URL, access_token=TOKEN)
    assert info.value.code == "wardgate.dpop_nonce_required"
    nonce = info.value.data["dpop_nonce"]
    assert await dpop.verify(proof(key, nonce=nonce), method="POST", url=URL, access_token=TOKEN)
    with pytest.raises(DpopNonceRequired):
        await dpop.verify(proof(key, nonce="forged"), method="POST", url=URL, access_token=TOKEN)
    clock.now += 600  # two windows later the nonce is stale
    with pytest.raises(DpopNonceRequired):
        await dpop.verify(
            proof(key, nonce=nonce, iat=clock.now), method="POST", url=URL, access_token=TOKEN
        )


def test_nonce_config_is_checked() -> None:
    with pytest.raises(ConfigError):
        DpopNonces(b"short")
    with pytest.raises(ConfigError):
        DpopVerifier(MemoryStateStore(), config=DpopConfig(require_nonce=True))
    with pytest.raises(ConfigError):
        DpopConfig(algorithms=frozenset({"HS256"}))


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://A.example", "https://a.example/"),
        ("https://a.example:443/x?q#f", "https://a.example/x"),
        ("http://a.example:80/x", "http://a.example/x"),
        ("https://a.example:8443/x", "https://a.example:8443/x"),
        ("https://[::1]:8443/x", "https://[::1]:8443/x"),
    ],
)
def test_htu_normalization(url: str, expected: str) -> None:
    assert normalize_htu(url) == expected


@pytest.mark.parametrize("url", ["ftp://a/x", "/relative", "https://a:99999/x", "https:///x"])
def test_htu_normalization_refuses_non_http_urls(url: str) -> None:
    with pytest.raises(AuthenticationFailed):
        normalize_htu(url)
