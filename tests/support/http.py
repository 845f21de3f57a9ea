"""Raw HTTP helpers for protocol tests (the SDK client hides the wire)."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

MODERN = "2026-07-28"
ACCEPT = "application/json, text/event-stream"


def modern_body(
    method: str, params: dict[str, Any] | None = None, request_id: int = 1
) -> dict[str, Any]:
    p = dict(params or {})
    p["_meta"] = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": p}


def modern_headers(method: str, name: str | None = None) -> dict[str, str]:
    headers = {
        "content-type": "application/json",
        "accept": ACCEPT,
        "mcp-protocol-version": MODERN,
        "mcp-method": method,
    }
    if name is not None:
        headers["mcp-name"] = name
    return headers


async def post(
    url: str, body: bytes | dict[str, Any], headers: dict[str, str]
) -> tuple[int, dict[str, str], Any]:
    """POST and return (status, headers, decoded JSON body or raw text or None)."""
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    async with (
        aiohttp.ClientSession() as client,
        client.post(url, data=data, headers=headers) as resp,
    ):
        raw = await resp.read()
        decoded: Any = None
        if raw:
            try:
                decoded = orjson.loads(raw)
            except orjson.JSONDecodeError:
                decoded = raw.decode("utf-8", "replace")
        return resp.status, {k.lower(): v for k, v in resp.headers.items()}, decoded
