"""Protected Resource Metadata (RFC 9728) at both well-known paths, without auth; and
per-tool scopes and step-up MFA (``[routes.X.auth]``) through the running gateway."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import httpx2
import pytest
from idp.provider import RunningIdp
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client

from support.servers import run_gateway

from ._local import LocalGateway, local_gateway
from ._support import RESOURCE, exchange, modern_call, modern_list, refusal_shape

PRM = "/.well-known/oauth-protected-resource"


def demo(upstream: str) -> dict[str, Any]:
    return {"demo": {"transport": "http", "url": upstream}}


# ------------------------------------------------------------------------- PRM


def prm_config(issuer: str, upstream: str, failure_status: int, **auth: Any) -> dict[str, Any]:
    return {
        "auth": {
            "resource": RESOURCE,
            "issuers": [{"issuer": issuer, "algorithms": ["ES256"]}],
            "allow_loopback_jwks": True,
            "failure_status": failure_status,
            "failure_floor_ms": 10,
            "scopes_supported": ["tools:read", "tools:call"],
            **auth,
        },
        "upstreams": demo(upstream),
        "routes": {"demo": {"upstreams": ["demo"]}, "other": {"upstreams": ["demo"]}},
    }


def same_answer(answer: Any) -> tuple[int, tuple[tuple[str, str], ...], bytes]:
    headers = tuple(sorted((k, v) for k, v in answer.headers if k != "date"))
    return answer.status, headers, answer.raw


async def test_metadata_is_served_in_401_mode_and_never_lists_routes(
    idp_ready: RunningIdp, demo_http_upstream: str
) -> None:
    """Every path under the PRM path gets the same document, byte for byte: asking for
    a route's metadata tells a prober nothing about whether the route exists."""
    config = prm_config(idp_ready.issuer, demo_http_upstream, 401)
    async with run_gateway(config) as (base, _), aiohttp.ClientSession() as s:
        reference = await exchange(s, "GET", f"{base}{PRM}/mcp/demo")
        assert reference.status == 200, reference.raw
        doc = reference.json
        assert doc["resource"] == RESOURCE
        assert doc["authorization_servers"] == [idp_ready.issuer]
        assert doc["scopes_supported"] == ["tools:read", "tools:call"]
        assert "ES256" in doc["dpop_signing_alg_values_supported"]
        assert reference.header("content-type").startswith("application/json")  # type: ignore[union-attr]
        for path in (PRM, f"{PRM}/", f"{PRM}/mcp/other", f"{PRM}/mcp/nosuchroute", f"{PRM}/x/y/z"):
            answer = await exchange(s, "GET", f"{base}{path}")
            assert same_answer(answer) == same_answer(reference), path

        # The challenge points at a document that answers.
        refused = await exchange(s, "POST", f"{base}/mcp/demo", body=b"{}", headers={})
        assert refused.status == 401
        challenge = refused.header("www-authenticate") or ""
        found = re.search(r'resource_metadata="([^"]+)"', challenge)
        assert found and found.group(1) == f"{base}{PRM}/mcp/demo"
        assert (await exchange(s, "GET", found.group(1))).json["resource"] == RESOURCE


async def test_metadata_is_off_by_default_in_421_mode(
    idp_ready: RunningIdp, demo_http_upstream: str
) -> None:
    """In 421 mode a prober learns nothing, not even that OAuth is here: the PRM paths
    get the very refusal an unknown path gets."""
    config = prm_config(idp_ready.issuer, demo_http_upstream, 421)
    async with run_gateway(config) as (base, _), aiohttp.ClientSession() as s:
        unknown = refusal_shape(await exchange(s, "GET", f"{base}/nothing/here"))
        assert unknown[0] == 421
        for path in (PRM, f"{PRM}/mcp/demo", f"{PRM}/mcp/nosuchroute"):
            assert refusal_shape(await exchange(s, "GET", f"{base}{path}")) == unknown, path
        # Beside it, an authenticated call still works.
        token = (await idp_ready.token())["access_token"]
        body, headers = modern_list()
        headers = headers | {"authorization": f"Bearer {token}"}
        ok = await exchange(s, "POST", f"{base}/mcp/demo", body=body, headers=headers)
        assert ok.status == 200, ok.raw


@pytest.mark.parametrize("exposure", ["minimal", "full"])
async def test_in_421_mode_the_operator_chooses_what_metadata_reveals(
    idp_ready: RunningIdp, demo_http_upstream: str, exposure: str
) -> None:
    config = prm_config(idp_ready.issuer, demo_http_upstream, 421, metadata_exposure=exposure)
    async with run_gateway(config) as (base, _), aiohttp.ClientSession() as s:
        root = await exchange(s, "GET", f"{base}{PRM}")
        missing = await exchange(s, "GET", f"{base}{PRM}/mcp/nosuchroute")
        assert root.status == 200
        assert same_answer(root) == same_answer(missing)
        if exposure == "minimal":
            assert root.json == {
                "resource": RESOURCE,
                "authorization_servers": [idp_ready.issuer],
            }
        else:
            assert root.json["scopes_supported"] == ["tools:read", "tools:call"]


