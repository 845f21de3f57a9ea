"""A behaviour alert that revokes the session: two replicas sharing Redis (UEBA state and
sealed session ids), a local issuer's real tokens, the demo upstream on Streamable HTTP.
The scripting detector fires on one replica; the session then answers 404 (an unknown
session, the spec's answer for a terminated one) on both, and its token 401; another
subject's new session, and the same subject with a fresh token, are served."""

from __future__ import annotations

import base64
import secrets
from typing import Any

import aiohttp
import pytest
from auth._support import (
    INITIALIZE_PARAMS,
    RESOURCE,
    Answer,
    LocalIssuer,
    bearer_headers,
    exchange,
    jwks_server,
    legacy_message,
)
from limits.conftest import redis_prefix  # noqa: F401 - a fixture

from support.http import modern_body, modern_headers
from support.servers import free_port, gateway_events, run_gateway
from telemetry.test_metrics import _get, _samples
from wardgate.telemetry.ueba import UebaAlert

REDIS_URL = "redis://127.0.0.1:6379/0"
ROUTE = "demo"
ONLY_SCRIPTING = {
    "geoip": "none",
    "impossible_travel": False,
    "token_continents": False,
    "new_asn": False,
    "first_seen_tool": False,
    # A second distinct tool within the hour is "scripting" here: easy to trip on purpose.
    "scripting_tools": 1,
    "scripting_seconds": 3600,
    "revoke_seconds": 600,
    "revoke_on": ["scripting"],
}


def _config(issuer: LocalIssuer, jwks: str, upstream: str, prefix: str) -> dict[str, Any]:
    return {
        "server": {
            "sealed_sessions": {
                "keys": ["WG_FLEET_KEY"],
                "redis": {"url": REDIS_URL, "key_prefix": prefix},
                # Replicas may serve a session they hold without asking again for a
                # minute: the UEBA mark must still end it at once.
                "revocation_recheck_seconds": 60,
            }
        },
        "auth": {
            "resource": RESOURCE,
            "issuers": [{"issuer": issuer.name, "jwks_uri": f"{jwks}/jwks"}],
            "allow_loopback_jwks": True,
            "failure_floor_ms": 10,
        },
        "upstreams": {"demo": {"transport": "http", "url": upstream}},
        "routes": {ROUTE: {"upstreams": ["demo"]}},
        "limits": {"store": "redis", "redis": {"url": REDIS_URL, "key_prefix": prefix}},
        "telemetry": {"ueba": ONLY_SCRIPTING},
    }


class _Client:
    def __init__(self, http: aiohttp.ClientSession, token: str) -> None:
        self.http = http
        self.token = token

    def _headers(self, sid: str | None) -> dict[str, str]:
        return bearer_headers(self.token, sid)

    async def open(self, base: str) -> str:
        init = await exchange(
            self.http,
            "POST",
            f"{base}/mcp/{ROUTE}",
            body=legacy_message("initialize", INITIALIZE_PARAMS),
            headers=self._headers(None),
        )
        assert init.status == 200, init.raw
        sid = init.header("mcp-session-id")
        assert sid is not None
        done = await exchange(
            self.http,
            "POST",
            f"{base}/mcp/{ROUTE}",
            body=legacy_message("notifications/initialized", request_id=None),
            headers=self._headers(sid),
        )
        assert done.status == 202, done.raw
        return sid

    async def call(self, base: str, sid: str, tool: str, arguments: dict[str, Any]) -> Answer:
        params = {"name": tool, "arguments": arguments}
        return await exchange(
            self.http,
            "POST",
            f"{base}/mcp/{ROUTE}",
            body=legacy_message("tools/call", params, request_id=9),
            headers=self._headers(sid),
        )


