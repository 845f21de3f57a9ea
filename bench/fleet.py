#!/usr/bin/env python3
"""Fleet figures: what a sealed session costs per request, and calls/s with 1 and 2 workers.

1. Sealing: ``SessionSealer.id_for`` (once per session, at initialize) and
   ``SessionSealer.open`` (every request a replica serves from a handle it has not
   rebuilt yet), in-process, many times; and the revocation check every request on a
   sealed session makes (one Redis ``GET`` on 127.0.0.1:6379) beside a bare ``PING``.
2. Workers: ``wardgate serve --workers 1`` and ``--workers 2`` in front of the instant
   upstream of ``bench/gateway_overhead.py`` (2026-07-28 ``tools/call``), driven by one
   aiohttp client at concurrency 32; phases alternate (1, 2, 2, 1, …), medians reported.

Run ``.venv/bin/python bench/fleet.py`` (about 1 min; ``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import gateway_overhead as go

from wardgate.routing.sealed import SealKeys, SessionSealer
from wardgate.routing.sessions import GatewaySession
from wardgate.state.memory import MemoryStateStore
from wardgate.state.redis_store import RedisStateStore
from wardgate.upstream.http import HttpSession

TARGET_SEAL_OPEN_US = 20.0
OWNER = ("https://idp.example.com", "tenant-1", "client-app", "user-1234567890")


def _session() -> GatewaySession:
    up = HttpSession.__new__(HttpSession)  # only session_id is read when sealing
    up.session_id = secrets.token_hex(16)  # the size of a typical upstream id
    return GatewaySession(
        id="",
        route="crm",
        upstreams={0: up},
        versions={0: "2025-11-25"},
        protocol_version="2025-11-25",
        owner=OWNER,
    )


def bench_codec(n: int) -> dict[str, float]:
    sealer = SessionSealer(
        SealKeys([secrets.token_bytes(32), secrets.token_bytes(32)]),
        MemoryStateStore(),
        lifetime=86400.0,
        replica="a",
    )
    session = _session()
    handles = [sealer.id_for(session) for _ in range(200)]  # warm-up
    rounds_seal, rounds_open = [], []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(n):
            sealer.id_for(session)
        rounds_seal.append((time.perf_counter() - started) / n * 1e6)
        started = time.perf_counter()
        for i in range(n):
            sealer.open(handles[i % 200], "crm", OWNER)
        rounds_open.append((time.perf_counter() - started) / n * 1e6)
    assert sealer.open(handles[0], "crm", OWNER) is not None
    return {
        "seal_us": statistics.median(rounds_seal),
        "open_us": statistics.median(rounds_open),
        "handle_chars": float(len(handles[0])),
    }


async def bench_revocation(n: int) -> dict[str, float] | None:
    store = RedisStateStore("redis://127.0.0.1:6379/0", key_prefix=f"wg-bench:{os.getpid()}:")
    try:
        await store.start()
    except Exception as exc:  # no Redis here: the in-process figures still stand
        print(f"(no Redis: {exc})")
        return None
    try:
        for _ in range(200):
            await store.doc_get("sealed-revoked:x")
        started = time.perf_counter()
        for _ in range(n):
            await store.doc_get("sealed-revoked:x")
        get_us = (time.perf_counter() - started) / n * 1e6
        raw = store._client  # type: ignore[attr-defined]
        started = time.perf_counter()
        for _ in range(n):
            await raw.ping()
        ping_us = (time.perf_counter() - started) / n * 1e6
        return {"revocation_get_us": get_us, "ping_us": ping_us}
    except AttributeError:
        return {"revocation_get_us": get_us, "ping_us": float("nan")}
    finally:
        await store.aclose()


def _toml(port: int, upstream: int) -> str:
    return (
        f'[server]\nhost = "127.0.0.1"\nport = {port}\n[log]\nlevel = "warning"\n'
        f'[upstreams.fast]\ntransport = "http"\nurl = "http://127.0.0.1:{upstream}/mcp"\n'
        '[routes.fast]\nupstreams = ["fast"]\n'
    )


async def _phase(url: str, concurrency: int, seconds: float) -> float:
    target = go.Target("gateway", url, "modern")
    headers = target.headers()
    done = 0
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as http:
        warm = time.perf_counter() + 0.3
        while time.perf_counter() < warm:
            await go.call(http, target, headers)
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                await go.call(http, target, headers)
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done / (time.perf_counter() - started)


def bench_workers(rounds: int, seconds: float, concurrency: int, logdir: Path) -> dict[int, float]:
    here = str(Path(go.__file__).resolve())
    up_port = go.free_port()
    instant = go.spawn(
        "instant",
        [sys.executable, here, "--serve-instant", str(up_port), secrets.token_hex(4)],
        up_port,
        logdir,
    )
    rates: dict[int, list[float]] = {1: [], 2: []}
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    try:
        order = [1, 2, 2, 1] * ((rounds + 1) // 2)
        for workers in order[: rounds * 2]:
            port = go.free_port()
            config = logdir / f"gw-{port}.toml"
            config.write_text(_toml(port, up_port))
            argv = [sys.executable, "-m", "wardgate.cli", "serve", "-c", str(config)]
            argv += ["--workers", str(workers)]
            gateway = _spawn_gateway(argv, port, workers, env, logdir)
            try:
                url = f"http://127.0.0.1:{port}/mcp/fast"
                rates[workers].append(asyncio.run(_phase(url, concurrency, seconds)))
            finally:
                go.stop(gateway)
    finally:
        go.stop(instant)
    return {w: statistics.median(r) for w, r in rates.items()}


def _spawn_gateway(
    argv: list[str], port: int, workers: int, env: dict[str, str], logdir: Path
) -> go.Child:
    """Start ``wardgate serve``; return once every worker listens on ``port`` (with
    ``--workers`` the supervisor itself never listens)."""
    from wardgate.upstream.reaper import proc_table

    log = logdir / f"gateway-{port}.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, env=env)
    child = go.Child(f"gateway-{workers}", proc, port, log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited {proc.returncode}:\n{child.tail()}")
        listeners = (
            [proc.pid]
            if workers == 1
            else [s.pid for s in proc_table() if s.ppid == proc.pid and s.alive]
        )
        if len(listeners) == workers and all(go.listens(p, port) for p in listeners):
            return child
        time.sleep(0.05)
    go.stop(child)
    raise TimeoutError(f"gateway did not listen:\n{child.tail()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    n = 5_000 if args.quick else 50_000
    codec = bench_codec(n)
    revocation = asyncio.run(bench_revocation(2_000 if args.quick else 10_000))
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print(
        f"sealed session: seal {codec['seal_us']:.1f} µs (once per session), "
        f"open {codec['open_us']:.1f} µs (per request), seal+open "
        f"{codec['seal_us'] + codec['open_us']:.1f} µs (target ≤ {TARGET_SEAL_OPEN_US:.0f}); "
        f"handle {codec['handle_chars']:.0f} chars"
    )
    if revocation is not None:
        print(
            f"revocation check (Redis GET, every request on a sealed session): "
            f"{revocation['revocation_get_us']:.0f} µs; bare PING {revocation['ping_us']:.0f} µs"
        )
    with tempfile.TemporaryDirectory(prefix="wg-fleet-bench-") as tmp:
        rates = bench_workers(
            2 if args.quick else 4, 1.0 if args.quick else 3.0, args.concurrency, Path(tmp)
        )
    print(
        f"calls/s (instant upstream, c={args.concurrency}): 1 worker {rates[1]:.0f}, "
        f"2 workers {rates[2]:.0f} (x{rates[2] / rates[1]:.2f})"
    )
    ok = codec["seal_us"] + codec["open_us"] <= TARGET_SEAL_OPEN_US
    print("seal+open target:", "met" if ok else "MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