async def test_metadata_names_configured_authorization_servers_and_public_url(
    demo_http_upstream: str,
) -> None:
    async with (
        local_gateway(
            demo(demo_http_upstream),
            {"demo": {"upstreams": ["demo"]}},
            authorization_servers=["https://login.example.com"],
            public_url="https://mcp.example.com",
            failure_status=401,
        ) as g,
        aiohttp.ClientSession() as s,
    ):
        doc = (await exchange(s, "GET", f"{g.base}{PRM}/mcp/demo")).json
        assert doc["resource"] == RESOURCE
        assert doc["authorization_servers"] == ["https://login.example.com"]
        refused = await exchange(s, "POST", g.url("demo"), body=b"{}", headers={})
        assert refused.header("www-authenticate") == (
            f'Bearer resource_metadata="https://mcp.example.com{PRM}/mcp/demo"'
        )


# ---------------------------------------------------------------------- scopes


def scoped_routes() -> dict[str, Any]:
    return {
        "demo": {"upstreams": ["demo"], "auth": {"tool_scopes": {"add": ["calc"]}}},
        "strong": {"upstreams": ["demo"], "auth": {"mfa_amr": ["hwk"]}},
    }


async def _tools(s: aiohttp.ClientSession, g: LocalGateway, route: str, **claims: Any) -> set[str]:
    body, headers = modern_list()
    answer = await exchange(
        s, "POST", g.url(route), body=body, headers=headers | g.bearer(**claims)
    )
    assert answer.status == 200, answer.raw
    return {t["name"] for t in answer.json["result"]["tools"]}


async def _add(s: aiohttp.ClientSession, g: LocalGateway, route: str, **claims: Any):  # type: ignore[no-untyped-def]
    body, headers = modern_call("add", {"a": 2, "b": 3})
    return await exchange(s, "POST", g.url(route), body=body, headers=headers | g.bearer(**claims))


async def test_a_tool_scope_hides_and_refuses_the_tool(demo_http_upstream: str) -> None:
    async with (
        local_gateway(demo(demo_http_upstream), scoped_routes()) as g,
        aiohttp.ClientSession() as s,
    ):
        without = await _tools(s, g, "demo", scope="tools:read tools:call")
        assert "add" not in without and {"echo", "utc_now"} <= without

        refused = await _add(s, g, "demo", scope="tools:read tools:call")
        assert refused.status == 403, refused.raw
        meta = f"{g.base}/.well-known/oauth-protected-resource/mcp/demo"
        assert refused.header("www-authenticate") == (
            f'Bearer error="insufficient_scope", scope="calc", resource_metadata="{meta}"'
        )
        assert "calc" not in refused.raw.decode()  # the body tells nothing beyond the header

        assert "add" in await _tools(s, g, "demo", scope="tools:read calc")
        allowed = await _add(s, g, "demo", scope="tools:read calc")
        assert allowed.status == 200, allowed.raw
        assert allowed.json["result"]["content"][0]["text"] == "5.0"


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_the_sdk_client_sees_only_what_its_scopes_allow(
    demo_http_upstream: str, mode: str
) -> None:
    async with local_gateway(demo(demo_http_upstream), scoped_routes()) as g:
        for scope, visible in (("tools:read", False), ("tools:read calc", True)):
            http = httpx2.AsyncClient(headers=g.bearer(scope=scope))
            transport = streamable_http_client(g.url("demo"), http_client=http)
            async with http, Client(transport, mode=mode) as client:  # type: ignore[arg-type]
                names = {t.name for t in (await client.list_tools()).tools}
                assert ("add" in names) is visible and "echo" in names
                if visible:
                    result = await client.call_tool("add", {"a": 2, "b": 3})
                    assert result.content[0].text == "5.0"  # type: ignore[union-attr]
                else:
                    with pytest.raises(MCPError):
                        await client.call_tool("add", {"a": 2, "b": 3})


@pytest.mark.parametrize("amr", [None, ["pwd"], "pwd", ["otp", "sms"]])
async def test_step_up_mfa_refuses_a_token_without_hwk(demo_http_upstream: str, amr: Any) -> None:
    async with (
        local_gateway(demo(demo_http_upstream), scoped_routes()) as g,
        aiohttp.ClientSession() as s,
    ):
        refused = await _add(s, g, "strong", amr=amr)
        assert refused.status == 401, refused.raw
        meta = f"{g.base}/.well-known/oauth-protected-resource/mcp/strong"
        assert refused.header("www-authenticate") == (
            f'Bearer error="insufficient_user_authentication", resource_metadata="{meta}"'
        )
        # The other route does not demand it.
        assert (await _add(s, g, "demo", scope="calc", amr=amr)).status == 200


@pytest.mark.parametrize("amr", [["hwk"], ["pwd", "hwk"], "hwk"])
async def test_step_up_mfa_admits_a_token_with_hwk(demo_http_upstream: str, amr: Any) -> None:
    async with (
        local_gateway(demo(demo_http_upstream), scoped_routes()) as g,
        aiohttp.ClientSession() as s,
    ):
        allowed = await _add(s, g, "strong", amr=amr)
        assert allowed.status == 200, allowed.raw
        assert allowed.json["result"]["content"][0]["text"] == "5.0"
