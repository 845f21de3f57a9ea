"""JSON nested deeper than the configured limit is refused cleanly, cheaply, whatever
its depth; a legitimate call beside it still succeeds."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from support.http import modern_body, modern_headers, post
from support.servers import answering_app, run_gateway, serve_app
from wardgate.errors import ParseError, ProtocolError
from wardgate.wire.jsonrpc import loads_bounded, parse_message


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def depth_of(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    return 0


@pytest.mark.parametrize("depth", [64, 65, 300, 1024, 1025, 10_000, 100_000])
def test_depth_is_checked_at_every_scale(depth: int) -> None:
    if depth <= 64:
        assert depth_of(loads_bounded(nested(depth), 64)) == depth
        return
    with pytest.raises(ProtocolError) as refused:
        loads_bounded(nested(depth), 64)
    # Not a parse error: deep JSON is valid JSON, refused by policy.
    assert type(refused.value) is ProtocolError and refused.value.jsonrpc_code == -32600


def test_brackets_inside_strings_do_not_count() -> None:
    body = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "m", "params": {"s": "[{" * 5000}})
    assert parse_message(body, 8).params["s"] == "[{" * 5000


def test_invalid_json_is_still_a_parse_error() -> None:
    with pytest.raises(ParseError):
        parse_message(b"[[[", 64)


json_values = st.recursive(
    st.none() | st.integers(-(2**53), 2**53) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=40,
)


@given(json_values, st.integers(min_value=1, max_value=12))
def test_the_limit_matches_the_real_depth(value: Any, limit: int) -> None:
    data = orjson.dumps(value)
    if depth_of(value) <= limit:
        assert loads_bounded(data, limit) == value
    else:
        with pytest.raises(ProtocolError):
            loads_bounded(data, limit)


_upstream = answering_app({"content": [], "ok": True})


def _deep_request(depth: int) -> bytes:
    # A well-formed tools/call whose arguments nest ``depth`` levels below the message.
    head = modern_body("tools/call", {"name": "t", "arguments": {"x": 0}})
    text = orjson.dumps(head).replace(b'{"x":0}', b'{"x":' + nested(depth) + b"}")
    return text


@pytest.mark.parametrize("depth", [100, 10_000])
async def test_a_client_request_nested_too_deep_is_refused(depth: int) -> None:
    async with serve_app(_upstream) as upstream_url:
        # The default limit (64): the edge does not yet take server.max_json_depth.
        config = {
            "upstreams": {"up": {"transport": "http", "url": upstream_url + "/mcp"}},
            "routes": {"r": {"upstreams": ["up"]}},
        }
        async with run_gateway(config) as (url, _):
            deep = post(f"{url}/mcp/r", _deep_request(depth), modern_headers("tools/call", "t"))
            legit = post(
                f"{url}/mcp/r",
                modern_body("tools/call", {"name": "t", "arguments": {}}, request_id=2),
                modern_headers("tools/call", "t"),
            )
            (status, _, body), (ok_status, _, ok_body) = await asyncio.wait_for(
                asyncio.gather(deep, legit), 10
            )
    assert status == 400 and body["error"]["code"] == -32600
    assert "decisionId" in body["error"]["data"]
    assert ok_status == 200 and ok_body["result"]["ok"] is True
