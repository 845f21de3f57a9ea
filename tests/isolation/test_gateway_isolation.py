"""Two principals through the gateway on one stdio upstream: the route's isolation
decides who shares a process, and on a shared one neither reaches the other's calls.
Tokens come from a local issuer; the upstream is a real process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from auth._local import LocalGateway, local_gateway

from support.http import modern_body, modern_headers

from .helpers import BOUND, RAW

ROUTE = "raw"


def _config(isolation: str, **upstream: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    upstreams = {
        "raw": {"transport": "stdio", "command": RAW, "sandbox": "insecure-none", **upstream}
    }
    return upstreams, {ROUTE: {"upstreams": ["raw"], "isolation": isolation}}


@pytest.fixture
async def shared() -> AsyncIterator[LocalGateway]:
    async with local_gateway(*_config("shared")) as g:
        yield g


def _messages(raw: bytes) -> list[dict[str, Any]]:
    """The JSON-RPC messages of a JSON or SSE answer."""
    text = raw.decode()
    if not text.lstrip().startswith("{"):
        return [
            orjson.loads(line[5:])
            for line in text.splitlines()
            if line.startswith("data:") and line[5:].strip()
        ]
    return [orjson.loads(text)]


async def _post(
    g: LocalGateway, sub: str, name: str, *, request_id: int = 1, token: Any = None, **args: Any
) -> tuple[int, list[dict[str, Any]]]:
    body = modern_body("tools/call", {"name": name, "arguments": args}, request_id)
    if token is not None:
        body["params"]["_meta"]["progressToken"] = token
    headers = modern_headers("tools/call", name) | g.bearer(sub=sub)
    async with (
        aiohttp.ClientSession() as client,
        client.post(g.url(ROUTE), data=orjson.dumps(body), headers=headers) as resp,
    ):
        return resp.status, _messages(await resp.read())


async def _text(g: LocalGateway, sub: str, name: str, **args: Any) -> str:
    status, messages = await asyncio.wait_for(_post(g, sub, name, **args), BOUND)
    assert status == 200, messages
    return str(messages[-1]["result"]["content"][0]["text"])


async def _status(g: LocalGateway, sub: str) -> dict[str, Any]:
    _, messages = await asyncio.wait_for(_post(g, sub, "status", request_id=99), BOUND)
    return dict(messages[-1]["result"])


async def _until_held(g: LocalGateway, held: list[str]) -> None:
    async def poll() -> None:
        while (await _status(g, "observer"))["held"] != held:
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), BOUND)


async def test_two_principals_same_ids_and_tokens_on_a_shared_process(shared: LocalGateway) -> None:
    assert await _text(shared, "alice", "pid") == await _text(shared, "bob", "pid")
    a = asyncio.create_task(_post(shared, "alice", "wait", token="tok", tag="a"))
    b = asyncio.create_task(_post(shared, "bob", "wait", token="tok", tag="b"))
    await _until_held(shared, ["a", "b"])
    await _text(shared, "bob", "release", request_id=2, tag="a")
    await _text(shared, "alice", "release", request_id=2, tag="b")
    (status_a, msgs_a), (status_b, msgs_b) = await asyncio.wait_for(asyncio.gather(a, b), BOUND)
    assert status_a == status_b == 200
    for msgs, tag in ((msgs_a, "a"), (msgs_b, "b")):
        progress = [m for m in msgs if m.get("method") == "notifications/progress"]
        assert [p["params"]["message"] for p in progress] == [tag]
        assert progress[0]["params"]["progressToken"] == "tok"
        assert msgs[-1]["id"] == 1
        assert msgs[-1]["result"]["content"][0]["text"] == f"released {tag}"


async def test_a_principal_cannot_cancel_anothers_call(shared: LocalGateway) -> None:
    a = asyncio.create_task(_post(shared, "alice", "wait", tag="a"))
    await _until_held(shared, ["a"])
    cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}}
    cancel["params"]["_meta"] = modern_body("x")["params"]["_meta"]
    headers = modern_headers("notifications/cancelled") | shared.bearer(sub="mallory")
    async with (
        aiohttp.ClientSession() as client,
        client.post(shared.url(ROUTE), data=orjson.dumps(cancel), headers=headers) as resp,
    ):
        assert resp.status < 500
    seen = await _status(shared, "observer")
    assert seen["held"] == ["a"] and seen["cancels"] == []
    # Alice closing her own stream is her cancellation: the server hears of it.
    a.cancel()
    with pytest.raises(asyncio.CancelledError):
        await a

    async def poll() -> None:
        while (await _status(shared, "observer"))["cancelled"] != ["a"]:
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), BOUND)


async def test_by_default_principals_get_processes_of_their_own() -> None:
    async with local_gateway(*_config("tenant")) as g:
        assert await _text(g, "alice", "pid") != await _text(g, "bob", "pid")
        assert await _text(g, "alice", "pid") == await _text(g, "alice", "pid")


async def test_an_initialize_flood_cannot_start_unbounded_processes() -> None:
    async with local_gateway(*_config("tenant", max_processes=3)) as g:
        init = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "0"},
            },
        }
        headers = {
            "content-type": "application/json",
            "accept": "application/json, text/event-stream",
        }

        async def initialize(sub: str) -> tuple[int, dict[str, Any], str | None]:
            async with (
                aiohttp.ClientSession() as client,
                client.post(
                    g.url(ROUTE), data=orjson.dumps(init), headers=headers | g.bearer(sub=sub)
                ) as resp,
            ):
                return (
                    resp.status,
                    _messages(await resp.read())[-1],
                    resp.headers.get("mcp-session-id"),
                )

        status, _, legit = await initialize("legit")
        assert status == 200 and legit
        results = [await initialize("flooder") for _ in range(12)]
        opened = [r for r in results if r[0] == 200]
        refused = [r for r in results if r[0] != 200]
        assert len(opened) == 2
        assert len(refused) == 10 and all(r[0] == 503 for r in refused)
        assert all(r[1]["error"]["data"]["code"] == "wardgate.upstream_busy" for r in refused)
        upstream = g.gateway.upstreams["raw"]
        assert upstream.processes == 3  # type: ignore[attr-defined]
        # The legitimate session keeps working beside the flood.
        call = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": "hi"}},
        }
        session_headers = (
            headers
            | g.bearer(sub="legit")
            | {"mcp-session-id": legit, "mcp-protocol-version": "2025-11-25"}
        )
        async with (
            aiohttp.ClientSession() as client,
            client.post(g.url(ROUTE), data=orjson.dumps(call), headers=session_headers) as resp,
        ):
            assert resp.status == 200
            assert _messages(await resp.read())[-1]["result"]["content"][0]["text"] == "hi"


async def test_a_notification_of_no_call_reaches_no_other_principal(shared: LocalGateway) -> None:
    b = asyncio.create_task(_post(shared, "bob", "wait", tag="b"))
    await _until_held(shared, ["b"])
    # Alice's call is answered; then the server speaks while only Bob's call is open.
    assert await _text(shared, "alice", "notify") == "notified"
    gateway_upstream = shared.gateway.upstreams["raw"]

    async def dropped() -> None:
        while gateway_upstream._pool[""].dropped < 1:  # type: ignore[attr-defined]
            await asyncio.sleep(0.02)

    await asyncio.wait_for(dropped(), BOUND)
    await _text(shared, "alice", "release", request_id=2, tag="b")
    status, messages = await asyncio.wait_for(b, BOUND)
    assert status == 200
    assert [m.get("method") for m in messages] == [None]
    assert messages[-1]["result"]["content"][0]["text"] == "released b"


async def test_a_duplicate_id_in_flight_on_a_session_is_refused_in_band() -> None:
    async with local_gateway(*_config("tenant")) as g:
        base = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
        base |= g.bearer(sub="alice")
        init = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "0"},
            },
        }
        async with aiohttp.ClientSession() as client:
            async with client.post(g.url(ROUTE), data=orjson.dumps(init), headers=base) as resp:
                sid = resp.headers["mcp-session-id"]
            headers = base | {"mcp-session-id": sid, "mcp-protocol-version": "2025-11-25"}

            async def send(body: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
                async with client.post(g.url(ROUTE), data=orjson.dumps(body), headers=headers) as r:
                    return r.status, _messages(await r.read())

            def call(name: str, **args: Any) -> dict[str, Any]:
                params = {"name": name, "arguments": args}
                return {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": params}

            held = asyncio.create_task(send(call("wait", tag="w")))

            async def poll() -> None:  # the session's own process holds the call
                probe = {**call("status"), "id": "probe"}
                while (await send(probe))[1][-1]["result"]["held"] != ["w"]:
                    await asyncio.sleep(0.02)

            await asyncio.wait_for(poll(), BOUND)
            status, messages = await asyncio.wait_for(send(call("echo", text="dup")), BOUND)
            assert status == 200
            assert messages[-1]["id"] == 5
            assert messages[-1]["error"]["data"]["code"] == "wardgate.protocol"
            release = {**call("release", tag="w"), "id": 6}
            assert (await asyncio.wait_for(send(release), BOUND))[0] == 200
            status, messages = await asyncio.wait_for(held, BOUND)
            assert messages[-1]["result"]["content"][0]["text"] == "released w"
