"""Header floods, connection floods and the 413 close, against the real listener: each
attack fails within its bound and a legitimate MCP call still succeeds beside it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from ._gateway import (
    http_exchange,
    legit_tools_list,
    mcp_request,
    open_attackers,
    read_response,
    sdk_call,
    status_of,
    wardgate_serve,
)

ATTACKERS = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"]
SLACK = 1.5
HEAD = b"POST /mcp/procs HTTP/1.1\r\nhost: 127.0.0.1\r\n"


async def _answer_then_close(port: int, raw: bytes, chunk: int = 0) -> bytes:
    """Send ``raw`` (in ``chunk``-sized pieces if set) and read until the gateway closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.2", 0))
    try:
        pieces = [raw[i : i + chunk] for i in range(0, len(raw), chunk)] if chunk else [raw]
        for piece in pieces:
            try:
                writer.write(piece)
                await writer.drain()
            except ConnectionError:
                break
        received = b""
        try:
            while data := await asyncio.wait_for(reader.read(65536), 5):
                received += data
        except ConnectionError:
            pass
        return received
    finally:
        writer.close()


async def test_oversized_heads_get_431_and_the_connection_closed(tmp_path: Path) -> None:
    limits = {"max_header_bytes": 8192, "max_headers": 50}
    with wardgate_serve(tmp_path, limits) as gw:
        await legit_tools_list(gw.port)
        floods = {
            "one huge header": HEAD + b"x-big: " + b"a" * 200_000 + b"\r\n\r\n",
            "many headers": HEAD + b"".join(b"x-h%d: v\r\n" % i for i in range(200)) + b"\r\n",
            "huge request line": b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\n\r\n",
        }
        for name, raw in floods.items():
            received = await _answer_then_close(gw.port, raw)
            assert status_of(received) == 431, (name, received[:200])
        # A head that never ends is cut once it passes the limit, long before its deadline.
        started = time.monotonic()
        endless = HEAD + b"".join(b"x-h: %s\r\n" % (b"v" * 100) for _ in range(400))
        received = await _answer_then_close(gw.port, endless, chunk=1000)
        assert status_of(received) == 431 and time.monotonic() - started < 5
        # A body far larger than the head limit, arriving with its head, is no head.
        status, _, _ = await http_exchange(gw.port, mcp_request("procs", padding=300_000))
        assert status == 200
        # A legitimate call with headers near (under) the limits is served.
        padding = "".join(f"x-pad-{i}: {'v' * 100}\r\n" for i in range(40)).encode()
        raw = mcp_request("procs").replace(b"\r\n\r\n", b"\r\n" + padding + b"\r\n", 1)
        status, _, _ = await http_exchange(gw.port, raw)
        assert status == 200
        await legit_tools_list(gw.port)


async def test_a_connection_flood_beyond_the_cap_never_locks_out_a_call(tmp_path: Path) -> None:
    limits = {"max_connections": 30, "header_timeout_seconds": 2.0}
    with wardgate_serve(tmp_path, limits) as gw:
        await legit_tools_list(gw.port)
        sockets = await open_attackers(gw.port, 300, ATTACKERS)
        watchers = [asyncio.ensure_future(a.watch()) for a in sockets]
        latencies = [await legit_tools_list(gw.port) for _ in range(5)]
        # The official SDK client too (its own connections; a few round trips).
        assert await sdk_call(gw.port) < 5.0
        await asyncio.wait(watchers, timeout=2.0 + SLACK + 1)
        assert max(latencies) < 2.0, latencies
        closed = [a.closed_after for a in sockets]
        assert None not in closed, "a flooding socket was never closed"
        assert max(c for c in closed if c is not None) < 2.0 + SLACK, closed
        for attacker in sockets:
            attacker.close()


async def test_the_per_address_cap_refuses_quickly_and_spares_other_addresses(
    tmp_path: Path,
) -> None:
    limits = {"max_connections": 200, "max_connections_per_ip": 10, "header_timeout_seconds": 3.0}
    with wardgate_serve(tmp_path, limits) as gw:
        await legit_tools_list(gw.port)
        sockets = await open_attackers(gw.port, 60, ["127.0.0.2"])
        watchers = [asyncio.ensure_future(a.watch()) for a in sockets]
        await asyncio.wait(watchers, timeout=1.0)
        refused = [a for a in sockets if a.closed_after is not None]
        # Everything beyond the ten allowed was answered 503 and closed at once.
        assert len(refused) == 50, len(refused)
        assert all(status_of(a.received) == 503 for a in refused)
        assert "refused (per-address cap)" in gw.logs()
        await legit_tools_list(gw.port)
        await asyncio.wait(watchers, timeout=3.0 + SLACK)
        assert all(a.closed_after is not None for a in sockets)
        for attacker in sockets:
            attacker.close()


