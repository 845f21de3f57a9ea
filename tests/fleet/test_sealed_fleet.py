"""Sealed sessions across a fleet: three real ``wardgate serve`` processes sharing the
real Redis, behind a round-robin client (the official Python SDK over an httpx
transport) that never sends two consecutive requests of one session to one replica."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import secrets
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from support.servers import free_port, spawn_http_server
from wardgate.routing.sealed import SealKeys, SessionSealer
from wardgate.routing.sessions import GatewaySession
from wardgate.state.memory import MemoryStateStore
from wardgate.upstream.http import HttpSession
from wardgate.upstream.reaper import proc_table

from ._fleet import PROCS_SERVER, REDIS_URL, Proc, served, write_config

CONFORMANCE = str(Path(__file__).parents[1] / "servers" / "conformance_server.py")
LEGACY = "2025-11-25"
ANONYMOUS = (None, None, None, "anonymous")


class RoundRobin(httpx2.AsyncBaseTransport):
    """Sends each request of a session to a replica other than its previous one."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.inner = httpx2.AsyncHTTPTransport()
        self.last: dict[str | None, int] = {}
        self.turn = 0
        #: (session id, method, port, last-event-id) of every request sent
        self.sent: list[tuple[str | None, str, int, str | None]] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        sid = request.headers.get("mcp-session-id")
        self.turn += 1
        port = self.ports[self.turn % len(self.ports)]
        if sid is not None and port == self.last.get(sid):
            self.turn += 1
            port = self.ports[self.turn % len(self.ports)]
        request.url = request.url.copy_with(port=port)
        self.last[sid] = port
        self.sent.append((sid, request.method, port, request.headers.get("last-event-id")))
        response = await self.inner.handle_async_request(request)
        new = response.headers.get("mcp-session-id")
        if sid is None and new is not None:
            self.last[new] = port
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def _key() -> tuple[bytes, str]:
    key = secrets.token_bytes(32)
    return key, base64.b64encode(key).decode()


def _sections(upstream_port: int, prefix: str, keys: list[str]) -> dict[str, dict[str, Any]]:
    return {
        "server": {"port": "__PORT__", "shutdown_drain_seconds": 1.0},
        "server.sealed_sessions": {"keys": keys},
        "server.sealed_sessions.redis": {"url": REDIS_URL, "key_prefix": prefix},
        "log": {"level": "warning", "format": "text"},
        "upstreams.conf": {"transport": "http", "url": f"http://127.0.0.1:{upstream_port}/mcp"},
        "upstreams.procs": {
            "transport": "stdio",
            "command": [sys.executable, PROCS_SERVER],
            "sandbox": "insecure-none",
        },
        "routes.conf": {"upstreams": ["conf"]},
        "routes.procs": {"upstreams": ["procs"]},
    }


@contextlib.contextmanager
def _replica(
    tmp_path: Path, name: str, upstream_port: int, prefix: str, env: dict[str, str]
) -> Iterator[Proc]:
    port = free_port()
    names = sorted(k for k in env if k.startswith("WG_KEY"))
    order = env.get("ORDER", ",".join(names)).split(",")
    config = write_config(
        tmp_path / f"{name}-{port}.toml", port, _sections(upstream_port, prefix, order)
    )
    with served(config, port, env={**env, "WARDGATE_REPLICA": name}) as proc:
        yield proc


async def _raw(
    port: int,
    route: str,
    sid: str | None,
    method: str = "tools/list",
    http_method: str = "POST",
) -> httpx2.Response:
    headers = {
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": LEGACY,
    }
    if sid is not None:
        headers["mcp-session-id"] = sid
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": 7, "method": method}
    if method == "initialize":
        body["params"] = {
            "protocolVersion": LEGACY,
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        }
    async with httpx2.AsyncClient(timeout=10) as client:
        if http_method == "DELETE":
            return await client.delete(f"http://127.0.0.1:{port}/mcp/{route}", headers=headers)
        return await client.post(f"http://127.0.0.1:{port}/mcp/{route}", json=body, headers=headers)


