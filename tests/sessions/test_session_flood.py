"""A session flood against the real listener: one principal opening sessions (and legacy
SSE streams) in a loop is refused at its cap, with the same answer as at the global cap,
while another principal still opens one and calls in existing sessions still work."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson
from auth._support import (
    ACCEPT,
    INITIALIZE_PARAMS,
    LEGACY,
    RESOURCE,
    Answer,
    LocalIssuer,
    exchange,
    jwks_server,
    legacy_message,
    refusal_shape,
)

from support.servers import run_gateway
from wardgate.gateway import Gateway

ROUTE = "demo"


class Gw:
    def __init__(self, base: str, issuer: LocalIssuer, gateway: Gateway) -> None:
        self.base, self.issuer, self.gateway = base, issuer, gateway

    def auth(self, sub: str, tenant: str = "tenant-a") -> dict[str, str]:
        return {"authorization": f"Bearer {self.issuer.mint(sub=sub, tenant=tenant)}"}


@asynccontextmanager
async def gateway(upstream: str, **server: Any) -> AsyncIterator[Gw]:
    issuer = LocalIssuer.create("https://idp-local.example", "flood")
    async with jwks_server({"/jwks": issuer.jwks}) as jwks:
        config = {
            "server": server,
            "auth": {
                "resource": RESOURCE,
                "issuers": [
                    {
                        "issuer": issuer.name,
                        "jwks_uri": f"{jwks.base}/jwks",
                        "tenant_claim": "tenant",
                    }
                ],
                "allow_loopback_jwks": True,
                "failure_floor_ms": 1,
            },
            "upstreams": {"demo": {"transport": "http", "url": upstream}},
            "routes": {ROUTE: {"upstreams": ["demo"]}},
        }
        async with run_gateway(config) as (base, gw):
            yield Gw(base, issuer, gw)


async def _initialize(
    s: aiohttp.ClientSession, gw: Gw, sub: str, tenant: str = "tenant-a"
) -> Answer:
    headers = {"content-type": "application/json", "accept": ACCEPT} | gw.auth(sub, tenant)
    body = legacy_message("initialize", INITIALIZE_PARAMS)
    return await exchange(s, "POST", f"{gw.base}/mcp/{ROUTE}", body=body, headers=headers)


async def _echo(s: aiohttp.ClientSession, gw: Gw, sub: str, sid: str, text: str) -> Any:
    headers = {
        "content-type": "application/json",
        "accept": ACCEPT,
        "mcp-session-id": sid,
        "mcp-protocol-version": LEGACY,
    } | gw.auth(sub)
    body = legacy_message("tools/call", {"name": "echo", "arguments": {"text": text}}, 5)
    answer = await exchange(s, "POST", f"{gw.base}/mcp/{ROUTE}", body=body, headers=headers)
    assert answer.status == 200, answer.raw
    return answer.json["result"]["content"][0]["text"]


def _is_cap_refusal(answer: Answer) -> None:
    assert answer.status == 503, answer.raw
    assert answer.header("retry-after") is not None and answer.header("retry-after").isdigit()
    body = orjson.loads(answer.raw)
    assert body["error"]["data"]["decisionId"]
    assert "mcp-session-id" not in dict(answer.headers)


async def test_a_session_flood_stops_at_the_principals_cap(demo_http_upstream: str) -> None:
    async with (
        gateway(demo_http_upstream, max_sessions_per_principal=3) as gw,
        aiohttp.ClientSession() as s,
    ):
        mine = []
        for _ in range(3):
            answer = await _initialize(s, gw, "alice")
            assert answer.status == 200, answer.raw
            mine.append(answer.header("mcp-session-id"))
        refused = await asyncio.gather(*(_initialize(s, gw, "alice") for _ in range(10)))
        for answer in refused:
            _is_cap_refusal(answer)

        theirs = await _initialize(s, gw, "bob")
        assert theirs.status == 200 and theirs.header("mcp-session-id")
        assert await _echo(s, gw, "alice", str(mine[0]), "mine") == "mine"

        # The same subject in another tenant is another principal.
        other = await _initialize(s, gw, "alice", tenant="tenant-b")
        assert other.status == 200, other.raw


async def test_the_global_cap_answers_as_the_principals_cap_does(demo_http_upstream: str) -> None:
    async with (
        gateway(demo_http_upstream, max_sessions=2, max_sessions_per_principal=1) as gw,
        aiohttp.ClientSession() as s,
    ):
        first = await _initialize(s, gw, "alice")
        assert first.status == 200
        assert (await _initialize(s, gw, "bob")).status == 200
        at_own_cap = await _initialize(s, gw, "alice")
        at_global_cap = await _initialize(s, gw, "carol")
        _is_cap_refusal(at_own_cap)
        _is_cap_refusal(at_global_cap)
        # Nothing tells carol that the others hold the places, nor alice that it is hers.
        assert refusal_shape(at_own_cap) == refusal_shape(at_global_cap)
        sid = str(first.header("mcp-session-id"))
        assert await _echo(s, gw, "alice", sid, "still") == "still"


async def _open_stream(
    s: aiohttp.ClientSession, gw: Gw, sub: str
) -> tuple[aiohttp.ClientResponse, str | None]:
    resp = await s.get(
        f"{gw.base}/sse/{ROUTE}", headers={"accept": "text/event-stream"} | gw.auth(sub)
    )
    if resp.status != 200:
        return resp, None
    # The first event names the endpoint to POST to.
    async with asyncio.timeout(10):
        while True:
            line = (await resp.content.readline()).decode().strip()
            if line.startswith("data:"):
                return resp, line[5:].strip()


async def test_legacy_sse_streams_are_capped_per_principal(demo_http_upstream: str) -> None:
    async with (
        gateway(demo_http_upstream, max_sessions_per_principal=2) as gw,
        aiohttp.ClientSession() as s,
    ):
        streams = [await _open_stream(s, gw, "alice") for _ in range(2)]
        assert all(endpoint for _, endpoint in streams)
        resp, endpoint = await _open_stream(s, gw, "alice")
        assert endpoint is None
        body = await resp.read()
        _is_cap_refusal(
            Answer(resp.status, [(k.lower(), v) for k, v in resp.headers.items()], body, 0)
        )

        bobs, bob_endpoint = await _open_stream(s, gw, "bob")
        assert bob_endpoint

        # A stream already open still carries a handshake.
        _, endpoint = streams[0]
        headers = {"content-type": "application/json"} | gw.auth("alice")
        posted = await exchange(
            s,
            "POST",
            f"{gw.base}{endpoint}",
            body=legacy_message("initialize", INITIALIZE_PARAMS),
            headers=headers,
        )
        assert posted.status == 202

        # A stream that ends gives its place back.
        streams[1][0].close()
        async with asyncio.timeout(10):  # bounded wait for the gateway to see the disconnect
            while gw.gateway.sessions.channels > 2:
                await asyncio.sleep(0.01)
        again, endpoint = await _open_stream(s, gw, "alice")
        assert endpoint
        for resp, _ in [*streams, (bobs, None), (again, None)]:
            resp.close()
