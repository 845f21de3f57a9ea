#!/usr/bin/env python3
"""Gateway overhead: ``tools/call`` through Wardgate versus the same call made directly.

Everything runs on loopback in one invocation:

* upstream (a): a minimal ASGI app under uvicorn that answers ``tools/call`` at once
  (this file, re-executed with ``--serve-instant``), so the difference is the gateway;
* upstream (b): the Python SDK demo server (``python -m wardgate.demo.server --http``);
* the gateway: ``wardgate serve --config <tmp toml>`` with the demo guard on (a tool
  deny list) and one route per upstream;
* the load generator: this process, one aiohttp client with keep-alive, used for the
  direct and the gateway calls alike.

Direct and gateway phases alternate (ABBA order) over several rounds; the figures are
medians over rounds. Run ``.venv/bin/python bench/gateway_overhead.py`` (about 2 min)
or add ``--quick`` for a ~30 s smoke run. ``--json FILE`` also writes the raw rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import platform
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

MODERN = "2026-07-28"
HANDSHAKE = "2025-11-25"
TOOL = "echo"
ACCEPT = "application/json, text/event-stream"
INSTANT_NAME = "wardgate-bench-instant"
CLK_TCK = os.sysconf("SC_CLK_TCK")

#: ``wardgate serve`` on uvloop, for ``--gateway-uvloop`` (argv[1:] are the CLI's arguments).
UVLOOP_SHIM = (
    "import asyncio, sys, uvloop; asyncio.set_event_loop_policy(uvloop.EventLoopPolicy()); "
    "from wardgate.cli import main; sys.exit(main(sys.argv[1:]))"
)

# Targets from the issues. For the instant upstream (issue 6), as ratios to the direct
# call measured in the same run, since machines differ by 1.5-2x: added p50 at c=1 at
# most the direct call's own p50; gateway CPU per call at c=N at most 3x the upstream's
# (direct); c=N calls/s at least 0.5x direct. The SDK upstream keeps the first issue's.
TARGET_ADDED_P50_MS = 0.5
TARGET_ADDED_P50_RATIO = 1.0
TARGET_CPU_RATIO = 3.0
TARGET_RATIO = {"instant": 0.50, "sdk": 0.50}

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]


# -- upstream (a): the instant server ------------------------------------------------


def make_instant_app(token: str) -> AsgiApp:
    """Just enough Streamable HTTP (2026-07-28, stateless) to answer ``tools/call``."""
    server_meta = {"io.modelcontextprotocol/serverInfo": {"name": INSTANT_NAME, "version": token}}
    tools = [
        {"name": name, "inputSchema": {"type": "object"}} for name in (TOOL, "delete_everything")
    ]

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        if scope["method"] != "POST":
            await send({"type": "http.response.start", "status": 405, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError:
            request = None
        if not isinstance(request, dict) or "method" not in request or "id" not in request:
            # A notification (or junk): accepted, nothing to answer.
            await send({"type": "http.response.start", "status": 202, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        method = request["method"]
        params = request.get("params") or {}
        answer: dict[str, Any]
        if method == "tools/call":
            arguments = params.get("arguments") or {}
            text = str(arguments.get("text", ""))
            answer = {
                "result": {
                    "content": [{"type": "text", "text": text}],
                    "isError": False,
                    "resultType": "complete",
                    "_meta": server_meta,
                }
            }
        elif method == "tools/list":
            answer = {"result": {"tools": tools, "resultType": "complete", "_meta": server_meta}}
        else:
            answer = {"error": {"code": -32601, "message": f"method not found: {method}"}}
        payload = orjson.dumps({"jsonrpc": "2.0", "id": request["id"], **answer})
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    return app


def serve_instant(port: int, token: str) -> None:
    import uvicorn

    uvicorn.run(
        make_instant_app(token),
        host="127.0.0.1",
        port=port,
        lifespan="off",
        access_log=False,
        log_level="warning",
        loop="auto",
        http="auto",
    )


# -- processes -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listen_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(cols[9])
    return inodes


def listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` itself holds the listening socket on ``port``."""
    inodes = _listen_inodes(port)
    if not inodes:
        return False
    wanted = {f"socket:[{i}]" for i in inodes}
    fd_dir = Path(f"/proc/{pid}/fd")
    with contextlib.suppress(OSError):
        for fd in fd_dir.iterdir():
            with contextlib.suppress(OSError):
                if str(fd.readlink()) in wanted:
                    return True
    return False


