"""Sessions opened and closed, and failed authentication, reach the event seam and the
audit trail: a local issuer's real tokens, the demo upstream on Streamable HTTP, the
audit sink writing a sealed trail that ``verify_lines`` checks. Session ids and tokens
are bearer material: the trail names a session by a digest only and never holds a
token."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from auth._support import (
    INITIALIZE_PARAMS,
    LEGACY,
    RESOURCE,
    LocalIssuer,
    bearer_headers,
    exchange,
    jwks_server,
    legacy_message,
)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from support.servers import gateway_events, run_gateway
from wardgate.identity.principal import ANONYMOUS
from wardgate.routing.sessions import GatewaySession, SessionStore
from wardgate.telemetry.audit.chain import verify_lines
from wardgate.telemetry.events import (
    AuthFailed,
    CallEnded,
    GatewayEvent,
    SessionClosed,
    SessionOpened,
    session_ref,
)

ROUTE = "demo"


async def test_sessions_and_refusals_are_in_the_trail_without_ids_or_tokens(
    demo_http_upstream: str, tmp_path: Path
) -> None:
    key = Ed25519PrivateKey.generate()
    key_file = tmp_path / "seal.key"
    key_file.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    trail = tmp_path / "audit.jsonl"
    issuer = LocalIssuer.create("https://idp-local.example", "local")
    async with jwks_server({"/jwks": issuer.jwks}) as jwks:
        config: dict[str, Any] = {
            "auth": {
                "resource": RESOURCE,
                "issuers": [{"issuer": issuer.name, "jwks_uri": f"{jwks.base}/jwks"}],
                "allow_loopback_jwks": True,
                "failure_floor_ms": 5,
            },
            "upstreams": {"demo": {"transport": "http", "url": demo_http_upstream}},
            "routes": {ROUTE: {"upstreams": ["demo"]}},
            "telemetry": {"audit": {"path": str(trail), "signing_key_file": str(key_file)}},
        }
        token = issuer.mint(sub="alice")
        forged = token[:-8] + ("A" * 8 if not token.endswith("A" * 8) else "B" * 8)
        async with run_gateway(config) as (base, gateway), aiohttp.ClientSession() as http:
            url = f"{base}/mcp/{ROUTE}"
            init = await exchange(
                http,
                "POST",
                url,
                body=legacy_message("initialize", INITIALIZE_PARAMS),
                headers=bearer_headers(token),
            )
            assert init.status == 200, init.raw
            sid = init.header("mcp-session-id")
            assert sid is not None
            echo = await exchange(
                http,
                "POST",
                url,
                body=legacy_message(
                    "tools/call", {"name": "echo", "arguments": {"text": "hi"}}, request_id=2
                ),
                headers=bearer_headers(token, sid),
            )
            assert echo.status == 200 and b"hi" in echo.raw, echo.raw
            gone = await exchange(http, "DELETE", url, headers=bearer_headers(token, sid))
            assert gone.status in (200, 204), gone.raw
            refused = await exchange(
                http,
                "POST",
                url,
                body=legacy_message("initialize", INITIALIZE_PARAMS),
                headers=bearer_headers(forged),
            )
            assert refused.status == 421, refused.raw  # the default refusal
            events = gateway_events(gateway)
            (opened,) = events.of(SessionOpened)
            (closed,) = events.of(SessionClosed)
            (failed,) = events.of(AuthFailed)
            handshake = next(e for e in events.of(CallEnded) if e.method == "initialize")
    assert opened.subject == "alice" and opened.route == ROUTE
    assert opened.session_id == session_ref(sid) == closed.session_id
    assert opened.decision_id == handshake.decision_id is not None
    assert closed.reason == "deleted"
    assert failed.cause == "wardgate.unauthenticated" and failed.client_addr == "127.0.0.1"
    assert failed.decision_id == refused.json["error"]["data"]["decisionId"]

    raw = trail.read_bytes()
    report = verify_lines([(str(trail), raw)], key.public_key())
    assert report.faults == []
    kinds = [
        r["event"]["kind"] for r in map(orjson.loads, raw.splitlines()) if r.get("type") == "event"
    ]
    assert {"session.opened", "session.closed", "auth.failed"} <= set(kinds)
    # The access log names the session of a call by the same digest.
    assert any(
        r["event"]["kind"] == "call.ended" and r["event"]["session_id"] == session_ref(sid)
        for r in map(orjson.loads, raw.splitlines())
        if r.get("type") == "event"
    )
    # Bearer material never lands in the trail: not the session id, not either token.
    for secret in (sid, token, forged):
        assert secret.encode() not in raw


@pytest.mark.parametrize("how", ["sweep", "lookup"])
async def test_an_idle_session_closes_with_its_reason(how: str) -> None:
    now = [0.0]
    seen: list[GatewayEvent] = []
    store = SessionStore(idle_timeout=10, clock=lambda: now[0], emit=seen.append)
    async with store.reserve(ANONYMOUS.binding_key) as slot:
        session = GatewaySession(
            id=store.new_id(),
            route=ROUTE,
            upstreams={},
            versions={},
            protocol_version=LEGACY,
            owner=ANONYMOUS.binding_key,
        )
        slot.commit(session, "d-1")
    now[0] = 11.0
    if how == "sweep":
        assert await store.expire() == 1
    else:
        assert store.get(session.id) is None
    opened, closed = seen
    assert isinstance(opened, SessionOpened) and opened.decision_id == "d-1"
    assert isinstance(closed, SessionClosed) and closed.reason == "idle"
    assert closed.session_id == session_ref(session.id) != session.id
    assert len(store) == 0


async def test_a_failed_handshake_closes_what_it_committed() -> None:
    seen: list[GatewayEvent] = []
    store = SessionStore(emit=seen.append)
    with pytest.raises(RuntimeError):
        async with store.reserve(ANONYMOUS.binding_key) as slot:
            slot.commit(
                GatewaySession(
                    id=store.new_id(),
                    route=ROUTE,
                    upstreams={},
                    versions={},
                    protocol_version=LEGACY,
                    owner=ANONYMOUS.binding_key,
                )
            )
            raise RuntimeError("the upstream answered garbage")
    assert [type(e) for e in seen] == [SessionOpened, SessionClosed]
    assert isinstance(seen[1], SessionClosed) and seen[1].reason == "failed"
    assert store.held_by(ANONYMOUS.binding_key) == 0
