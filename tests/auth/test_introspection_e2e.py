"""End to end: opaque access tokens from a real OpenID provider (oidc-provider), checked by
RFC 7662 introspection at the gateway's edge, used by the official Python SDK client."""

from __future__ import annotations

import logging
import secrets
from typing import Any

import httpx2
import pytest
from idp.provider import (
    GATEWAY_CLIENT,
    GATEWAY_SECRET,
    OPAQUE_RESOURCE,
    RESOURCE,
    RunningIdp,
)
from joserfc.jwk import ECKey

from support.servers import run_gateway
from wardgate.identity import IntrospectionVerifier

from ._support import DpopAuth
from .test_e2e_sdk import exercise, sdk, spy

SECRET_ENV = "WARDGATE_TEST_INTROSPECTION_SECRET"


@pytest.fixture(autouse=True)
def introspection_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, GATEWAY_SECRET)


def config(idp: RunningIdp, upstream: str) -> dict[str, Any]:
    """The gateway is the opaque-token resource; JWTs for RESOURCE are accepted too."""
    return {
        "auth": {
            "resource": OPAQUE_RESOURCE,
            "issuers": [
                {
                    "issuer": idp.issuer,
                    "audience": RESOURCE,
                    "tenant_claim": "tenant",
                    "algorithms": ["ES256"],
                }
            ],
            "introspection": {
                "endpoint": idp.introspection_endpoint,
                "client_id": GATEWAY_CLIENT,
                "client_secret_env": SECRET_ENV,
                "issuer": idp.issuer,
                "tenant_claim": "tenant",
            },
            "allow_loopback_jwks": True,
            "failure_floor_ms": 10,
        },
        "upstreams": {"demo": {"transport": "http", "url": upstream}},
        "routes": {"demo": {"upstreams": ["demo"], "tools": {"deny": ["delete_*"]}}},
    }


def count_introspections(verifier: IntrospectionVerifier) -> list[str]:
    """Record every token the gateway actually sends to the introspection endpoint."""
    fetcher = verifier._fetcher  # private on purpose: count real round trips
    original = fetcher.post_form_json
    sent: list[str] = []

    async def recording(url: str, form: Any, **kw: Any) -> dict[str, Any]:
        sent.append(form["token"])
        return await original(url, form, **kw)

    fetcher.post_form_json = recording  # type: ignore[method-assign]
    return sent


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_an_opaque_token_calls_a_tool_through_the_gateway(
    idp_ready: RunningIdp,
    demo_http_upstream: str,
    mode: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    token = (await idp_ready.token("agent", resource=OPAQUE_RESOURCE))["access_token"]
    assert token.count(".") != 2  # really opaque, not a JWT
    async with run_gateway(config(idp_ready, demo_http_upstream)) as (base, gateway):
        assert gateway.auth is not None and gateway.auth._introspection is not None
        sent = count_introspections(gateway.auth._introspection)
        seen = spy(gateway)
        http = httpx2.AsyncClient(headers={"authorization": f"Bearer {token}"})
        async with sdk(f"{base}/mcp/demo", mode, http) as client:
            await exercise(client)
    assert seen and {(p.method, p.subject, p.client_id, p.tenant, p.issuer) for p in seen} == {
        ("introspection", "agent", "agent", "tenant-a", idp_ready.issuer)
    }
    assert all(p.scopes == {"tools:read", "tools:call"} for p in seen)
    assert sent == [token]  # asked once; every later request was answered from the cache
    assert GATEWAY_SECRET not in caplog.text


async def test_a_dpop_bound_opaque_token_needs_a_proof_per_request(
    idp_ready: RunningIdp, demo_http_upstream: str
) -> None:
    key = ECKey.generate_key("P-256")
    token = await idp_ready.token("agent-dpop", resource=OPAQUE_RESOURCE, dpop_key=key)
    assert token["token_type"] == "DPoP"
    auth = DpopAuth(token["access_token"], key)
    async with run_gateway(config(idp_ready, demo_http_upstream)) as (base, gateway):
        seen = spy(gateway)
        async with sdk(f"{base}/mcp/demo", "auto", httpx2.AsyncClient(auth=auth)) as client:
            await exercise(client)
    assert len(seen) == len(auth.proofs) >= 3
    assert {(p.method, p.subject, p.cnf.get("jkt")) for p in seen} == {
        ("dpop", "agent-dpop", key.thumbprint())
    }


async def test_a_jwt_keeps_going_to_the_jwt_verifier(
    idp_ready: RunningIdp, demo_http_upstream: str
) -> None:
    token = (await idp_ready.token("agent", resource=RESOURCE))["access_token"]
    async with run_gateway(config(idp_ready, demo_http_upstream)) as (base, gateway):
        assert gateway.auth is not None and gateway.auth._introspection is not None
        sent = count_introspections(gateway.auth._introspection)
        seen = spy(gateway)
        http = httpx2.AsyncClient(headers={"authorization": f"Bearer {token}"})
        async with sdk(f"{base}/mcp/demo", "auto", http) as client:
            await exercise(client)
    assert seen and {p.method for p in seen} == {"jwt"}
    assert sent == []


@pytest.mark.parametrize("token", ["made-up-opaque-token", secrets.token_urlsafe(32)])
async def test_an_unknown_opaque_token_gets_nothing(
    idp_ready: RunningIdp, demo_http_upstream: str, token: str
) -> None:
    async with run_gateway(config(idp_ready, demo_http_upstream)) as (base, gateway):
        seen = spy(gateway)
        http = httpx2.AsyncClient(headers={"authorization": f"Bearer {token}"}, timeout=10)
        with pytest.raises(Exception):  # noqa: B017 - the SDK's error type varies by era
            async with sdk(f"{base}/mcp/demo", "auto", http) as client:
                await client.list_tools()
    assert seen == []


async def test_an_opaque_token_for_another_resource_is_refused(
    idp_ready: RunningIdp, demo_http_upstream: str
) -> None:
    # The same provider, the same introspecting client, but the gateway is another
    # resource: the answer's aud names the opaque resource, not this gateway.
    token = (await idp_ready.token("agent", resource=OPAQUE_RESOURCE))["access_token"]
    cfg = config(idp_ready, demo_http_upstream)
    cfg["auth"]["resource"] = "https://elsewhere.example.com/mcp"
    async with run_gateway(cfg) as (base, gateway):
        seen = spy(gateway)
        async with httpx2.AsyncClient(timeout=10) as http:
            answer = await http.post(
                f"{base}/mcp/demo",
                headers={
                    "authorization": f"Bearer {token}",
                    "content-type": "application/json",
                    "accept": "application/json, text/event-stream",
                },
                content=b'{"jsonrpc":"2.0","id":1,"method":"ping"}',
            )
    assert answer.status_code == 421
    assert seen == []
