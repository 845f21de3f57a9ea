"""No token passthrough: the caller's credentials end at the gateway. An upstream of our
own (a bare ASGI app) records the headers of every request it receives and never sees
``Authorization`` or ``DPoP``, whatever the era, transport or credential."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httpx2
import orjson
import pytest
from joserfc.jwk import ECKey
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from support.servers import serve_app

from ._local import LocalGateway, local_gateway
from ._support import (
    ACCEPT,
    INITIALIZE_PARAMS,
    LEGACY,
    DpopAuth,
    dpop_proof,
    exchange,
    legacy_message,
    modern_call,
)

SECRET_HEADERS = ("authorization", "dpop", "cookie", "proxy-authorization")


@dataclass
class RecordingUpstream:
    """A minimal MCP server: answers initialize, tools/list and tools/call."""

    seen: list[dict[str, str]] = field(default_factory=list)
    calls: int = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        self.seen.append(headers)
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["method"] == "DELETE":
            await self._send(send, 200, b"")
            return
        if scope["method"] != "POST":
            await self._send(send, 405, b"", [(b"allow", b"POST, DELETE")])
            return
        msg = orjson.loads(body)
        if "id" not in msg:
            await self._send(send, 202, b"")
            return
        extra: list[tuple[bytes, bytes]] = []
        method = msg.get("method")
        params = msg.get("params") or {}
        if method == "initialize":
            result: Any = {
                "protocolVersion": params.get("protocolVersion", LEGACY),
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "recording-upstream", "version": "1"},
            }
            extra.append((b"mcp-session-id", secrets.token_hex(8).encode()))
        elif method == "tools/list":
            result = {"tools": [{"name": "whoami", "inputSchema": {"type": "object"}}]}
        elif method == "tools/call":
            self.calls += 1
            seen = sorted(k for k in headers if k in SECRET_HEADERS)
            result = {"content": [{"type": "text", "text": f"saw {seen}"}], "isError": False}
        else:
            error = {"code": -32601, "message": f"no {method}"}
            payload = orjson.dumps({"jsonrpc": "2.0", "id": msg["id"], "error": error})
            await self._send(send, 200, payload, [(b"content-type", b"application/json")])
            return
        payload = orjson.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result})
        await self._send(send, 200, payload, [(b"content-type", b"application/json"), *extra])

    @staticmethod
    async def _send(send: Any, status: int, body: bytes, headers: Any = ()) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-length", str(len(body)).encode()), *headers],
            }
        )
        await send({"type": "http.response.body", "body": body})


@pytest.fixture
async def setup() -> AsyncIterator[tuple[LocalGateway, RecordingUpstream]]:
    upstream = RecordingUpstream()
    async with serve_app(upstream) as up:
        upstreams = {"rec": {"transport": "http", "url": f"{up}/mcp"}}
        async with local_gateway(upstreams, {"rec": {"upstreams": ["rec"]}}) as g:
            yield g, upstream


def assert_clean(upstream: RecordingUpstream) -> None:
    assert upstream.seen, "the upstream was never called"
    for headers in upstream.seen:
        leaked = [k for k in headers if k in SECRET_HEADERS]
        assert not leaked, (leaked, headers)


async def test_modern_raw_calls_with_bearer_and_dpop(
    setup: tuple[LocalGateway, RecordingUpstream],
) -> None:
    g, upstream = setup
    key = ECKey.generate_key("P-256")
    bound = g.issuer.mint(cnf={"jkt": key.thumbprint()})
    async with aiohttp.ClientSession() as s:
        for creds in (
            lambda: g.bearer(),
            lambda: {
                "authorization": f"DPoP {bound}",
                "dpop": dpop_proof(key, "POST", g.url("rec"), access_token=bound),
            },
        ):
            body, headers = modern_call("whoami", {})
            headers |= creds() | {"cookie": "session=secret"}
            answer = await exchange(s, "POST", g.url("rec"), body=body, headers=headers)
            assert answer.status == 200, answer.raw
            assert answer.json["result"]["content"][0]["text"] == "saw []"
    assert upstream.calls == 2
    assert_clean(upstream)


async def test_legacy_raw_session_with_bearer(
    setup: tuple[LocalGateway, RecordingUpstream],
) -> None:
    g, upstream = setup
    auth = g.bearer() | {"content-type": "application/json", "accept": ACCEPT}
    async with aiohttp.ClientSession() as s:
        init = await exchange(
            s,
            "POST",
            g.url("rec"),
            body=legacy_message("initialize", INITIALIZE_PARAMS),
            headers=auth,
        )
        assert init.status == 200, init.raw
        session = {
            "mcp-session-id": init.header("mcp-session-id") or "",
            "mcp-protocol-version": LEGACY,
        }
        note = legacy_message("notifications/initialized", request_id=None)
        assert (
            await exchange(s, "POST", g.url("rec"), body=note, headers=auth | session)
        ).status == 202
        call = legacy_message("tools/call", {"name": "whoami", "arguments": {}}, request_id=2)
        answer = await exchange(s, "POST", g.url("rec"), body=call, headers=auth | session)
        assert answer.status == 200, answer.raw
        assert answer.json["result"]["content"][0]["text"] == "saw []"
        await exchange(s, "DELETE", g.url("rec"), headers=auth | session)
    assert upstream.calls == 1
    assert_clean(upstream)


@pytest.mark.parametrize("mode", ["legacy", "auto"])
@pytest.mark.parametrize("credential", ["bearer", "dpop"])
async def test_sdk_client_credentials_stay_at_the_gateway(
    setup: tuple[LocalGateway, RecordingUpstream], mode: str, credential: str
) -> None:
    g, upstream = setup
    if credential == "dpop":
        key = ECKey.generate_key("P-256")
        http = httpx2.AsyncClient(auth=DpopAuth(g.issuer.mint(cnf={"jkt": key.thumbprint()}), key))
    else:
        http = httpx2.AsyncClient(headers=g.bearer())
    transport = streamable_http_client(g.url("rec"), http_client=http)
    async with http, Client(transport, mode=mode) as client:  # type: ignore[arg-type]
        assert [t.name for t in (await client.list_tools()).tools] == ["whoami"]
        result = await client.call_tool("whoami", {})
        assert result.content[0].text == "saw []"  # type: ignore[union-attr]
    assert upstream.calls == 1
    assert_clean(upstream)
