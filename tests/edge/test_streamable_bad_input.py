"""The edge refuses bad input with the right status and JSON-RPC error, and keeps serving."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from support.http import ACCEPT, MODERN, modern_body, modern_headers, post
from support.servers import run_gateway


@pytest.fixture
async def gateway_url(demo_http_upstream: str) -> AsyncIterator[str]:
    config = {
        "server": {"max_body_bytes": 64 * 1024},
        "upstreams": {"demo": {"transport": "http", "url": demo_http_upstream}},
        "routes": {"demo": {"upstreams": ["demo"], "tools": {"deny": ["delete_*"]}}},
    }
    async with run_gateway(config) as (url, _):
        yield f"{url}/mcp/demo"


def _assert_generic_error(body: Any, code: int) -> None:
    assert body["jsonrpc"] == "2.0"
    assert body["error"]["code"] == code
    assert len(body["error"]["data"]["decisionId"]) == 16
    # Nothing internal leaks: no traceback, no file paths, no exception class names.
    text = str(body)
    assert "Traceback" not in text and ".py" not in text and "Error(" not in text


async def _still_serves(url: str) -> None:
    status, _, body = await post(
        url,
        modern_body("tools/call", {"name": "echo", "arguments": {"text": "ok"}}),
        modern_headers("tools/call", "echo"),
    )
    assert status == 200 and body["result"]["content"][0]["text"] == "ok"


BAD_BODIES = [
    pytest.param(b"{not json", 400, -32700, id="malformed-json"),
    pytest.param(b"[]", 400, -32600, id="batch"),
    pytest.param(b'"a string"', 400, -32600, id="not-an-object"),
    pytest.param(b'{"jsonrpc":"1.0","id":1,"method":"ping"}', 400, -32600, id="wrong-version"),
    pytest.param(b'{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}', 400, -32600, id="object-id"),
    pytest.param(b'{"jsonrpc":"2.0","id":1,"method":42}', 400, -32600, id="numeric-method"),
    pytest.param(
        b'{"jsonrpc":"2.0","id":1,"method":"x","params":[1]}', 400, -32600, id="array-params"
    ),
    pytest.param(b'{"jsonrpc":"2.0","id":1}', 400, -32600, id="neither"),
    pytest.param(
        b'{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":"x"}}',
        400,
        -32600,
        id="both",
    ),
]


@pytest.mark.parametrize(("body", "status", "code"), BAD_BODIES)
async def test_malformed_messages_are_refused(
    gateway_url: str, body: bytes, status: int, code: int
) -> None:
    got, _, decoded = await post(gateway_url, body, modern_headers("ping"))
    assert got == status
    _assert_generic_error(decoded, code)
    await _still_serves(gateway_url)


async def test_oversized_body_gets_413(gateway_url: str) -> None:
    big = modern_body("tools/call", {"name": "echo", "arguments": {"text": "x" * 100_000}})
    status, _, body = await post(gateway_url, big, modern_headers("tools/call", "echo"))
    assert status == 413
    _assert_generic_error(body, -32600)
    await _still_serves(gateway_url)


HEADER_CASES = [
    pytest.param({"mcp-name": "add"}, -32020, id="name-mismatch"),
    pytest.param({"mcp-method": "tools/list"}, -32020, id="method-mismatch"),
    pytest.param({"mcp-name": None}, -32020, id="name-missing"),
    pytest.param({"mcp-method": None}, -32020, id="method-missing"),
    pytest.param({"mcp-protocol-version": "2099-01-01"}, -32022, id="unknown-version"),
]


@pytest.mark.parametrize(("change", "code"), HEADER_CASES)
async def test_2026_headers_must_match_the_body(
    gateway_url: str, change: dict[str, str | None], code: int
) -> None:
    headers = modern_headers("tools/call", "echo")
    for key, value in change.items():
        if value is None:
            headers.pop(key)
        else:
            headers[key] = value
    body = modern_body("tools/call", {"name": "echo", "arguments": {"text": "hi"}})
    status, _, decoded = await post(gateway_url, body, headers)
    assert status == 400
    _assert_generic_error(decoded, code)
    if code == -32022:
        assert decoded["error"]["data"]["supported"] == [MODERN]
        assert decoded["error"]["data"]["requested"] == "2099-01-01"


async def test_2026_meta_version_must_match_header(gateway_url: str) -> None:
    body = modern_body("tools/list")
    body["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = "2025-11-25"
    status, _, decoded = await post(gateway_url, body, modern_headers("tools/list"))
    assert status == 400 and decoded["error"]["code"] == -32020


async def test_2026_missing_meta_is_invalid_params(gateway_url: str) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    status, _, decoded = await post(gateway_url, body, modern_headers("tools/list"))
    assert status == 400 and decoded["error"]["code"] == -32602


async def test_base64_encoded_name_header_is_decoded(gateway_url: str) -> None:
    headers = modern_headers("tools/call", "=?base64?ZWNobw==?=")  # "echo"
    body = modern_body("tools/call", {"name": "echo", "arguments": {"text": "b64"}})
    status, _, decoded = await post(gateway_url, body, headers)
    assert status == 200 and decoded["result"]["content"][0]["text"] == "b64"


async def test_mcp_param_headers_are_forwarded(gateway_url: str) -> None:
    headers = modern_headers("tools/call", "echo") | {"mcp-param-region": "eu"}
    body = modern_body("tools/call", {"name": "echo", "arguments": {"text": "p"}})
    status, _, decoded = await post(gateway_url, body, headers)
    assert status == 200 and decoded["result"]["content"][0]["text"] == "p"


def _legacy_headers(session: str | None = None) -> dict[str, str]:
    headers = {
        "content-type": "application/json",
        "accept": ACCEPT,
        "mcp-protocol-version": "2025-11-25",
    }
    if session is not None:
        headers["mcp-session-id"] = session
    return headers


PING = {"jsonrpc": "2.0", "id": 7, "method": "ping"}


async def test_handshake_request_without_session_is_400(gateway_url: str) -> None:
    status, _, body = await post(gateway_url, PING, _legacy_headers())
    assert status == 400 and body["error"]["code"] == -32600


async def test_unknown_session_is_404(gateway_url: str) -> None:
    status, _, body = await post(gateway_url, PING, _legacy_headers("no-such-session"))
    assert status == 404 and body["error"]["code"] == -32600


async def _initialize(url: str) -> str:
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    }
    status, headers, body = await post(url, init, _legacy_headers())
    assert status == 200, body
    session = headers["mcp-session-id"]
    assert len(session) >= 32 and all(0x21 <= ord(c) <= 0x7E for c in session)
    status, _, _ = await post(
        url, {"jsonrpc": "2.0", "method": "notifications/initialized"}, _legacy_headers(session)
    )
    assert status == 202
    return session


async def test_session_lifecycle_and_delete(gateway_url: str) -> None:
    session = await _initialize(gateway_url)
    status, _, body = await post(gateway_url, PING, _legacy_headers(session))
    assert status == 200 and body == {"jsonrpc": "2.0", "id": 7, "result": {}}
    async with (
        aiohttp.ClientSession() as client,
        client.delete(gateway_url, headers=_legacy_headers(session)) as resp,
    ):
        assert resp.status == 200
    status, _, _ = await post(gateway_url, PING, _legacy_headers(session))
    assert status == 404


async def test_denied_tool_gets_generic_error_with_decision_id(gateway_url: str) -> None:
    body = modern_body("tools/call", {"name": "delete_everything", "arguments": {"confirm": True}})
    status, _, decoded = await post(
        gateway_url, body, modern_headers("tools/call", "delete_everything")
    )
    assert status == 200  # in-band, so SDK clients surface it as a denial
    _assert_generic_error(decoded, -32003)
    assert decoded["id"] == 1
    assert "delete" not in decoded["error"]["message"]


async def test_denied_tool_is_hidden_from_tools_list(gateway_url: str) -> None:
    status, _, decoded = await post(
        gateway_url, modern_body("tools/list"), modern_headers("tools/list")
    )
    names = {t["name"] for t in decoded["result"]["tools"]}
    assert status == 200 and "echo" in names and "delete_everything" not in names


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        pytest.param({"origin": "http://evil.example"}, 403, id="foreign-origin"),
        pytest.param({"origin": "null"}, 403, id="null-origin"),
        pytest.param({"host": "evil.example"}, 421, id="rebinding-host"),
    ],
)
async def test_dns_rebinding_defences(
    gateway_url: str, headers: dict[str, str], status: int
) -> None:
    got, _, body = await post(
        gateway_url, modern_body("tools/list"), modern_headers("tools/list") | headers
    )
    assert got == status and body["error"]["code"] == -32600


async def test_loopback_origin_is_allowed(gateway_url: str) -> None:
    headers = modern_headers("tools/list") | {"origin": "http://localhost:3000"}
    status, _, _ = await post(gateway_url, modern_body("tools/list"), headers)
    assert status == 200


async def test_wrong_accept_and_content_type(gateway_url: str) -> None:
    body = modern_body("tools/list")
    status, _, _ = await post(
        gateway_url, body, modern_headers("tools/list") | {"accept": "text/html"}
    )
    assert status == 406
    status, _, _ = await post(
        gateway_url, body, modern_headers("tools/list") | {"content-type": "text/plain"}
    )
    assert status == 415


async def test_get_in_2026_is_405_and_unknown_route_404(gateway_url: str) -> None:
    async with aiohttp.ClientSession() as client:
        async with client.get(
            gateway_url, headers={"accept": "text/event-stream", "mcp-protocol-version": MODERN}
        ) as resp:
            assert resp.status == 405
        base = gateway_url.rsplit("/mcp/", 1)[0]
        async with client.post(
            f"{base}/mcp/nope", json=PING, headers=modern_headers("ping")
        ) as resp:
            assert resp.status == 404
        async with client.put(gateway_url, headers=modern_headers("ping")) as resp:
            assert resp.status == 405