def _forge(key: bytes, owner: Any, *, expired: bool, upstream_sid: str) -> str:
    """A handle sealed with the fleet's real key, for another owner or already expired."""
    sealer = SessionSealer(
        SealKeys([key]),
        MemoryStateStore(),
        lifetime=60.0,
        replica="x",
        clock=(lambda: 0.0) if expired else time.time,
    )
    up = HttpSession.__new__(HttpSession)
    up.session_id = upstream_sid
    session = GatewaySession(
        id="",
        route="conf",
        upstreams={0: up},
        versions={0: LEGACY},
        protocol_version=LEGACY,
        owner=owner,
    )
    return sealer.id_for(session)


@pytest.fixture
def upstream_port() -> Iterator[int]:
    port = free_port()
    with spawn_http_server([sys.executable, CONFORMANCE, "--port", str(port)], port):
        yield port


async def test_three_replicas_serve_one_session_in_turn_both_eras(
    tmp_path: Path, redis_prefix: str, upstream_port: int
) -> None:
    key, encoded = _key()
    env = {"WG_KEY1": encoded}
    with ExitStack() as stack:
        replicas = [
            stack.enter_context(_replica(tmp_path, n, upstream_port, redis_prefix, env))
            for n in ("a", "b", "c")
        ]
        ports = [r.port for r in replicas]
        url = f"http://127.0.0.1:{ports[0]}/mcp/conf"

        # -- handshake era, the official SDK client ------------------------------
        transport = RoundRobin(ports)
        async with (
            asyncio.timeout(60),
            httpx2.AsyncClient(transport=transport, timeout=30) as http,
            Client(streamable_http_client(url, http_client=http), mode="legacy") as client,
        ):
            assert client.protocol_version == LEGACY
            for _ in range(4):
                tools = {t.name for t in (await client.list_tools()).tools}
                assert "test_simple_text" in tools
                result = await client.call_tool("test_simple_text", {})
                assert not result.is_error
            # The tool ends its POST stream mid-call; the SDK resumes with GET +
            # Last-Event-ID, which the round robin sends to another replica.
            resumed = await client.call_tool("test_reconnection", {})
            assert not resumed.is_error
            assert "completed" in resumed.content[0].text  # type: ignore[union-attr]
        sid = next(s for s, *_ in transport.sent if s is not None)
        mine = [(m, p, last) for s, m, p, last in transport.sent if s == sid]
        ports_used = [p for _, p, _ in mine]
        assert all(a != b for a, b in itertools.pairwise(ports_used))
        assert set(ports_used) == set(ports)
        assert sid.startswith("s")
        resumes = [(p, last) for m, p, last in mine if m == "GET" and last is not None]
        assert resumes, transport.sent
        # The client's DELETE on close (one replica) ends it on all of them.
        assert mine[-1][0] == "DELETE"
        for port in ports:
            gone = await _raw(port, "conf", sid)
            assert gone.status_code == 404, (port, gone.text)

        # -- the 2026-07-28 era through the same round robin ---------------------
        modern = RoundRobin(ports)
        async with (
            asyncio.timeout(60),
            httpx2.AsyncClient(transport=modern, timeout=30) as http,
            Client(streamable_http_client(url, http_client=http), mode="auto") as client,
        ):
            assert client.protocol_version == "2026-07-28"
            for _ in range(3):
                assert not (await client.call_tool("test_simple_text", {})).is_error
        assert {p for *_, p, _ in modern.sent} == set(ports)

        # -- refusals, each beside a legitimate session that still works ---------
        opened = await _raw(ports[0], "conf", None, "initialize")
        assert opened.status_code == 200
        good = opened.headers["mcp-session-id"]
        upstream_sid = "no-such-upstream-session"
        raw = bytearray(base64.urlsafe_b64decode(good[1:] + "=" * (-len(good[1:]) % 4)))
        raw[20] ^= 0x40
        tampered = "s" + base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
        other = _forge(
            key, ("https://idp", None, "app", "mallory"), expired=False, upstream_sid=upstream_sid
        )
        expired = _forge(key, ANONYMOUS, expired=True, upstream_sid=upstream_sid)
        foreign = SessionSealer(
            SealKeys([secrets.token_bytes(32)]), MemoryStateStore(), lifetime=60, replica="x"
        ).id_for(
            GatewaySession(
                id="",
                route="conf",
                upstreams={0: _http_up(upstream_sid)},
                versions={0: LEGACY},
                protocol_version=LEGACY,
                owner=ANONYMOUS,
            )
        )
        for port in ports[1:]:
            for bad in (tampered, other, expired, foreign, "s", good + "x"):
                refused = await _raw(port, "conf", bad)
                assert refused.status_code == 404, (bad, refused.text)
            # The same handle on another route is unknown there too.
            assert (await _raw(port, "procs", good)).status_code == 404
            assert (await _raw(port, "conf", good)).status_code == 200

        # -- a stdio session is pinned to its replica ----------------------------
        pinned = await _raw(ports[1], "procs", None, "initialize")
        assert pinned.status_code == 200
        pid = pinned.headers["mcp-session-id"]
        assert pid.startswith("rb.")
        assert (await _raw(ports[0], "procs", pid)).status_code == 404
        assert (await _raw(ports[2], "procs", pid)).status_code == 404
        assert (await _raw(ports[1], "procs", pid)).status_code == 200


