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
from ._support import RESOURCE, exchange, modern_call, modern_list

PRM = "/.well-known/oauth-protected-resource"


def demo(upstream: str) -> dict[str, Any]:
    return {"demo": {"transport": "http", "url": upstream}}


# ------------------------------------------------------------------------- PRM


@pytest.mark.parametrize("failure_status", [421, 401])
async def test_metadata_is_served_at_both_paths_without_auth(
    idp_ready: RunningIdp, demo_http_upstream: str, failure_status: int
) -> None:
    config = {
        "auth": {
            "resource": RESOURCE,
            "issuers": [{"issuer": idp_ready.issuer, "algorithms": ["ES256"]}],
            "allow_loopback_jwks": True,
            "failure_status": failure_status,
            "failure_floor_ms": 10,
            "scopes_supported": ["tools:read", "tools:call"],
        },
        "upstreams": demo(demo_http_upstream),
        "routes": {
            "demo": {"upstreams": ["demo"]},
            "other": {"upstreams": ["demo"]},
        },
    }
    async with run_gateway(config) as (base, _), aiohttp.ClientSession() as s:
        for path in (PRM, f"{PRM}/mcp/demo", f"{PRM}/mcp/other"):
            answer = await exchange(s, "GET", f"{base}{path}")
            assert answer.status == 200, (path, answer.raw)
            doc = answer.json
            assert doc["resource"] == RESOURCE
            assert doc["authorization_servers"] == [idp_ready.issuer]
            assert doc["scopes_supported"] == ["tools:read", "tools:call"]
            assert "ES256" in doc["dpop_signing_alg_values_supported"]
            assert answer.header(
                "content-type",
            ).startswith("application/json")  # type: ignore[union-attr]
        missing = await exchange(s, "GET", f"{base}{PRM}/mcp/nosuchroute")
        assert missing.status == 404

        # The challenge (401 mode) points at a document that answers.
        refused = await exchange(s, "POST", f"{base}/mcp/demo", body=b"{}", headers={})
        assert refused.status == failure_status
        if failure_status == 401:
            challenge = refused.header("www-authenticate") or ""
            found = re.search(r'resource_metadata="([^"]+)"', challenge)
            assert found and found.group(1) == f"{base}{PRM}/mcp/demo"
            assert (await exchange(s, "GET", found.group(1))).json["resource"] == RESOURCE


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
