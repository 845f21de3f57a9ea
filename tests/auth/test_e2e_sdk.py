"""End to end with a real OpenID provider (oidc-provider) and the official Python SDK
client, in both protocol eras: bearer tokens with a resource indicator, DPoP-bound
tokens (a fresh proof per HTTP request) and certificate-bound tokens over mTLS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest
from idp.provider import RunningIdp
from joserfc.jwk import ECKey
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from support.servers import run_gateway
from wardgate.gateway import Gateway
from wardgate.identity.principal import Principal

from ._support import RESOURCE, DpopAuth, Pki, tls_url

MODES = ["legacy", "auto"]
VERSIONS = {"legacy": "2025-11-25", "auto": "2026-07-28"}


def config(idp: RunningIdp, upstream: str, tls: dict[str, Any] | None = None) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "auth": {
            "resource": RESOURCE,
            "issuers": [{"issuer": idp.issuer, "tenant_claim": "tenant", "algorithms": ["ES256"]}],
            "allow_loopback_jwks": True,
            "failure_floor_ms": 10,
        },
        "upstreams": {"demo": {"transport": "http", "url": upstream}},
        "routes": {"demo": {"upstreams": ["demo"], "tools": {"deny": ["delete_*"]}}},
    }
    if tls is not None:
        cfg["server"] = {"tls": tls}
    return cfg


def spy(gateway: Gateway) -> list[Principal]:
    """Record the principal of every request the gateway authenticates."""
    assert gateway.auth is not None
    authenticator = gateway.auth.authenticator
    original = authenticator.authenticate
    seen: list[Principal] = []

    async def recording(request: Any) -> Principal:
        principal = await original(request)
        seen.append(principal)
        return principal

    authenticator.authenticate = recording  # type: ignore[method-assign]
    return seen


@asynccontextmanager
async def sdk(url: str, mode: str, http: httpx2.AsyncClient) -> AsyncIterator[Client]:
    async with http, Client(streamable_http_client(url, http_client=http), mode=mode) as client:  # type: ignore[arg-type]
        assert client.protocol_version == VERSIONS[mode]
        yield client


async def exercise(client: Client) -> None:
    tools = {t.name for t in (await client.list_tools()).tools}
    assert {"echo", "add", "utc_now"} <= tools and "delete_everything" not in tools
    result = await client.call_tool("add", {"a": 2, "b": 3})
    assert result.content[0].text == "5.0"  # type: ignore[union-attr]
    echoed = await client.call_tool("echo", {"text": "through the gate"})
    assert "through the gate" in echoed.content[0].text  # type: ignore[union-attr]


@pytest.mark.parametrize("mode", MODES)
async def test_bearer_token_with_resource_indicator(
    idp_ready: RunningIdp, demo_http_upstream: str, mode: str
) -> None:
    token = await idp_ready.token("agent", resource=RESOURCE)
    assert token["token_type"] == "Bearer"
    async with run_gateway(config(idp_ready, demo_http_upstream)) as (base, gateway):
        seen = spy(gateway)
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token['access_token']}"})
        async with sdk(f"{base}/mcp/demo", mode, http) as client:
            await exercise(client)
    assert seen and {(p.method, p.subject, p.tenant) for p in seen} == {
        ("jwt", "agent", "tenant-a")
    }


@pytest.mark.parametrize("mode", MODES)
async def test_dpop_bound_token_with_a_proof_per_request(
    idp_ready: RunningIdp, demo_http_upstream: str, mode: str
) -> None:
    key = ECKey.generate_key("P-256")
    token = await idp_ready.token("agent-dpop", dpop_key=key)
    assert token["token_type"] == "DPoP"
    auth = DpopAuth(token["access_token"], key)
    async with run_gateway(config(idp_ready, demo_http_upstream)) as (base, gateway):
        seen = spy(gateway)
        async with sdk(f"{base}/mcp/demo", mode, httpx2.AsyncClient(auth=auth)) as client:
            await exercise(client)
    assert len(auth.proofs) >= 3 and len(set(auth.proofs)) == len(auth.proofs)
    assert len(seen) == len(auth.proofs)  # every request authenticated, each with its proof
    assert {(p.method, p.subject, p.cnf.get("jkt")) for p in seen} == {
        ("dpop", "agent-dpop", key.thumbprint())
    }


@pytest.mark.parametrize("client_cert", ["required", "optional"])
@pytest.mark.parametrize("mode", MODES)
async def test_certificate_bound_token_over_mtls(
    idp_ready: RunningIdp, demo_http_upstream: str, pki: Pki, mode: str, client_cert: str
) -> None:
    mine = pki.certs["agent"]
    token = await idp_ready.token("agent-mtls", client_cert_pem=mine.pem)
    tls = pki.tls_config(client_cert)
    async with run_gateway(config(idp_ready, demo_http_upstream, tls)) as (base, gateway):
        seen = spy(gateway)
        http = httpx2.AsyncClient(
            verify=pki.client_context("agent"),
            headers={"Authorization": f"Bearer {token['access_token']}"},
        )
        async with sdk(f"{tls_url(base)}/mcp/demo", mode, http) as client:
            await exercise(client)
    assert seen and {(p.method, p.subject) for p in seen} == {("mtls", "agent-mtls")}
    assert all("x5t#S256" in p.cnf for p in seen)


@pytest.mark.parametrize("mode", MODES)
async def test_the_sdk_client_without_credentials_gets_nothing(
    idp_ready: RunningIdp, demo_http_upstream: str, mode: str
) -> None:
    async with run_gateway(config(idp_ready, demo_http_upstream)) as (base, gateway):
        seen = spy(gateway)
        with pytest.raises(Exception):  # noqa: B017 - the SDK's error type varies by era
            async with sdk(f"{base}/mcp/demo", mode, httpx2.AsyncClient(timeout=10)) as client:
                await client.list_tools()
    assert seen == []