def _http_up(sid: str) -> HttpSession:
    up = HttpSession.__new__(HttpSession)
    up.session_id = sid
    return up


async def test_key_rotation_across_restarts(
    tmp_path: Path, redis_prefix: str, upstream_port: int
) -> None:
    _, old = _key()
    _, new = _key()
    with _replica(tmp_path, "a", upstream_port, redis_prefix, {"WG_KEY1": old}) as a:
        opened = await _raw(a.port, "conf", None, "initialize")
        assert opened.status_code == 200
        handle = opened.headers["mcp-session-id"]
    # Replica a has shut down (its sweep of the session must not have ended it upstream).
    # New key first, old still listed: the old handle opens, new handles use the new key.
    both = {"WG_KEY1": old, "WG_KEY2": new, "ORDER": "WG_KEY2,WG_KEY1"}
    with _replica(tmp_path, "b", upstream_port, redis_prefix, both) as b:
        assert (await _raw(b.port, "conf", handle)).status_code == 200
        fresh = (await _raw(b.port, "conf", None, "initialize")).headers["mcp-session-id"]
    with _replica(tmp_path, "c", upstream_port, redis_prefix, {"WG_KEY2": new}) as c:
        assert (await _raw(c.port, "conf", handle)).status_code == 404
        assert (await _raw(c.port, "conf", fresh)).status_code == 200


async def test_workers_of_one_replica_serve_a_session_in_turn(
    tmp_path: Path, redis_prefix: str, upstream_port: int
) -> None:
    """``--workers 2`` with sealed sessions: a connection per request spreads one SDK
    session over both workers."""
    _, encoded = _key()
    port = free_port()
    sections = _sections(upstream_port, redis_prefix, ["WG_KEY1"])
    sections["limits"] = {"store": "redis"}
    sections["limits.redis"] = {"url": REDIS_URL, "key_prefix": redis_prefix}
    sections["limits.rate"] = {"requests": 100000, "per_seconds": 1.0, "burst": 100000}
    config = write_config(tmp_path / "workers.toml", port, sections)
    with served(config, port, "--workers", "2", env={"WG_KEY1": encoded}) as gw:
        workers = {s.pid for s in proc_table() if s.ppid == gw.proc.pid and s.alive}
        assert len(workers) == 2
        # Nothing reached the upstream yet: a connection below is a call relayed.
        assert not any(_connected_to(w, upstream_port) for w in workers)
        fresh = httpx2.AsyncHTTPTransport(limits=httpx2.Limits(max_keepalive_connections=0))
        async with (
            asyncio.timeout(60),
            httpx2.AsyncClient(transport=fresh, timeout=30) as http,
            Client(
                streamable_http_client(f"{gw.base}/mcp/conf", http_client=http), mode="legacy"
            ) as client,
        ):
            for _ in range(12):
                assert not (await client.call_tool("test_simple_text", {})).is_error
            # Both workers relayed calls of this one session: each holds its own
            # connection to the upstream.
            assert {w for w in workers if _connected_to(w, upstream_port)} == workers


def _connected_to(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds a TCP connection to 127.0.0.1:``port``."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[2].split(":")[1], 16) == port and fields[3] == "01":  # ESTABLISHED
            inodes.add(f"socket:[{fields[9]}]")
    fds = Path(f"/proc/{pid}/fd")
    return any(str(fd.readlink()) in inodes for fd in fds.iterdir() if fd.is_symlink())
