"""A sealed session id stays its principal's on every replica: two gateways sharing the
sealing key and Redis, a local issuer's real tokens. Mallory holding Alice's id gets
what an unknown id gets (404) on the replica that did not open it, and on the one that
did; Alice, beside her, is served on both."""

from __future__ import annotations

import base64
import secrets
from typing import Any

import aiohttp
import pytest
from auth._support import (
    INITIALIZE_PARAMS,
    RESOURCE,
    LocalIssuer,
    bearer_headers,
    exchange,
    jwks_server,
    legacy_message,
)

from support.servers import run_gateway

REDIS_URL = "redis://127.0.0.1:6379/0"
ROUTE = "demo"


def _headers(issuer: LocalIssuer, sub: str, sid: str | None) -> dict[str, str]:
    return bearer_headers(issuer.mint(sub=sub), sid)


async def test_another_principal_on_a_sealed_id_is_refused_on_every_replica(
    demo_http_upstream: str, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WG_FLEET_KEY", base64.b64encode(secrets.token_bytes(32)).decode())
    issuer = LocalIssuer.create("https://idp-local.example", "local")
    async with jwks_server({"/jwks": issuer.jwks}) as jwks:
        config: dict[str, Any] = {
            "server": {
                "sealed_sessions": {
                    "keys": ["WG_FLEET_KEY"],
                    "redis": {"url": REDIS_URL, "key_prefix": redis_prefix},
                }
            },
            "auth": {
                "resource": RESOURCE,
                "issuers": [{"issuer": issuer.name, "jwks_uri": f"{jwks.base}/jwks"}],
                "allow_loopback_jwks": True,
                "failure_floor_ms": 10,
                "replay_store": "redis",
                "redis_key_prefix": redis_prefix,
            },
            "upstreams": {"demo": {"transport": "http", "url": demo_http_upstream}},
            "routes": {ROUTE: {"upstreams": ["demo"]}},
        }
        async with (
            run_gateway(config) as (one, _),
            run_gateway(config) as (two, _),
            aiohttp.ClientSession() as s,
        ):
            init = await exchange(
                s,
                "POST",
                f"{one}/mcp/{ROUTE}",
                body=legacy_message("initialize", INITIALIZE_PARAMS),
                headers=_headers(issuer, "alice", None),
            )
            assert init.status == 200, init.raw
            sid = init.header("mcp-session-id")
            assert sid is not None and sid.startswith("s")
            for base in (two, one):
                stolen = await exchange(
                    s,
                    "POST",
                    f"{base}/mcp/{ROUTE}",
                    body=legacy_message("tools/list", {}, request_id=7),
                    headers=_headers(issuer, "mallory", sid),
                )
                assert stolen.status == 404, stolen.raw
                mine = await exchange(
                    s,
                    "POST",
                    f"{base}/mcp/{ROUTE}",
                    body=legacy_message("tools/list", {}, request_id=8),
                    headers=_headers(issuer, "alice", sid),
                )
                assert mine.status == 200, mine.raw
