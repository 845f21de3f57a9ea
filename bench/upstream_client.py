#!/usr/bin/env python3
"""The upstream leg alone: CPU per ``tools/call`` of Wardgate's HTTP client path
(``HttpSession.request`` and reading the reply) against a bare aiohttp POST + read.

Both run in this one process, on uvloop as ``wardgate serve`` does, against the instant
upstream of ``gateway_overhead.py`` (its own process), in alternating rounds (ABBA), so
that a shared machine's load falls on both alike. Figures are medians over rounds of
``time.process_time()`` per call: this process's CPU only, not the upstream's.

    .venv/bin/python bench/upstream_client.py [--rounds 6] [--calls 3000]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import orjson
import uvloop

from wardgate.upstream.http import HttpUpstream

BODY = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "tools/call",
    "params": {"name": "echo", "arguments": {"text": "hello"}},
}
HEADERS = {"mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "echo"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def measure(url: str, rounds: int, calls: int) -> dict[str, list[float]]:
    upstream = HttpUpstream("instant", url)
    await upstream.start()
    session = upstream.shared_session()

    async def ours() -> None:
        reply = await session.request(BODY, HEADERS)
        async for _ in reply.events:
            pass

    client = aiohttp.ClientSession(
        auto_decompress=False, skip_auto_headers=("User-Agent", "Accept-Encoding")
    )
    headers = {**HEADERS, "accept": "application/json, text/event-stream"}
    headers["content-type"] = "application/json"

    async def bare_aiohttp() -> None:
        async with client.post(url, data=orjson.dumps(BODY), headers=headers) as resp:
            orjson.loads(await resp.read())

    runs: dict[str, Callable[[], Awaitable[None]]] = {
        "wardgate HttpSession": ours,
        "bare aiohttp": bare_aiohttp,
    }
    out: dict[str, list[float]] = {name: [] for name in runs}
    for call in runs.values():  # warm-up: connections, caches
        for _ in range(300):
            await call()
    for r in range(rounds):
        order = list(runs) if r % 2 == 0 else list(reversed(runs))
        for name in order:
            call = runs[name]
            started = time.process_time()
            for _ in range(calls):
                await call()
            out[name].append((time.process_time() - started) / calls * 1e6)
    await client.close()
    await upstream.aclose()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--calls", type=int, default=3000)
    args = parser.parse_args()
    port = free_port()
    here = Path(__file__).with_name("gateway_overhead.py")
    argv = [sys.executable, str(here), "--serve-instant", str(port), "bench"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("the instant upstream did not start")
            time.sleep(0.05)
        out = uvloop.run(measure(f"http://127.0.0.1:{port}/mcp", args.rounds, args.calls))
    finally:
        proc.terminate()
        proc.wait(5)
    print(f"CPU per call of this process, median of {args.rounds} rounds x {args.calls} calls:")
    for name, values in out.items():
        print(
            f"  {name:<22} {statistics.median(values):6.1f} µs "
            f"(rounds {min(values):.1f}-{max(values):.1f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
