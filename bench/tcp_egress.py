"""What raw TCP egress (``egress_tcp``) costs: Redis PINGs from inside a bubblewrap
sandbox through the forwarder and the egress proxy, against the same client on the host
connecting directly, in the same run.

Two figures, medians of N each: the round trip of one PING on an open connection, and
a new connection (connect, CONNECT through the proxy, one PING, close). Reported as the
sandboxed median, the direct median, the ratio and the difference.

Needs Redis on 127.0.0.1:6379 (listed as ``localhost:6379``, with the operator
exception 127.0.0.1).

Run: ``.venv/bin/python bench/tcp_egress.py [--runs N]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from wardgate.net.egress import EgressProxy, EgressRules
from wardgate.upstream.bwrap import BubblewrapRunner
from wardgate.upstream.profile import SandboxProfile
from wardgate.upstream.tcp_egress import plan_tcp_forwards

CLIENT = r"""
import json, socket, statistics, sys, time
runs = int(sys.argv[1])
def ping(s):
    s.sendall(b"PING\r\n")
    assert s.recv(16) == b"+PONG\r\n"
s = socket.create_connection(("localhost", 6379))
ping(s)
rtt = []
for _ in range(runs):
    t = time.perf_counter(); ping(s); rtt.append(time.perf_counter() - t)
s.close()
conn = []
for _ in range(runs):
    t = time.perf_counter()
    with socket.create_connection(("localhost", 6379)) as c:
        ping(c)
    conn.append(time.perf_counter() - t)
print(json.dumps({"rtt": statistics.median(rtt), "conn": statistics.median(conn)}))
"""


BASE = str(Path(os.path.realpath(sys.executable)).parent.parent)


async def _sandboxed(runs: int) -> dict[str, float]:
    pairs = ("localhost:6379",)
    with tempfile.TemporaryDirectory() as tmp:
        proxy = EgressProxy(
            "bench", EgressRules.parse(pairs, ("127.0.0.1",)), Path(tmp) / "e" / "egress.sock"
        )
        runner = BubblewrapRunner(
            SandboxProfile(
                upstream="bench",
                read_only=(sys.prefix, BASE),
                egress_socket=proxy.path,
                tcp_forwards=plan_tcp_forwards(pairs),
            ),
            root=Path(tmp) / "state",
            egress=proxy,
        )
        proc = await runner.spawn([sys.executable, "-c", CLIENT, str(runs)], {}, None)
        out, err = await proc.communicate()
        await runner.aclose()
    if proc.returncode != 0:
        raise SystemExit(f"sandboxed client failed: {err.decode()[-500:]}")
    result: dict[str, float] = json.loads(out)
    return result


def _direct(runs: int) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", CLIENT, str(runs)], capture_output=True, check=True
    )
    result: dict[str, float] = json.loads(done.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=2000)
    runs = parser.parse_args().runs
    logging.disable(logging.WARNING)
    direct = _direct(runs)
    sandboxed = asyncio.run(_sandboxed(runs))
    print(f"raw TCP egress, Redis PING, median of {runs} (bubblewrap, forwarder + proxy)")
    for key, label in (("rtt", "PING on an open connection"), ("conn", "new connection + PING")):
        d, s = direct[key] * 1e3, sandboxed[key] * 1e3
        print(
            f"  {label:28s} direct {d:7.3f} ms  sandboxed {s:7.3f} ms"
            f"  ratio {s / d:5.2f}  +{s - d:6.3f} ms"
        )


if __name__ == "__main__":
    main()