async def test_an_alert_ends_the_session_on_every_replica_and_no_one_elses(
    demo_http_upstream: str,
    redis_prefix: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WG_FLEET_KEY", base64.b64encode(secrets.token_bytes(32)).decode())
    issuer = LocalIssuer.create("https://idp-local.example", "local")
    async with jwks_server({"/jwks": issuer.jwks}) as jwks:
        config = _config(issuer, jwks.base, demo_http_upstream, redis_prefix)
        ops = free_port()
        with_metrics = {**config, "telemetry": {**config["telemetry"], "metrics_port": ops}}

        async def sessions_on_one() -> float:
            status, body = await _get(f"http://127.0.0.1:{ops}/metrics")
            assert status == 200
            (held,) = [v for n, lb, v in _samples(body.decode()) if n == "wardgate_sessions"]
            return held

        async with (
            run_gateway(with_metrics) as (one, gw_one),
            run_gateway(config) as (two, _),
            aiohttp.ClientSession() as http,
        ):
            alice = _Client(http, issuer.mint(sub="alice"))
            assert await sessions_on_one() == 0
            sid = await alice.open(one)
            assert sid.startswith("s")  # sealed: either replica serves it
            assert await sessions_on_one() == 1
            answer = await alice.call(two, sid, "echo", {"text": "hi"})
            assert answer.status == 200 and "result" in answer.json, answer.raw
            # A second tool, on the other replica: the shared history sees two tools.
            tripped = await alice.call(one, sid, "add", {"a": 1, "b": 2})
            assert tripped.status == 404, tripped.raw
            (alert,) = gateway_events(gw_one).of(UebaAlert)
            assert alert.detector == "scripting" and alert.revoked_seconds == 600
            assert await sessions_on_one() == 0  # ended here, not merely refused
            # Ended on both replicas (two still holds its copy from the first call).
            for base in (two, one):
                answer = await alice.call(base, sid, "echo", {"text": "again"})
                assert answer.status == 404, answer.raw
                assert answer.json["error"]["data"]["code"] == "wardgate.session_not_found"
            # The token is refused too: a new session with it gets 401.
            refused = await exchange(
                http,
                "POST",
                f"{two}/mcp/{ROUTE}",
                body=legacy_message("initialize", INITIALIZE_PARAMS),
                headers=alice._headers(None),
            )
            assert refused.status == 401, refused.raw
            assert refused.json["error"]["data"]["code"] == "wardgate.credential_revoked"
            # Another subject is untouched, on either replica.
            bob = _Client(http, issuer.mint(sub="bob"))
            bob_sid = await bob.open(two)
            answer = await bob.call(one, bob_sid, "echo", {"text": "bob"})
            assert answer.status == 200 and "result" in answer.json, answer.raw
            # Alice with a fresh token starts over (the session was revoked, not her).
            alice_again = _Client(http, issuer.mint(sub="alice"))
            new_sid = await alice_again.open(two)
            assert new_sid != sid
            answer = await alice_again.call(two, new_sid, "echo", {"text": "hi"})
            assert answer.status == 200 and "result" in answer.json, answer.raw


async def test_a_stateless_callers_token_is_revoked_and_a_fresh_one_is_served(
    demo_http_upstream: str,
    redis_prefix: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WG_FLEET_KEY", base64.b64encode(secrets.token_bytes(32)).decode())
    issuer = LocalIssuer.create("https://idp-local.example", "local")
    async with jwks_server({"/jwks": issuer.jwks}) as jwks:
        config = _config(issuer, jwks.base, demo_http_upstream, redis_prefix)
        async with (
            run_gateway(config) as (one, _),
            run_gateway(config) as (two, _),
            aiohttp.ClientSession() as http,
        ):

            async def call(base: str, token: str, tool: str, args: dict[str, Any]) -> Answer:
                headers = {**modern_headers("tools/call", tool), "authorization": f"Bearer {token}"}
                body = modern_body("tools/call", {"name": tool, "arguments": args}, 3)
                return await exchange(
                    http, "POST", f"{base}/mcp/{ROUTE}", body=_dumps(body), headers=headers
                )

            carol = issuer.mint(sub="carol")
            assert (await call(one, carol, "echo", {"text": "a"})).status == 200
            tripped = await call(one, carol, "add", {"a": 1, "b": 2})
            assert tripped.status == 401, tripped.raw
            answer = await call(two, carol, "echo", {"text": "b"})  # the other replica too
            assert answer.status == 401
            assert answer.json["error"]["data"]["code"] == "wardgate.credential_revoked"
            dave = issuer.mint(sub="dave")
            assert (await call(two, dave, "echo", {"text": "d"})).status == 200
            fresh = issuer.mint(sub="carol")
            answer = await call(two, fresh, "echo", {"text": "c"})
            assert answer.status == 200 and "result" in answer.json, answer.raw


def _dumps(body: dict[str, Any]) -> bytes:
    import orjson

    return orjson.dumps(body)