async def test_at_the_cap_with_every_connection_busy_new_sockets_are_refused_fast(
    tmp_path: Path,
) -> None:
    with wardgate_serve(tmp_path, {"max_connections": 3}) as gw:
        await legit_tools_list(gw.port)
        markers = [tmp_path / f"started-{i}" for i in range(3)]
        busy = [
            asyncio.ensure_future(
                http_exchange(
                    gw.port,
                    mcp_request(
                        "procs",
                        "tools/call",
                        {"name": "slow", "arguments": {"seconds": 3, "marker": str(marker)}},
                        "slow",
                    ),
                )
            )
            for marker in markers
        ]
        deadline = time.monotonic() + 10
        while not all(m.exists() for m in markers):  # the three calls reached the upstream
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        started = time.monotonic()
        extra = (await open_attackers(gw.port, 1, ["127.0.0.2"]))[0]
        await asyncio.wait_for(extra.watch(), 2)
        assert status_of(extra.received) == 503 and time.monotonic() - started < 1.0
        # The calls being served were not disturbed.
        for status, _, body in await asyncio.gather(*busy):
            assert status == 200 and b"slept 3" in body
        await legit_tools_list(gw.port)


async def test_a_413_closes_the_connection_and_a_pipelined_request_is_never_served(
    tmp_path: Path,
) -> None:
    with wardgate_serve(tmp_path, {"max_body_bytes": 2048}) as gw:
        await legit_tools_list(gw.port)
        body = b"{" + b" " * 4094 + b"}"
        oversize = (
            b"POST /mcp/procs HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            b"accept: application/json, text/event-stream\r\nmcp-protocol-version: 2026-07-28\r\n"
            b"mcp-method: tools/list\r\ncontent-length: %d\r\n\r\n" % len(body)
        ) + body
        # Whole body and a second request in one write: the 413 is the only answer.
        received = await _answer_then_close(gw.port, oversize + mcp_request("procs"))
        assert status_of(received) == 413, received[:300]
        assert received.count(b"HTTP/1.1 ") == 1, received
        # Head only (the body never sent): answered and closed, not left waiting.
        head_only = oversize[: oversize.index(b"\r\n\r\n") + 4]
        received = await _answer_then_close(gw.port, head_only + mcp_request("procs"))
        assert status_of(received) == 413 and received.count(b"HTTP/1.1 ") == 1, received
        await legit_tools_list(gw.port)


async def test_pipelined_requests_within_bounds_are_all_served(tmp_path: Path) -> None:
    # The 413 rule must not cost ordinary pipelining or keep-alive.
    with wardgate_serve(tmp_path) as gw:
        client = (await open_attackers(gw.port, 1, ["127.0.0.1"]))[0]
        client.send(b"".join(mcp_request("procs", request_id=i) for i in range(1, 4)))
        for _ in range(3):
            status, _, _ = await asyncio.wait_for(read_response(client.reader), 10)
            assert status == 200
        client.close()


async def test_a_low_descriptor_limit_lowers_the_cap_instead_of_starving_accept(
    tmp_path: Path,
) -> None:
    # ulimit -n 160 with the default cap of 1000: the gateway fits the cap to the limit,
    # so a flood of 400 sockets is displaced and cut instead of exhausting descriptors.
    with wardgate_serve(tmp_path, {"header_timeout_seconds": 2.0}, nofile=160) as gw:
        await legit_tools_list(gw.port)
        sockets = await open_attackers(gw.port, 400, ATTACKERS)
        watchers = [asyncio.ensure_future(a.watch()) for a in sockets]
        latencies = [await legit_tools_list(gw.port) for _ in range(5)]
        await asyncio.wait(watchers, timeout=2.0 + SLACK + 1)
        assert max(latencies) < 2.0, latencies
        assert all(a.closed_after is not None for a in sockets)
        assert "leaves room for" in gw.logs()
        for attacker in sockets:
            attacker.close()
