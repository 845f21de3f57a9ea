"""Slow and idle clients against the real ``wardgate serve`` listener: each is cut off
within its bound while a legitimate MCP call from another address still succeeds."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from ._gateway import (
    legit_tools_list,
    mcp_request,
    open_attackers,
    read_response,
    sdk_call,
    wardgate_serve,
)

ATTACKERS = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
#: Scheduling slack on a shared 2-core machine.
SLACK = 1.5


async def _run_attack(sockets: list, trickle: bytes, every: float, for_seconds: float) -> None:
    watchers = [asyncio.ensure_future(a.watch()) for a in sockets]
    end = time.monotonic() + for_seconds
    while time.monotonic() < end and not all(w.done() for w in watchers):
        for attacker in sockets:
            attacker.send(trickle)
        await asyncio.sleep(every)
    await asyncio.wait(watchers, timeout=SLACK)
    for attacker in sockets:
        attacker.close()


async def test_slowloris_sockets_are_cut_at_the_head_deadline_and_never_starve_a_call(
    tmp_path: Path,
) -> None:
    limits = {"header_timeout_seconds": 2.0, "max_connections": 40}
    with wardgate_serve(tmp_path, limits) as gw:
        await legit_tools_list(gw.port)  # warm: the stdio server is running
        sockets = await open_attackers(gw.port, 150, ATTACKERS)
        for attacker in sockets:
            attacker.send(b"POST /mcp/procs HTTP/1.1\r\nhost: 127.0.0.1\r\n")
        attack = asyncio.ensure_future(_run_attack(sockets, b"x-a: b\r\n", 0.25, 6.0))
        # The cap is full of trickling sockets: calls still get through, promptly.
        latencies = [await legit_tools_list(gw.port) for _ in range(5)]
        # The official SDK client too (its own connections; a few round trips).
        assert await sdk_call(gw.port) < 5.0
        await attack
        assert max(latencies) < 2.0, latencies
        closed = [a.closed_after for a in sockets]
        assert None not in closed, "an attacking socket was never closed"
        # No socket outlived the deadline; the last ones were held right up to it.
        assert max(c for c in closed if c is not None) < 2.0 + SLACK, closed
        assert max(c for c in closed if c is not None) >= 1.8, closed
        # 150 sockets cut or displaced, but the log says so about once a second, not 150 times.
        assert 1 <= gw.logs().count("listener bound enforced") <= 10
        assert gw.proc.poll() is None


async def test_a_body_trickled_after_the_head_is_cut_at_the_body_deadline(tmp_path: Path) -> None:
    limits = {"header_timeout_seconds": 5.0, "body_timeout_seconds": 2.0}
    with wardgate_serve(tmp_path, limits) as gw:
        await legit_tools_list(gw.port)
        sockets = await open_attackers(gw.port, 30, ATTACKERS)
        for attacker in sockets:
            attacker.send(
                b"POST /mcp/procs HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
                b"accept: application/json, text/event-stream\r\ncontent-length: 100000\r\n\r\n{"
            )
        attack = asyncio.ensure_future(_run_attack(sockets, b" ", 0.2, 5.0 + SLACK))
        await legit_tools_list(gw.port)
        await attack
        closed = [a.closed_after for a in sockets]
        assert None not in closed, "a slow body was never cut"
        # Cut by the body deadline (2 s), well before the head deadline (5 s) could act.
        assert all(1.8 <= c < 2.0 + SLACK for c in closed if c is not None), closed
        await legit_tools_list(gw.port)


async def test_idle_connections_are_closed_at_their_bounds(tmp_path: Path) -> None:
    limits = {"header_timeout_seconds": 2.0, "keepalive_timeout_seconds": 1.0}
    with wardgate_serve(tmp_path, limits) as gw:
        await legit_tools_list(gw.port)
        # Never sends a byte: the head deadline applies from accept.
        silent = (await open_attackers(gw.port, 1, ATTACKERS))[0]
        # One call, then idle on a keep-alive connection: the keep-alive timeout applies.
        kept = (await open_attackers(gw.port, 1, ATTACKERS))[0]
        kept.send(mcp_request("procs"))
        status, headers, _ = await asyncio.wait_for(read_response(kept.reader), 10)
        assert status == 200 and headers.get("connection") != "close"
        answered = time.monotonic()
        await asyncio.wait_for(asyncio.gather(silent.watch(), kept.watch()), 2.0 + SLACK + 1)
        assert silent.closed_after is not None and 1.8 <= silent.closed_after < 2.0 + SLACK
        assert time.monotonic() - answered < 1.0 + SLACK
        await legit_tools_list(gw.port)


async def test_a_keep_alive_connection_serves_at_most_the_configured_requests(
    tmp_path: Path,
) -> None:
    with wardgate_serve(tmp_path, {"max_requests_per_connection": 3}) as gw:
        client = (await open_attackers(gw.port, 1, ["127.0.0.1"]))[0]
        for i in range(1, 4):
            client.send(mcp_request("procs", request_id=i))
            status, headers, _ = await asyncio.wait_for(read_response(client.reader), 10)
            assert status == 200
            assert (headers.get("connection") == "close") is (i == 3), (i, headers)
        # A fourth request on it is never answered: the connection is closed.
        client.send(mcp_request("procs", request_id=4))
        await asyncio.wait_for(client.watch(), 5)
        assert client.received == b""


async def test_a_pipelined_body_waiting_behind_a_long_call_is_not_cut(tmp_path: Path) -> None:
    # The second request's body arrives in two parts while the first call runs: both
    # are answered, in order, and the body clock does not cut the call in flight.
    with wardgate_serve(tmp_path, {"body_timeout_seconds": 1.0}) as gw:
        marker = tmp_path / "started"
        slow = {"name": "slow", "arguments": {"seconds": 2.5, "marker": str(marker)}}
        second = mcp_request("procs", request_id=2)
        split = second.index(b"\r\n\r\n") + 10
        client = (await open_attackers(gw.port, 1, ["127.0.0.1"]))[0]
        client.send(mcp_request("procs", "tools/call", slow, "slow") + second[:split])
        deadline = time.monotonic() + 10
        while not marker.exists():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        client.send(second[split:])
        for expected in (b"slept 2.5", b'"tools"'):
            status, _, body = await asyncio.wait_for(read_response(client.reader), 10)
            assert status == 200 and expected in body, body
        client.close()
