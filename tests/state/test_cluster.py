"""The Redis store on a three-node Redis Cluster started here from the ``redis-server``
binary: every decision's keys share a hash tag, so no script is refused as CROSSSLOT."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from support.servers import wait_port
from wardgate.state import RedisOptions, RedisStateStore

SERVER, CLI = shutil.which("redis-server"), shutil.which("redis-cli")
pytestmark = pytest.mark.skipif(SERVER is None or CLI is None, reason="redis binaries missing")


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free and valid too."""
    for _ in range(200):
        port = random.randint(20_000, 40_000)  # noqa: S311 - a port, not a secret
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10_000))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[int]]:
    assert SERVER is not None and CLI is not None
    ports = [_cluster_port() for _ in range(3)]
    procs = []
    try:
        for port in ports:
            work: Path = tmp_path_factory.mktemp(f"node{port}")
            procs.append(
                subprocess.Popen(
                    [
                        SERVER,
                        "--port",
                        str(port),
                        "--bind",
                        "127.0.0.1",
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        str(work / "nodes.conf"),
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--dir",
                        str(work),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for port, proc in zip(ports, procs, strict=True):
            wait_port(port, 10, proc)
        subprocess.run(
            [
                CLI,
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        # The nodes agree through their gossip bus: a bounded wait, polled, for every node
        # to report the cluster ok (a loaded machine needs seconds).
        deadline = time.monotonic() + 60
        pending = list(ports)
        while pending:
            info = subprocess.run(
                [CLI, "-p", str(pending[0]), "cluster", "info"], capture_output=True, text=True
            ).stdout
            if "cluster_state:ok" in info:
                pending.pop(0)
                continue
            if time.monotonic() > deadline:
                pytest.fail(f"cluster never became ok on port {pending[0]}")
            time.sleep(0.1)
        yield ports
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)


@pytest.fixture
async def store(cluster: list[int]) -> AsyncIterator[RedisStateStore]:
    s = RedisStateStore(
        f"redis://127.0.0.1:{cluster[0]}/0",
        key_prefix="wg-cluster:",
        options=RedisOptions(cluster=True),
    )
    await s.start()
    yield s
    await s.aclose()


async def test_every_decision_runs_on_a_cluster(store: RedisStateStore) -> None:
    # Many keys, so that they land on every node.
    for i in range(30):
        assert (await store.take_token(f"rl:s=user{i}", 0.01, 2)).allowed
    assert (await store.take_token("rl:s=user0", 0.01, 2)).allowed
    assert not (await store.take_token("rl:s=user0", 0.01, 2)).allowed
    for i in range(10):
        # Three counters of one decision: one slot thanks to the tag.
        assert (
            await store.counters_reserve(f"budget:t=t{i}", ["a", "b", "c"], 5, [9, 9, 9], 60) == -1
        )
        assert (
            await store.counters_reserve(f"budget:t=t{i}", ["a", "b", "c"], 5, [9, 9, 9], 60) == 0
        )
    assert await store.slot_acquire("cc:x", "h1", 1, 60)
    assert not await store.slot_acquire("cc:x", "h2", 1, 60)
    assert await store.window_add("bk:x:window:0", {"n": 1, "e": 0}, 60) == {"n": 1, "e": 0}
    await store.doc_put("bk:x:state", {"state": "open"}, None)
    assert await store.doc_get("bk:x:state") == {"state": "open"}
    assert await store.add_once("jti-1", 30) and not await store.add_once("jti-1", 30)