def cpu_ticks(pid: int) -> int:
    """utime + stime of ``pid`` in clock ticks."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return -1


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


def spawn(name: str, argv: list[str], port: int, logdir: Path, timeout: float = 30.0) -> Child:
    log = logdir / f"{name}.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT)
    child = Child(name, proc, port, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{child.tail()}")
        if listens(proc.pid, port):
            return child
        time.sleep(0.05)
    stop(child)
    raise TimeoutError(f"{name} did not listen on 127.0.0.1:{port} within {timeout}s")


def stop(child: Child) -> None:
    if child.proc.poll() is None:
        child.proc.terminate()
        try:
            child.proc.wait(5)
        except subprocess.TimeoutExpired:
            child.proc.kill()
            child.proc.wait()


def gateway_toml(port: int, upstreams: dict[str, int], log_level: str) -> str:
    lines = [
        "[server]",
        'host = "127.0.0.1"',
        f"port = {port}",
        "",
        "[log]",
        f'level = "{log_level}"',
        "",
    ]
    for name, up_port in upstreams.items():
        lines += [
            f"[upstreams.{name}]",
            'transport = "http"',
            f'url = "http://127.0.0.1:{up_port}/mcp"',
            "",
            f"[routes.{name}]",
            f'upstreams = ["{name}"]',
            'tools = { deny = ["delete_*"] }',
            "",
        ]
    return "\n".join(lines)


# -- the client ----------------------------------------------------------------------


class CallFailed(Exception):
    pass


@dataclass
class Target:
    """One endpoint a scenario calls: ``direct`` (the upstream) or ``gateway``."""

    kind: str
    url: str
    era: str
    session_id: str | None = None
    _next_id: int = 0

    def headers(self) -> dict[str, str]:
        out = {"content-type": "application/json", "accept": ACCEPT}
        if self.era == "modern":
            out.update(
                {"mcp-protocol-version": MODERN, "mcp-method": "tools/call", "mcp-name": TOOL}
            )
        else:
            out["mcp-protocol-version"] = HANDSHAKE
            if self.session_id is not None:
                out["mcp-session-id"] = self.session_id
        return out

    def body(self, tool: str = TOOL) -> tuple[int, bytes]:
        self._next_id += 1
        params: dict[str, Any] = {"name": tool, "arguments": {"text": "hello"}}
        if self.era == "modern":
            params["_meta"] = {
                "io.modelcontextprotocol/protocolVersion": MODERN,
                "io.modelcontextprotocol/clientCapabilities": {},
            }
        message = {"jsonrpc": "2.0", "id": self._next_id, "method": "tools/call", "params": params}
        return self._next_id, orjson.dumps(message)


def decode_reply(content_type: str, body: bytes) -> dict[str, Any]:
    """The JSON-RPC response in a JSON or SSE body."""
    if content_type.startswith("text/event-stream"):
        found: dict[str, Any] | None = None
        for line in body.splitlines():
            if line.startswith(b"data:") and line[5:].strip():
                message = orjson.loads(line[5:])
                if isinstance(message, dict) and "method" not in message:
                    found = message
        if found is None:
            raise CallFailed("SSE stream without a response")
        return found
    message = orjson.loads(body)
    if not isinstance(message, dict):
        raise CallFailed("response is not a JSON object")
    return message


async def call(http: aiohttp.ClientSession, target: Target, headers: dict[str, str]) -> float:
    """One tools/call; returns its latency in seconds.

    Raises:
        CallFailed: the call did not return a successful result.
    """
    request_id, body = target.body()
    started = time.perf_counter()
    async with http.post(target.url, data=body, headers=headers) as resp:
        raw = await resp.read()
        elapsed = time.perf_counter() - started
        ctype = resp.headers.get("content-type", "")
        status = resp.status
    if status != 200:
        raise CallFailed(f"{target.kind}: HTTP {status}: {raw[:200]!r}")
    message = decode_reply(ctype, raw)
    result = message.get("result")
    if message.get("id") != request_id or not isinstance(result, dict) or result.get("isError"):
        raise CallFailed(f"{target.kind}: bad answer {raw[:200]!r}")
    return elapsed


async def handshake(http: aiohttp.ClientSession, target: Target) -> None:
    """Open a 2025-11-25 session (initialize + notifications/initialized)."""
    init = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": HANDSHAKE,
            "capabilities": {},
            "clientInfo": {"name": "wardgate-bench", "version": "1"},
        },
    }
    headers = {"content-type": "application/json", "accept": ACCEPT}
    async with http.post(target.url, data=orjson.dumps(init), headers=headers) as resp:
        raw = await resp.read()
        sid = resp.headers.get("mcp-session-id")
        message = decode_reply(resp.headers.get("content-type", ""), raw)
    if sid is None or "result" not in message:
        raise CallFailed(f"{target.kind}: initialize failed: {raw[:300]!r}")
    target.session_id = sid
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    async with http.post(target.url, data=orjson.dumps(note), headers=target.headers()) as resp:
        await resp.read()
        if resp.status != 202:
            raise CallFailed(f"{target.kind}: notifications/initialized got HTTP {resp.status}")


async def end_session(http: aiohttp.ClientSession, target: Target) -> None:
    if target.session_id is None:
        return
    with contextlib.suppress(aiohttp.ClientError):
        async with http.delete(target.url, headers=target.headers()) as resp:
            await resp.read()


async def expect_denied(http: aiohttp.ClientSession, target: Target) -> None:
    """The guard is on: a denied tool never reaches the upstream."""
    _, body = target.body("delete_everything")
    headers = {**target.headers(), "mcp-name": "delete_everything"}
    async with http.post(target.url, data=body, headers=headers) as resp:
        raw = await resp.read()
        message = decode_reply(resp.headers.get("content-type", ""), raw)
    if "error" not in message:
        raise CallFailed(f"the gateway let a denied tool through: {raw[:200]!r}")


# -- phases --------------------------------------------------------------------------


@dataclass
class Phase:
    calls: int
    seconds: float
    latencies: list[float]
    gw_ticks: int
    up_ticks: int
    client_cpu: float


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


async def run_phase(
    http: aiohttp.ClientSession,
    target: Target,
    concurrency: int,
    seconds: float,
    gateway_pid: int,
    upstream_pid: int,
) -> Phase:
    """``concurrency`` workers call back to back for ``seconds``."""
    headers = target.headers()
    latencies: list[float] = []
    deadline = 0.0

    async def worker() -> None:
        while time.perf_counter() < deadline:
            latencies.append(await call(http, target, headers))

    gw0, up0, cpu0 = cpu_ticks(gateway_pid), cpu_ticks(upstream_pid), time.process_time()
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    gw1, up1, cpu1 = cpu_ticks(gateway_pid), cpu_ticks(upstream_pid), time.process_time()
    return Phase(len(latencies), elapsed, latencies, gw1 - gw0, up1 - up0, cpu1 - cpu0)


@dataclass
class Cell:
    """One (scenario, target, concurrency) over all rounds."""

    p50_ms: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)
    rate: list[float] = field(default_factory=list)
    calls: int = 0
    gw_ticks: int = 0
    up_ticks: int = 0
    client_cpu: float = 0.0

    def add(self, phase: Phase) -> None:
        self.p50_ms.append(percentile(phase.latencies, 0.50) * 1000)
        self.p99_ms.append(percentile(phase.latencies, 0.99) * 1000)
        self.rate.append(phase.calls / phase.seconds)
        self.calls += phase.calls
        self.gw_ticks += phase.gw_ticks
        self.up_ticks += phase.up_ticks
        self.client_cpu += phase.client_cpu

    @property
    def p50(self) -> float:
        return statistics.median(self.p50_ms)

    @property
    def p99(self) -> float:
        return statistics.median(self.p99_ms)

    @property
    def cps(self) -> float:
        return statistics.median(self.rate)

    def cpu_us(self, ticks: int) -> float:
        return ticks / CLK_TCK / max(1, self.calls) * 1e6


@dataclass
class Scenario:
    label: str
    upstream: str
    era: str
    concurrencies: tuple[int, ...]
    cells: dict[str, Cell] = field(default_factory=dict)

    def cell(self, kind: str, concurrency: int) -> Cell:
        return self.cells.setdefault(f"{kind}/c{concurrency}", Cell())


@dataclass
class Settings:
    rounds: int
    c1_seconds: float
    cn_seconds: float
    warmup_seconds: float
    concurrency: int
    log_level: str
    gateway_uvloop: bool = False


async def run_scenario(
    http: aiohttp.ClientSession,
    scenario: Scenario,
    targets: dict[str, Target],
    settings: Settings,
    gateway_pid: int,
    upstream_pid: int,
) -> None:
    for target in targets.values():
        for conc in (settings.concurrency, 1):
            await run_phase(http, target, conc, settings.warmup_seconds, gateway_pid, upstream_pid)
    for rnd in range(settings.rounds):
        order = ["direct", "gateway"] if rnd % 2 == 0 else ["gateway", "direct"]
        for conc in scenario.concurrencies:
            seconds = settings.c1_seconds if conc == 1 else settings.cn_seconds
            for kind in order:
                phase = await run_phase(
                    http, targets[kind], conc, seconds, gateway_pid, upstream_pid
                )
                scenario.cell(kind, conc).add(phase)
        print(f"  {scenario.label}: round {rnd + 1}/{settings.rounds} done", flush=True)


# -- report --------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "aiohttp": aiohttp.__version__,
    }


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def report(
    scenarios: list[Scenario], settings: Settings, rss: dict[str, int], info: dict[str, Any]
) -> list[tuple[str, bool]]:
    conc = settings.concurrency
    print()
    print(
        f"Machine: {info['cpu']}, {info['cpus']} CPUs, Python {info['python']}, "
        f"load avg {info['load_before']} -> {info['load_after']}"
    )
    print(
        f"{settings.rounds} rounds, c=1 {settings.c1_seconds:g} s and c={conc} "
        f"{settings.cn_seconds:g} s per phase, direct/gateway alternating; medians over rounds; "
        f"gateway log level {settings.log_level}"
        + (", gateway on uvloop (--gateway-uvloop)" if settings.gateway_uvloop else "")
    )
    print()
    head = (
        f"{'scenario':<28} {'target':<8} {'p50 c1':>9} {'p99 c1':>9} "
        f"{'calls/s c' + str(conc):>13} {'gw CPU/call c1':>15} {'gw CPU/call c' + str(conc):>16}"
    )
    print(head)
    print("-" * len(head))
    checks: list[tuple[str, bool]] = []

    def ms(v: float) -> str:
        return f"{v:.3f} ms"

    for sc in scenarios:
        for kind in ("direct", "gateway"):
            c1 = sc.cell(kind, 1)
            cn = sc.cells.get(f"{kind}/c{conc}")
            rate = f"{cn.cps:,.0f}" if cn else "-"
            cpu1 = f"{c1.cpu_us(c1.gw_ticks):.0f} µs" if kind == "gateway" else ""
            cpun = f"{cn.cpu_us(cn.gw_ticks):.0f} µs" if kind == "gateway" and cn else ""
            print(
                f"{sc.label if kind == 'direct' else '':<28} {kind:<8} {ms(c1.p50):>9} "
                f"{ms(c1.p99):>9} {rate:>13} {cpu1:>15} {cpun:>16}"
            )
        d1, g1 = sc.cell("direct", 1), sc.cell("gateway", 1)
        added50, added99 = g1.p50 - d1.p50, g1.p99 - d1.p99
        dn, gn = sc.cells.get(f"direct/c{conc}"), sc.cells.get(f"gateway/c{conc}")
        ratio = gn.cps / dn.cps if dn and gn else None
        ratio_s = f"{ratio:.2f}x" if ratio is not None else "-"
        spread = ""
        if dn and gn:
            paired = [g / d for g, d in zip(gn.rate, dn.rate, strict=True)]
            spread = (
                f"   (per-round pairs: median {statistics.median(paired):.2f}x, "
                f"{min(paired):.2f}-{max(paired):.2f}x)"
            )
        print(
            f"{'':<28} {'gw-dir':<8} {'+' + ms(added50):>9} {'+' + ms(added99):>9} "
            f"{ratio_s:>13}{spread}"
        )
        print()
        if sc.era == "modern" and sc.upstream == "instant":
            checks.append(
                (
                    f"{sc.upstream}: added p50 at c=1 {added50:.3f} ms <= "
                    f"{TARGET_ADDED_P50_RATIO:g}x the direct p50 ({d1.p50:.3f} ms)",
                    added50 <= TARGET_ADDED_P50_RATIO * d1.p50,
                )
            )
            if dn and gn:
                gw_cpu, up_cpu = gn.cpu_us(gn.gw_ticks), dn.cpu_us(dn.up_ticks)
                checks.append(
                    (
                        f"{sc.upstream}: gateway CPU/call at c={conc} {gw_cpu:.0f} µs = "
                        f"{gw_cpu / up_cpu:.1f}x the upstream's ({up_cpu:.0f} µs) "
                        f"<= {TARGET_CPU_RATIO:g}x",
                        gw_cpu <= TARGET_CPU_RATIO * up_cpu,
                    )
                )
        elif sc.era == "modern":
            checks.append(
                (
                    f"{sc.upstream}: added p50 at c=1 {added50:.3f} ms <= {TARGET_ADDED_P50_MS} ms",
                    added50 <= TARGET_ADDED_P50_MS,
                )
            )
        if sc.era == "modern" and ratio is not None:
            want = TARGET_RATIO[sc.upstream]
            checks.append(
                (
                    f"{sc.upstream}: gateway calls/s at c={conc} {ratio:.2f}x of direct "
                    f">= {want:.2f}x",
                    ratio >= want,
                )
            )
    print("Per-call CPU (utime+stime from /proc, summed over all measured phases):")
    for sc in scenarios:
        for c in sc.concurrencies:
            d, g = sc.cell("direct", c), sc.cell("gateway", c)
            print(
                f"  {sc.label:<28} c={c:<3} gateway {g.cpu_us(g.gw_ticks):5.0f} µs | "
                f"upstream {d.cpu_us(d.up_ticks):5.0f} µs direct, {g.cpu_us(g.up_ticks):5.0f} µs "
                f"via gw | client {d.client_cpu / max(1, d.calls) * 1e6:4.0f} µs direct, "
                f"{g.client_cpu / max(1, g.calls) * 1e6:4.0f} µs via gw"
            )
    print()
    print(
        "Peak RSS (VmHWM): "
        + ", ".join(f"{name} {kib / 1024:.1f} MiB" for name, kib in rss.items())
    )
    print()
    print("Targets:")
    for text, ok in checks:
        print(f"  [{'PASS' if ok else 'FAIL'}] {text}")
    return checks


# -- main ----------------------------------------------------------------------------


async def measure(
    settings: Settings, scenarios: list[Scenario], gateway: Child, upstreams: dict[str, Child]
) -> None:
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as http:
        for sc in scenarios:
            up = upstreams[sc.upstream]
            targets = {
                "direct": Target("direct", f"http://127.0.0.1:{up.port}/mcp", sc.era),
                "gateway": Target(
                    "gateway", f"http://127.0.0.1:{gateway.port}/mcp/{sc.upstream}", sc.era
                ),
            }
            if sc.era == "handshake":
                for target in targets.values():
                    await handshake(http, target)
            # Sanity: the right servers answer, and the gateway's guard is on.
            for target in targets.values():
                await call(http, target, target.headers())
            await expect_denied(http, targets["gateway"])
            try:
                await run_scenario(http, sc, targets, settings, gateway.pid, up.pid)
            finally:
                for target in targets.values():
                    await end_session(http, target)


def results_json(
    scenarios: list[Scenario],
    settings: Settings,
    rss: dict[str, int],
    info: dict[str, Any],
    checks: list[tuple[str, bool]],
) -> bytes:
    return orjson.dumps(
        {
            "machine": info,
            "settings": asdict(settings),
            "peak_rss_kib": rss,
            "scenarios": [
                {
                    "label": sc.label,
                    "cells": {
                        k: {
                            "p50_ms": c.p50_ms,
                            "p99_ms": c.p99_ms,
                            "calls_per_s": c.rate,
                            "calls": c.calls,
                            "gateway_cpu_us_per_call": c.cpu_us(c.gw_ticks),
                            "upstream_cpu_us_per_call": c.cpu_us(c.up_ticks),
                        }
                        for k, c in sc.cells.items()
                    },
                }
                for sc in scenarios
            ],
            "checks": [{"target": t, "pass": ok} for t, ok in checks],
        },
        option=orjson.OPT_INDENT_2,
    )


def bench(settings: Settings, logdir: Path, json_out: Path | None) -> int:
    token = secrets.token_hex(4)
    here = str(Path(__file__).resolve())
    wardgate = Path(sys.executable).parent / "wardgate"
    gw_argv = [str(wardgate)] if wardgate.exists() else [sys.executable, "-m", "wardgate.cli"]
    if settings.gateway_uvloop:
        # What-if: the same ``wardgate serve``, with asyncio.run() creating a uvloop loop.
        gw_argv = [sys.executable, "-c", UVLOOP_SHIM]
    children: list[Child] = []
    try:
        p_instant, p_sdk, p_gw = free_port(), free_port(), free_port()
        instant = spawn(
            "instant",
            [sys.executable, here, "--serve-instant", str(p_instant), token],
            p_instant,
            logdir,
        )
        children.append(instant)
        sdk_argv = [sys.executable, "-m", "wardgate.demo.server", "--http", str(p_sdk)]
        sdk = spawn("sdk", sdk_argv, p_sdk, logdir)
        children.append(sdk)
        config = logdir / "gateway.toml"
        config.write_text(
            gateway_toml(p_gw, {"instant": p_instant, "sdk": p_sdk}, settings.log_level)
        )
        gateway = spawn("gateway", [*gw_argv, "serve", "--config", str(config)], p_gw, logdir)
        children.append(gateway)

        info = machine()
        info["load_before"] = loadavg()
        scenarios = [
            Scenario("instant (2026-07-28)", "instant", "modern", (1, settings.concurrency)),
            Scenario("SDK echo (2026-07-28)", "sdk", "modern", (1, settings.concurrency)),
            Scenario("SDK echo (2025-11-25 sess.)", "sdk", "handshake", (1,)),
        ]
        asyncio.run(measure(settings, scenarios, gateway, {"instant": instant, "sdk": sdk}))
        info["load_after"] = loadavg()
        for child in children:
            if child.proc.poll() is not None:
                raise RuntimeError(f"{child.name} died during the run:\n{child.tail()}")
        rss = {c.name: peak_rss_kib(c.pid) for c in (gateway, instant, sdk)}
        checks = report(scenarios, settings, rss, info)
        if json_out is not None:
            json_out.write_bytes(results_json(scenarios, settings, rss, info, checks))
        return 0 if all(ok for _, ok in checks) else 1
    except Exception:
        for child in children:
            print(f"--- {child.name} log tail ---\n{child.tail()}", file=sys.stderr)
        raise
    finally:
        for child in reversed(children):
            stop(child)


@contextlib.contextmanager
def log_directory(keep: bool) -> Iterator[Path]:
    if keep:
        path = Path(tempfile.mkdtemp(prefix="wardgate-bench-"))
        print(f"logs and config in {path}")
        yield path
    else:
        with tempfile.TemporaryDirectory(prefix="wardgate-bench-") as tmp:
            yield Path(tmp)


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve-instant":
        serve_instant(int(sys.argv[2]), sys.argv[3])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="~30 s smoke run")
    parser.add_argument("--rounds", type=int, help="direct/gateway round pairs (default 5)")
    parser.add_argument("--c1-seconds", type=float, help="length of a c=1 phase (default 2)")
    parser.add_argument("--cn-seconds", type=float, help="length of a c=N phase (default 2.5)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="the gateway's log level (default info, as shipped: one access line per call)",
    )
    parser.add_argument(
        "--gateway-uvloop",
        action="store_true",
        help="what-if: run the gateway on uvloop (wardgate serve uses the asyncio loop)",
    )
    parser.add_argument("--json", type=Path, help="also write raw results to this file")
    parser.add_argument("--keep-logs", action="store_true", help="keep the servers' logs")
    args = parser.parse_args()
    quick = args.quick
    settings = Settings(
        rounds=args.rounds or (2 if quick else 5),
        c1_seconds=args.c1_seconds or (0.6 if quick else 2.0),
        cn_seconds=args.cn_seconds or (0.8 if quick else 2.5),
        warmup_seconds=0.2 if quick else 0.4,
        concurrency=args.concurrency,
        log_level=args.log_level,
        gateway_uvloop=args.gateway_uvloop,
    )
    started = time.monotonic()
    with log_directory(args.keep_logs) as logdir:
        code = bench(settings, logdir, args.json)
    print(f"\nfinished in {time.monotonic() - started:.0f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())
