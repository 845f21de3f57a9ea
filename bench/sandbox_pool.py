"""What per-call sandboxes cost: a warm-pool acquire, and a ``tools/call`` end to end in
a fresh sandbox per call against the same call on a per-session process.

For a small Python stdio server (raw JSON-RPC, no SDK import), under bubblewrap and,
where ``runsc --network=none do true`` works, gVisor:

* acquire: popping a started, initialized member off a full pool (p50/p99);
* per-call: ``tools/call`` through :meth:`StdioUpstream.shared_session` with
  ``per_call = {tools = ["*"]}``, the pool full before each call (steady state), to
  the answer;
* per-session: the same call on one already-initialized dedicated session.

Target (issue 9): a warm-pool acquire at most 5 ms.

Run: ``.venv/bin/python bench/sandbox_pool.py [--runs N]``
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from wardgate.config.sandboxing import PerCallSettings
from wardgate.upstream.bwrap import BubblewrapRunner
from wardgate.upstream.gvisor import GVisorRunner
from wardgate.upstream.profile import SandboxProfile
from wardgate.upstream.runners import gvisor_works
from wardgate.upstream.seam import UpstreamSession
from wardgate.upstream.stdio import StdioUpstream
from wardgate.upstream.warm_pool import WarmPool

BASE = str(Path(os.path.realpath(sys.executable)).parent.parent)
SERVER = """\
import json, os, sys
for line in sys.stdin:
    m = json.loads(line)
    if "id" not in m:
        continue
    if m["method"] == "initialize":
        r = {"protocolVersion": m["params"]["protocolVersion"], "capabilities": {"tools": {}},
             "serverInfo": {"name": "bench", "version": "0"}}
    else:
        r = {"content": [{"type": "text", "text": str(os.getpid())}]}
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": m["id"], "result": r}) + "\\n")
    sys.stdout.flush()
"""
_ids = iter(range(1, 10**9))


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _filled(pool: WarmPool) -> None:
    while pool.ready < pool.settings.warm_pool:
        await asyncio.wait_for(pool.changed(), 60)


async def _call(session: UpstreamSession, method: str = "tools/call") -> Any:
    params: dict[str, Any] = {"name": "t", "arguments": {}}
    if method == "initialize":
        params = {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "bench", "version": "0"},
        }
    reply = await session.request(
        {"jsonrpc": "2.0", "id": next(_ids), "method": method, "params": params}, {}
    )
    return [e async for e in reply.events][-1].message


async def _runner(kind: str, runs: int, profile: SandboxProfile, argv: list[str]) -> None:
    root = Path(tempfile.mkdtemp(prefix="wardgate-pool-bench-"))
    cls = BubblewrapRunner if kind == "bubblewrap" else GVisorRunner
    runner = cls(profile, root=root)
    up = StdioUpstream("bench", argv, runner, per_call=PerCallSettings(tools=("*",), warm_pool=2))
    plain = StdioUpstream("bench", argv, runner)  # per session: the baseline
    await up.start()
    await plain.start()
    pool = up.warm_pool
    assert pool is not None
    try:
        await _call(up.shared_session(""))  # the lazy start fills the pool
        acquire: list[float] = []
        for _ in range(runs):
            await _filled(pool)
            t0 = time.perf_counter()
            session = await pool._acquire()
            acquire.append(time.perf_counter() - t0)
            await pool._kill(session)
        per_call: list[float] = []
        for _ in range(runs):
            await _filled(pool)
            while pool.leases:  # noqa: ASYNC110 - no event says the last sandbox is gone
                await asyncio.sleep(0.002)
            t0 = time.perf_counter()
            await _call(up.shared_session(""))
            per_call.append(time.perf_counter() - t0)
        session = await plain.open_session()
        await _call(session, "initialize")
        per_session: list[float] = []
        for _ in range(runs):
            t0 = time.perf_counter()
            await _call(session)
            per_session.append(time.perf_counter() - t0)
        await session.close()
    finally:
        await up.aclose()
        await plain.aclose()
        await runner.aclose()
        shutil.rmtree(root, ignore_errors=True)
    ms = 1000.0
    print(
        f"{kind:10s} acquire p50 {_pct(acquire, 0.5) * ms:6.2f} ms  p99 "
        f"{_pct(acquire, 0.99) * ms:6.2f} ms  (target <= 5 ms)"
    )
    print(
        f"{kind:10s} call end to end: per-call p50 {statistics.median(per_call) * ms:7.2f} ms"
        f"  p99 {_pct(per_call, 0.99) * ms:7.2f} ms;  per-session p50 "
        f"{statistics.median(per_session) * ms:6.2f} ms  (ratio "
        f"{statistics.median(per_call) / statistics.median(per_session):.1f}x)"
    )


def _write_server(tmp: str) -> Path:
    server = Path(tmp) / "server.py"
    server.write_text(SERVER)
    server.chmod(0o644)
    Path(tmp).chmod(0o755)
    return server


async def main(runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = _write_server(tmp)
        profile = SandboxProfile(upstream="bench", read_only=(sys.prefix, BASE, str(server)))
        argv = [sys.executable, "-I", "-S", str(server)]
        print(f"runs {runs}; {os.cpu_count()} cores; figures are noisy on a shared machine")
        if shutil.which("bwrap"):
            await _runner("bubblewrap", runs, profile, argv)
        if gvisor_works():
            await _runner("gvisor", max(5, runs // 3), profile, argv)
        else:
            print("gvisor     runsc does not work here: skipped")


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    asyncio.run(main(parser.parse_args().runs))
