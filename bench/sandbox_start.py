"""What a sandbox costs: launch to the first ``initialize`` response, and the egress
proxy's overhead on a loopback HTTP fetch.

Launch, for a small Python stdio server (raw JSON-RPC, no SDK import, so that the
sandbox's own cost is not lost in the server's start), median of N runs each:

* bare (``insecure-none``, the plain process runner),
* bubblewrap (``BubblewrapRunner``, with its cgroup and secret file),
* gVisor (``GVisorRunner``, an OCI bundle per sandbox), beside ``runsc do true``.

Egress: median latency of a GET of a loopback page, direct vs through the
:class:`~wardgate.net.egress.EgressProxy` (absolute-form request over its unix socket).

Targets (issue 9): bubblewrap adds at most 10 ms over bare; gVisor at most 1.3 x
``runsc do true`` plus the server's own start; the proxy adds at most 1 ms.

Run: ``.venv/bin/python bench/sandbox_start.py [--runs N]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from wardgate.net.egress import EgressProxy, EgressRules
from wardgate.upstream._process import stop_process_group
from wardgate.upstream.bwrap import BubblewrapRunner
from wardgate.upstream.gvisor import GVisorRunner
from wardgate.upstream.profile import SandboxProfile
from wardgate.upstream.sandbox import PlainProcessRunner, Sandbox

BASE = str(Path(os.path.realpath(sys.executable)).parent.parent)  # the interpreter
SERVER = """\
import json, sys
line = sys.stdin.readline()
request = json.loads(line)
result = {"protocolVersion": "2025-06-18", "capabilities": {},
          "serverInfo": {"name": "bench", "version": "0"}}
sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": result}) + "\\n")
sys.stdout.flush()
sys.stdin.read()
"""
INIT = (
    json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "b", "version": "0"},
            },
        }
    ).encode()
    + b"\n"
)


async def _launch(runner: Sandbox, server: Path) -> float:
    start = time.perf_counter()
    proc = await runner.spawn([sys.executable, "-I", "-S", str(server)], {}, None)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(INIT)
    await proc.stdin.drain()
    line = await proc.stdout.readline()
    elapsed = time.perf_counter() - start
    assert b'"result"' in line, line
    await stop_process_group(proc, grace=1.0)
    return elapsed


def _runsc_do_true() -> float:
    start = time.perf_counter()
    subprocess.run(["runsc", "--network=none", "do", "true"], check=True, capture_output=True)
    return time.perf_counter() - start


async def _fetch(connect: object, request: bytes) -> float:
    start = time.perf_counter()
    reader, writer = await connect()  # type: ignore[operator]
    writer.write(request)
    await writer.drain()
    data = await reader.read()
    writer.close()
    assert b"200 OK" in data
    return time.perf_counter() - start


async def _egress(runs: int, root: Path) -> tuple[float, float]:
    async def site(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(site, "127.0.0.2", 0)
    port = server.sockets[0].getsockname()[1]
    proxy = EgressProxy(
        "bench", EgressRules.parse((f"127.0.0.2:{port}",), ("127.0.0.2",)), root / "e.sock"
    )
    await proxy.start()
    direct_req = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    proxy_req = f"GET http://127.0.0.2:{port}/ HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    direct, proxied = [], []
    for _ in range(runs):
        direct.append(await _fetch(lambda: asyncio.open_connection("127.0.0.2", port), direct_req))
        proxied.append(await _fetch(lambda: asyncio.open_unix_connection(proxy.path), proxy_req))
    await proxy.aclose()
    server.close()
    return statistics.median(direct), statistics.median(proxied)


async def main(runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = Path(tmp) / "server.py"
        server.write_text(SERVER)
        base = BASE
        profile = SandboxProfile(read_only=(sys.prefix, base, str(server)))
        runners: dict[str, Sandbox] = {"bare": PlainProcessRunner()}
        if shutil.which("bwrap"):
            runners["bubblewrap"] = BubblewrapRunner(profile, root=Path(tmp) / "s")
        if shutil.which("runsc"):
            runners["gvisor"] = GVisorRunner(profile, root=Path(tmp) / "s")
        logging.disable(logging.WARNING)  # the bare runner's warning, once per launch
        results = {}
        for name, runner in runners.items():
            await _launch(runner, server)  # warm the page cache
            results[name] = statistics.median([await _launch(runner, server) for _ in range(runs)])
        for name, value in results.items():
            extra = (
                f"  (+{(value - results['bare']) * 1000:.1f} ms over bare)"
                if name != "bare"
                else ""
            )
            print(f"launch -> initialize  {name:<11} median {value * 1000:7.1f} ms{extra}")
        if "gvisor" in results:
            do_true = statistics.median([_runsc_do_true() for _ in range(runs)])
            server_own = results["bare"]
            bound = 1.3 * do_true + server_own
            print(
                f"runsc do true        median {do_true * 1000:7.1f} ms; gVisor target "
                f"1.3 x do-true + server ({bound * 1000:.1f} ms): "
                f"{'met' if results['gvisor'] <= bound else 'MISSED'}"
            )
        direct, proxied = await _egress(runs * 10, Path(tmp))
        print(
            f"loopback GET         direct {direct * 1000:.3f} ms, via egress proxy "
            f"{proxied * 1000:.3f} ms (+{(proxied - direct) * 1000:.3f} ms)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    asyncio.run(main(parser.parse_args().runs))
