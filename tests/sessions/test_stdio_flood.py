"""An initialize flood on a stdio route cannot start unbounded processes: the place is
reserved before the upstream session (a child process) is opened."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import aiohttp
import orjson

from conftest import stdio_demo_upstream
from support.http import ACCEPT
from support.servers import run_gateway

INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "flood", "version": "0"},
    },
}


def _demo_children() -> int:
    """Live child processes of this (the gateway's) process running the demo server."""
    me = str(os.getpid())
    count = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = stat.rsplit(")", 1)[1].split()[1]
        if ppid == me and b"wardgate.demo.server" in cmdline:
            count += 1
    return count


async def test_an_initialize_flood_starts_no_more_processes_than_the_cap() -> None:
    config = {
        "server": {"max_sessions_per_principal": 2},
        "upstreams": {"demo": stdio_demo_upstream()},
        "routes": {"demo": {"upstreams": ["demo"]}},
    }
    before = _demo_children()
    async with run_gateway(config) as (url, _), aiohttp.ClientSession() as http:
        headers = {"content-type": "application/json", "accept": ACCEPT}

        async def initialize() -> int:
            async with http.post(f"{url}/mcp/demo", data=orjson.dumps(INIT), headers=headers) as r:
                await r.read()
                return r.status

        statuses = [await initialize() for _ in range(2)]
        statuses += await asyncio.gather(*(initialize() for _ in range(10)))
        assert statuses[:2] == [200, 200]
        assert sorted(statuses[2:]) == [503] * 10
        assert _demo_children() - before == 2
