"""What a sandbox costs: launch to the first ``initialize`` response, and the egress
proxy's overhead on a loopback HTTP fetch.

Launch, for a small Python stdio server (raw JSON-RPC, no SDK import, so that the
sandbox's own cost is not lost in the server's start), median of N runs each, the
variants taken in turn within each round so that they share the machine's noise:

* bare (``insecure-none``, the plain process runner),
* bubblewrap (``BubblewrapRunner``, with its cgroup), from a launcher made ahead
  (``upstream/_prelaunch.py``) and, for comparison, started directly,
* gVisor (``GVisorRunner``, an OCI bundle per sandbox), the same two ways,
* ``runsc --network=none do true`` and the same server under ``runsc do`` (gVisor's
  own cost for this server, without Wardgate's runner).

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
from typing import Any

from wardgate.net.egress import EgressProxy, EgressRules
from wardgate.upstream._box import RunnerBase
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


class _RunscDo:
    """The server under plain ``runsc --network=none do`` (no bundle, no limits)."""

    name = "runsc-do"

    async def spawn(
        self, argv: list[str], env: dict[str, str], cwd: str | None
    ) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            "runsc",
            "--network=none",
            "do",
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            start_new_session=True,
        )


async def _rounds(
    runners: dict[str, Sandbox], server: Path, runs: int, settle: float, between: Any = None
) -> dict[str, float]:
    """Median launch time of each runner, taken in turn within each round."""
    times: dict[str, list[float]] = {name: [] for name in runners}
    for runner in runners.values():
        await _launch(runner, server)  # warm the page cache; make the first launcher
    for _ in range(runs):
        for name, runner in runners.items():
            await asyncio.sleep(settle)  # the last one's clean-up, off the next's clock
            times[name].append(await _launch(runner, server))
        if between is not None:
            between()
    return {name: statistics.median(values) for name, values in times.items()}


def _report(results: dict[str, float]) -> None:
    for name, value in results.items():
        extra = (
            f"  (+{(value - results['bare']) * 1000:.1f} ms over bare)" if name != "bare" else ""
        )
        print(f"launch -> initialize  {name:<13} median {value * 1000:7.1f} ms{extra}")


async def main(runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = Path(tmp) / "server.py"
        server.write_text(SERVER)
        profile = SandboxProfile(read_only=(sys.prefix, BASE, str(server)))
        root = Path(tmp) / "s"
        logging.disable(logging.WARNING)  # the bare runner's warning, once per launch
        closing: list[RunnerBase] = []
        if shutil.which("bwrap"):
            # bubblewrap beside bare only: gVisor's heavy start and teardown would
            # blur a difference of a few milliseconds.
            fast, slow = (
                BubblewrapRunner(profile, root=root),
                BubblewrapRunner(profile, root=root, prelaunch=False),
            )
            closing += [fast, slow]
            group: dict[str, Sandbox] = {
                "bare": PlainProcessRunner(),
                "bubblewrap": fast,
                "bwrap-direct": slow,
            }
            results = await _rounds(group, server, runs, 0.1)
            _report(results)
            added = results["bubblewrap"] - results["bare"]
            print(f"bubblewrap target +10 ms over bare: {'met' if added <= 0.010 else 'MISSED'}")
        if shutil.which("runsc"):
            fast_g, direct_g = (
                GVisorRunner(profile, root=root),
                GVisorRunner(profile, root=root, prelaunch=False),
            )
            closing += [fast_g, direct_g]
            do_true: list[float] = []
            group = {
                "bare": PlainProcessRunner(),
                "gvisor": fast_g,
                "gvisor-direct": direct_g,
                "runsc-do": _RunscDo(),  # type: ignore[dict-item]
            }
            results = await _rounds(
                group, server, runs, 0.2, lambda: do_true.append(_runsc_do_true())
            )
            _report(results)
            true = statistics.median(do_true)
            bound = 1.3 * true + results["bare"]
            print(
                f"runsc do true        median {true * 1000:7.1f} ms; gVisor target "
                f"1.3 x do-true + server run bare ({bound * 1000:.1f} ms): "
                f"{'met' if results['gvisor'] <= bound else 'MISSED'}"
            )
            # The server's own start under gVisor (``runsc do SERVER`` - ``runsc do true``):
            # what gVisor itself costs this server, whoever launches it.
            inside = results["runsc-do"] - true
            fair = 1.3 * true + inside
            print(
                f"server start inside gVisor {inside * 1000:.1f} ms; 1.3 x do-true + that "
                f"({fair * 1000:.1f} ms): {'met' if results['gvisor'] <= fair else 'MISSED'}"
            )
        for runner in closing:
            await runner.aclose()
        direct, proxied = await _egress(runs * 10, Path(tmp))
        print(
            f"loopback GET         direct {direct * 1000:.3f} ms, via egress proxy "
            f"{proxied * 1000:.3f} ms (+{(proxied - direct) * 1000:.3f} ms)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    asyncio.run(main(parser.parse_args().runs))
