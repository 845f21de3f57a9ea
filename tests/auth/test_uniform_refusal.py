"""The attack battery through a running gateway: every authentication failure gets the
identical answer (status, headers, body but the decision id), never sooner than the
floor; legitimate callers (real IdP bearer, DPoP, certificate-bound, SPIFFE, two local
issuers) still pass.

The 421 gateway terminates TLS itself with ``client_cert = "optional"`` and a client CA
bundle of two CAs: ``example.org`` workloads (the client CA) and ``partner.example``
(the partner CA). So a partner certificate claiming an ``example.org`` SPIFFE id gets
through TLS and must be refused by the SPIFFE check, at the HTTP layer.
"""

from __future__ import annotations

import logging
import ssl
import statistics
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from idp.provider import RunningIdp

from wardgate.identity import AuthRequest

from ._battery import LEGIT, REASONS, REFUSALS, TLS_LEGIT, TLS_REFUSALS, Env, battery_env
from ._support import Answer, Pki, exchange, refusal_shape

pytestmark = pytest.mark.asyncio(loop_scope="module")

FLOOR_421_MS = 100.0
FLOOR_401_MS = 60.0
SCOPES = ["tools:read", "tools:call"]
TIMES: dict[str, dict[str, float]] = {"421": {}, "401": {}}
NON_TLS_REFUSALS = [n for n in REFUSALS if n not in TLS_REFUSALS]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env421(idp: RunningIdp, demo_http_upstream: str, pki: Pki) -> AsyncIterator[Env]:
    async with battery_env(idp, demo_http_upstream, pki, tls=True, floor_ms=FLOOR_421_MS) as env:
        yield env


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env401(idp: RunningIdp, demo_http_upstream: str, pki: Pki) -> AsyncIterator[Env]:
    async with battery_env(
        idp,
        demo_http_upstream,
        pki,
        tls=False,
        failure_status=401,
        floor_ms=FLOOR_401_MS,
        scopes_supported=SCOPES,
    ) as env:
        yield env


async def refused(env: Env, name: str, caplog: pytest.LogCaptureFixture) -> Answer:
    """Run one attack; check the gateway logged the reason this case stands for."""
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="wardgate.auth"):
        answer = await REFUSALS[name](env)
    failures = [r.getMessage() for r in caplog.records if r.name == "wardgate.auth"]
    assert failures, "no authentication failure was logged"
    assert REASONS[name] in failures[-1], failures[-1]
    return answer


def assert_legit(answer: Answer) -> None:
    assert answer.status == 200, answer.raw
    result = answer.json["result"]
    assert result["content"][0]["text"] == "5.0"


# ---------------------------------------------------------------------- 421 (TLS)


@pytest.mark.parametrize("name", list(LEGIT))
async def test_legitimate_callers_pass_421(env421: Env, name: str) -> None:
    assert_legit(await LEGIT[name](env421))


@pytest.mark.parametrize("name", list(REFUSALS))
async def test_every_failure_gets_the_identical_421(
    env421: Env, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    reference = refusal_shape(await env421.call())
    answer = await refused(env421, name, caplog)
    TIMES["421"][name] = answer.elapsed
    status, headers, body = refusal_shape(answer)
    assert status == 421
    assert (status, headers, body) == reference
    assert body == {
        "jsonrpc": "2.0",
        "error": {"code": -32600, "message": "Misdirected Request", "data": {}},
    }
    assert all(k != "www-authenticate" for k, _ in headers)
    assert answer.elapsed >= FLOOR_421_MS / 1000, f"{name} answered in {answer.elapsed:.4f}s"


@pytest.mark.parametrize("cert", ["expired", "stranger"])
async def test_client_certs_the_tls_layer_cannot_verify_never_reach_http(
    env421: Env, pki: Pki, cert: str
) -> None:
    """An expired certificate or one from an untrusted CA fails the TLS handshake itself
    (OpenSSL verifies it before any HTTP is read): there is no HTTP answer to compare."""
    connector = aiohttp.TCPConnector(ssl=pki.client_context(cert))
    async with aiohttp.ClientSession(connector=connector) as session:
        with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)):
            await exchange(session, "POST", env421.url, body=b"{}", headers={})


async def test_jku_and_x5u_are_never_fetched(env421: Env) -> None:
    await REFUSALS["jku_elsewhere"](env421)
    await REFUSALS["x5u_elsewhere"](env421)
    assert not [h for h in env421.jwks.hits if h.startswith("/evil/")], env421.jwks.hits
    assert all(h in ("/a/jwks", "/b/jwks") for h in env421.jwks.hits), env421.jwks.hits


