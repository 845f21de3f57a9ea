"""JWE through the gateway: bodies encrypted both ways, so an intermediary reads nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from support.http import ACCEPT, modern_body, modern_headers
from support.servers import run_gateway
from wardgate.edge.jwe import JweError
from wardgate.edge.jwe_client import ClientJwe


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "jwe.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def _config(upstream: str, key_file: Path, required: bool) -> dict[str, Any]:
    return {
        "server": {"jwe": {"key_file": str(key_file), "required": required}},
        "upstreams": {"demo": {"transport": "http", "url": upstream}},
        "routes": {"demo": {"upstreams": ["demo"], "tools": {"deny": ["delete_*"]}}},
    }


@pytest.fixture
async def gateway(demo_http_upstream: str, key_file: Path) -> AsyncIterator[str]:
    async with run_gateway(_config(demo_http_upstream, key_file, False)) as (url, _):
        yield url


async def _client(base: str) -> ClientJwe:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{base}/.well-known/wardgate-jwe-keys") as resp,
    ):
        jwks = await resp.json()
    return ClientJwe(jwks)


async def _sealed_post(
    url: str, client: ClientJwe, message: dict[str, Any], headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes, Any]:
    compact, ephemeral = client.encrypt_request(orjson.dumps(message))
    headers = headers | {"content-type": "application/jose"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=compact, headers=headers) as resp,
    ):
        raw = await resp.read()
        return resp.status, {k.lower(): v for k, v in resp.headers.items()}, raw, ephemeral


async def test_modern_call_is_encrypted_both_ways(gateway: str) -> None:
    client = await _client(gateway)
    message = modern_body("tools/call", {"name": "echo", "arguments": {"text": "secret-42"}})
    status, headers, raw, ephemeral = await _sealed_post(
        f"{gateway}/mcp/demo", client, message, modern_headers("tools/call", "echo")
    )
    assert status == 200 and headers["content-type"] == "application/jose"
    assert b"secret-42" not in raw  # what an intermediary sees
    reply = orjson.loads(client.decrypt_response(raw, ephemeral))
    assert reply["result"]["content"][0]["text"] == "secret-42"


async def test_handshake_session_with_encrypted_bodies(gateway: str) -> None:
    client = await _client(gateway)
    base_headers = {"accept": ACCEPT, "mcp-protocol-version": "2025-11-25"}
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "jwe", "version": "1"},
        },
    }
    status, headers, raw, ephemeral = await _sealed_post(
        f"{gateway}/mcp/demo", client, init, base_headers
    )
    assert status == 200
    assert orjson.loads(client.decrypt_response(raw, ephemeral))["result"]["protocolVersion"]
    session = base_headers | {"mcp-session-id": headers["mcp-session-id"]}
    denied = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": "delete_everything", "arguments": {"confirm": True}},
    }
    status, headers, raw, ephemeral = await _sealed_post(
        f"{gateway}/mcp/demo", client, denied, session
    )
    assert status == 200 and headers["content-type"] == "application/jose"
    error = orjson.loads(client.decrypt_response(raw, ephemeral))
    assert error["error"]["code"] == -32003  # even refusals stay sealed


async def test_tampered_ciphertext_is_refused(gateway: str) -> None:
    client = await _client(gateway)
    compact, _ = client.encrypt_request(orjson.dumps(modern_body("tools/list")))
    parts = compact.split(".")
    parts[3] = ("A" if parts[3][0] != "A" else "B") + parts[3][1:]
    headers = modern_headers("tools/list") | {"content-type": "application/jose"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{gateway}/mcp/demo", data=".".join(parts), headers=headers) as resp,
    ):
        assert resp.status == 400
        assert (await resp.json())["error"]["data"]["code"] == "wardgate.jwe"


async def test_plain_json_still_works_unless_required(
    gateway: str, demo_http_upstream: str, key_file: Path
) -> None:
    body = orjson.dumps(modern_body("tools/list"))
    plain = modern_headers("tools/list")
    async with (
        run_gateway(_config(demo_http_upstream, key_file, True)) as (strict, _),
        aiohttp.ClientSession() as http,
    ):
        async with http.post(f"{gateway}/mcp/demo", data=body, headers=plain) as resp:
            assert resp.status == 200
        async with http.post(f"{strict}/mcp/demo", data=body, headers=plain) as resp:
            assert resp.status == 415


async def test_where_sealing_is_required_no_unsealed_stream_is_served(
    gateway: str, demo_http_upstream: str, key_file: Path
) -> None:
    stream = {"accept": "text/event-stream", "mcp-session-id": "x" * 43}
    async with (
        run_gateway(_config(demo_http_upstream, key_file, True)) as (strict, _),
        aiohttp.ClientSession() as http,
    ):
        async with http.get(f"{strict}/mcp/demo", headers=stream) as resp:
            assert resp.status == 405  # no GET stream: it could not be sealed
        async with http.get(f"{strict}/sse/demo", headers=stream) as resp:
            assert resp.status == 404  # and no legacy SSE transport at all
        async with http.get(f"{gateway}/sse/demo", headers=stream) as resp:
            assert resp.status == 200  # where sealing is optional, legacy clients still work


async def test_a_response_forged_in_transit_is_refused_by_the_client(gateway: str) -> None:
    """An intermediary that saw the request's ``epk`` re-encrypts a forged answer to it;
    the client helper, holding the gateway's published signing key, refuses it."""
    from joserfc import jwe, jwk

    client = await _client(gateway)
    message = modern_body("tools/call", {"name": "echo", "arguments": {"text": "real"}})
    status, _, raw, ephemeral = await _sealed_post(
        f"{gateway}/mcp/demo", client, message, modern_headers("tools/call", "echo")
    )
    assert status == 200
    assert (
        orjson.loads(client.decrypt_response(raw, ephemeral))["result"]["content"][0]["text"]
        == "real"
    )
    public = jwk.import_key(ephemeral.as_dict(private=False))
    forged_body = b'{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"x"}]}}'
    for cty, payload in (("application/json", forged_body), ("JOSE", raw)):
        forged = jwe.encrypt_compact(
            {"alg": "ECDH-ES", "enc": "A256GCM", "cty": cty},
            payload,
            public,
            algorithms=["ECDH-ES", "A256GCM"],
        )
        with pytest.raises(JweError):
            client.decrypt_response(forged, ephemeral)
