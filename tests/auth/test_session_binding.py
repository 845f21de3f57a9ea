"""A handshake-era session belongs to the principal that created it: another subject's
valid token on it sees exactly what an unknown session id gets (404); the GET stream
and Last-Event-ID resumption without credentials get the uniform refusal."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from ._local import LocalGateway, local_gateway
from ._support import (
    ACCEPT,
    INITIALIZE_PARAMS,
    LEGACY,
    Answer,
    exchange,
    legacy_message,
    refusal_shape,
)

ROUTE = "demo"


@pytest.fixture
async def gw(demo_http_upstream: str) -> AsyncIterator[LocalGateway]:
    upstreams = {"demo": {"transport": "http", "url": demo_http_upstream}}
    async with local_gateway(upstreams, {ROUTE: {"upstreams": ["demo"]}}) as g:
        yield g


def _headers(g: LocalGateway, session_id: str | None, **claims: Any) -> dict[str, str]:
    headers = {"content-type": "application/json", "accept": ACCEPT}
    if session_id is not None:
        headers |= {"mcp-session-id": session_id, "mcp-protocol-version": LEGACY}
    if claims.get("sub") is not None:
        headers |= g.bearer(**claims)
    return headers


async def _open_session(s: aiohttp.ClientSession, g: LocalGateway, sub: str) -> str:
    init = await exchange(
        s,
        "POST",
        g.url(ROUTE),
        body=legacy_message("initialize", INITIALIZE_PARAMS),
        headers=_headers(g, None, sub=sub),
    )
    assert init.status == 200, init.raw
    sid = init.header("mcp-session-id")
    assert sid
    done = await exchange(
        s,
        "POST",
        g.url(ROUTE),
        body=legacy_message("notifications/initialized", request_id=None),
        headers=_headers(g, sid, sub=sub),
    )
    assert done.status == 202, done.raw
    return sid


async def _list(s: aiohttp.ClientSession, g: LocalGateway, sid: str, **claims: Any) -> Answer:
    return await exchange(
        s,
        "POST",
        g.url(ROUTE),
        body=legacy_message("tools/list", {}, request_id=7),
        headers=_headers(g, sid, **claims),
    )


async def test_another_subject_on_a_session_looks_like_an_unknown_session(
    gw: LocalGateway,
) -> None:
    async with aiohttp.ClientSession() as s:
        sid = await _open_session(s, gw, "alice")
        mine = await _list(s, gw, sid, sub="alice")  # a fresh token of the same principal
        assert mine.status == 200 and mine.json["result"]["tools"], mine.raw

        stolen = await _list(s, gw, sid, sub="bob")
        unknown = await _list(s, gw, "0" * len(sid), sub="bob")
        assert stolen.status == 404, stolen.raw
        assert refusal_shape(stolen) == refusal_shape(unknown)

        # Same subject through another OAuth client: another principal, too.
        other_client = await _list(s, gw, sid, sub="alice", client_id="another-client")
        assert refusal_shape(other_client) == refusal_shape(unknown)

        # Bob cannot end Alice's session either; she keeps using it.
        delete = await exchange(s, "DELETE", gw.url(ROUTE), headers=_headers(gw, sid, sub="bob"))
        assert delete.status == 404
        assert (await _list(s, gw, sid, sub="alice")).status == 200


async def test_the_same_subject_of_another_tenant_is_another_principal(
    demo_http_upstream: str,
) -> None:
    upstreams = {"demo": {"transport": "http", "url": demo_http_upstream}}
    tenants = {"tenant_claim": "tenant", "allowed_tenants": ["acme", "globex"]}
    async with (
        local_gateway(upstreams, {ROUTE: {"upstreams": ["demo"]}}, issuer_options=tenants) as g,
        aiohttp.ClientSession() as s,
    ):
        init = await exchange(
            s,
            "POST",
            g.url(ROUTE),
            body=legacy_message("initialize", INITIALIZE_PARAMS),
            headers=_headers(g, None, sub="alice", tenant="acme"),
        )
        sid = init.header("mcp-session-id")
        assert init.status == 200 and sid
        mine = await _list(s, g, sid, sub="alice", tenant="acme")
        assert mine.status == 200, mine.raw
        crossed = await _list(s, g, sid, sub="alice", tenant="globex")
        unknown = await _list(s, g, "0" * len(sid), sub="alice", tenant="globex")
        assert crossed.status == 404
        assert refusal_shape(crossed) == refusal_shape(unknown)


async def test_get_stream_of_another_subject_is_404(gw: LocalGateway) -> None:
    async with aiohttp.ClientSession() as s:
        sid = await _open_session(s, gw, "alice")
        headers = _headers(gw, sid, sub="bob") | {"accept": "text/event-stream"}
        stolen = await exchange(s, "GET", gw.url(ROUTE), headers=headers)
        assert stolen.status == 404, stolen.raw
        headers["last-event-id"] = "1"
        assert (await exchange(s, "GET", gw.url(ROUTE), headers=headers)).status == 404
        # Alice herself may open it (the answer starts; we do not wait for events).
        own = _headers(gw, sid, sub="alice") | {"accept": "text/event-stream"}
        async with s.get(gw.url(ROUTE), headers=own, timeout=aiohttp.ClientTimeout(total=10)) as r:
            assert r.status != 404


@pytest.mark.parametrize("last_event_id", [None, "1", "0_0"])
async def test_get_stream_and_resumption_without_credentials_get_the_uniform_refusal(
    gw: LocalGateway, last_event_id: str | None
) -> None:
    async with aiohttp.ClientSession() as s:
        sid = await _open_session(s, gw, "alice")
        reference = await exchange(s, "POST", gw.url(ROUTE), body=b"{}", headers={})
        headers = {
            "accept": "text/event-stream",
            "mcp-session-id": sid,
            "mcp-protocol-version": LEGACY,
        }
        if last_event_id is not None:
            headers["last-event-id"] = last_event_id
        answer = await exchange(s, "GET", gw.url(ROUTE), headers=headers)
        assert answer.status == 421
        assert refusal_shape(answer) == refusal_shape(reference)


async def test_a_legacy_sse_channel_belongs_to_its_opener(gw: LocalGateway) -> None:
    """The 2024-11-05 transport: ``/messages`` of Alice's channel is a 404 for Bob (like a
    channel that does not exist) and the uniform refusal without credentials."""
    async with aiohttp.ClientSession() as s:
        timeout = aiohttp.ClientTimeout(total=10)
        stream_headers = gw.bearer(sub="alice") | {"accept": "text/event-stream"}
        async with s.get(f"{gw.base}/sse/{ROUTE}", headers=stream_headers, timeout=timeout) as sse:
            assert sse.status == 200
            endpoint = ""
            async with asyncio.timeout(10):
                while not endpoint.startswith("data:"):
                    endpoint = (await sse.content.readline()).decode().strip()
            path = endpoint.removeprefix("data:").strip()
            assert path.startswith(f"/messages/{ROUTE}?session_id=")
            body = legacy_message("initialize", INITIALIZE_PARAMS)
            json_headers = {"content-type": "application/json"}

            async def post(target: str, **claims: Any) -> Answer:
                auth = gw.bearer(**claims) if claims else {}
                return await exchange(
                    s, "POST", f"{gw.base}{target}", body=body, headers=json_headers | auth
                )

            stolen = await post(path, sub="bob")
            unknown = await post(f"/messages/{ROUTE}?session_id=nope", sub="bob")
            assert stolen.status == 404
            assert refusal_shape(stolen) == refusal_shape(unknown)
            anonymous = await post(path)
            reference = await exchange(s, "POST", gw.url(ROUTE), body=b"{}", headers={})
            assert refusal_shape(anonymous) == refusal_shape(reference)
            assert (await post(path, sub="alice")).status == 202