async def test_the_tenant_comes_from_the_issuer_not_the_token(env421: Env, pki: Pki) -> None:
    """Issuer B has a fixed tenant: its token claiming ``tenant-a`` still yields
    ``tenant-b`` (checked on the gateway's own authenticator, which the edge calls)."""
    auth = env421.gateway.auth
    assert auth is not None
    authenticator = auth.authenticator

    async def principal(authorization: str | None, cert: bytes | None = None):  # type: ignore[no-untyped-def]
        return await authenticator.authenticate(
            AuthRequest("POST", env421.url, authorization=authorization, peer_certificate=cert)
        )

    b = await principal(f"Bearer {env421.b.mint(tenant='tenant-a')}")
    assert (b.issuer, b.tenant, b.method) == (env421.b.name, "tenant-b", "jwt")
    a = await principal(f"Bearer {env421.a.mint()}")
    assert (a.issuer, a.tenant) == (env421.a.name, "tenant-a")
    real = await principal(f"Bearer {env421.bearer}")
    assert (real.subject, real.tenant, real.method) == ("agent", "tenant-a", "jwt")
    bound = await principal(f"Bearer {env421.mtls_token}", pki.certs["agent"].der)
    assert (bound.subject, bound.method) == ("agent-mtls", "mtls")
    svid = await principal(None, pki.certs["agent"].der)
    assert (svid.subject, svid.tenant, svid.method) == (
        "spiffe://example.org/ns/prod/sa/agent",
        "tenant-w",
        "spiffe",
    )
    # Both local-issuer tokens pass through the gateway too (not just the authenticator).
    assert_legit(await env421.call(f"Bearer {env421.b.mint(tenant='tenant-a')}"))


# -------------------------------------------------------------------- 401 (plain)


@pytest.mark.parametrize("name", [n for n in LEGIT if n not in TLS_LEGIT])
async def test_legitimate_callers_pass_401(env401: Env, name: str) -> None:
    assert_legit(await LEGIT[name](env401))


@pytest.mark.parametrize("name", [n for n in NON_TLS_REFUSALS if n != "unknown_route"])
async def test_every_failure_gets_the_identical_401(
    env401: Env, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    reference = refusal_shape(await env401.call())
    answer = await refused(env401, name, caplog)
    TIMES["401"][name] = answer.elapsed
    status, headers, body = refusal_shape(answer)
    assert (status, headers, body) == reference
    assert status == 401
    meta = f"{env401.base}/.well-known/oauth-protected-resource/mcp/demo"
    assert answer.header("www-authenticate") == (
        f'Bearer resource_metadata="{meta}", scope="tools:read tools:call"'
    )
    assert body["error"]["message"] == "Unauthorized"
    assert answer.elapsed >= FLOOR_401_MS / 1000, f"{name} answered in {answer.elapsed:.4f}s"


async def test_an_unknown_route_gets_the_401_a_known_one_gets(env401: Env) -> None:
    """Unknown paths are refused like failed authentication, and the challenge names the
    metadata URL of the path asked for, exactly as for a route that exists: the
    challenge is no oracle for which routes exist."""
    answer = await REFUSALS["unknown_route"](env401)
    status, _, body = refusal_shape(answer)
    reference_status, _, reference_body = refusal_shape(await env401.call())
    assert (status, body) == (reference_status, reference_body)
    meta = f"{env401.base}/.well-known/oauth-protected-resource/mcp/nosuchroute"
    assert answer.header("www-authenticate") == (
        f'Bearer resource_metadata="{meta}", scope="tools:read tools:call"'
    )
    assert answer.elapsed >= FLOOR_401_MS / 1000


# ------------------------------------------------------------------------ timing


def _spread(label: str, floor_ms: float, times: dict[str, float]) -> str:
    ms = sorted((v * 1000, k) for k, v in times.items())
    values = [v for v, _ in ms]
    lines = [
        f"[{label}] floor {floor_ms:.0f} ms, {len(values)} causes: "
        f"min {values[0]:.1f} ({ms[0][1]}), median {statistics.median(values):.1f}, "
        f"max {values[-1]:.1f} ({ms[-1][1]}), spread {values[-1] - values[0]:.1f} ms, "
        f"stdev {statistics.pstdev(values):.1f} ms"
    ]
    lines += [f"    {v:7.1f} ms  {k}" for v, k in ms]
    return "\n".join(lines)


async def test_zz_failure_time_spread(capsys: pytest.CaptureFixture[str]) -> None:
    """Prints the spread of refusal times across causes (measured by the battery above)
    and asserts only the floor."""
    if not TIMES["421"] and not TIMES["401"]:
        pytest.skip("the battery did not run in this session")
    for label, floor in (("421", FLOOR_421_MS), ("401", FLOOR_401_MS)):
        if TIMES[label]:
            assert min(TIMES[label].values()) >= floor / 1000
            with capsys.disabled():
                print("\n" + _spread(label, floor, TIMES[label]))
