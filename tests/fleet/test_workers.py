"""``wardgate serve --workers N`` on real processes: both workers serve one port,
SIGTERM drains them all with exit 0, and in-memory shared state is refused."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import orjson
import pytest
from listener._gateway import http_exchange, mcp_request

from support.servers import free_port
from wardgate.config.model import GatewayConfig
from wardgate.edge.workers import check_workers
from wardgate.errors import ConfigError
from wardgate.upstream.reaper import proc_table

from ._fleet import procs_sections, run_cli, served, write_config


async def _pid_of_worker_child(port: int) -> int:
    """``pid`` answers the stdio server's pid: each worker has its own stdio child."""
    request = mcp_request("procs", "tools/call", {"name": "pid", "arguments": {}}, "pid")
    status, _, body = await http_exchange(port, request)
    assert status == 200, body
    structured = orjson.loads(body)["result"]["structuredContent"]
    value = structured["result"]
    assert isinstance(value, int)
    return value


def _workers_of(pid: int) -> set[int]:
    return {s.pid for s in proc_table() if s.ppid == pid and s.alive}


async def test_two_workers_both_serve_and_one_sigterm_drains_them_all(
    tmp_path: Path, redis_prefix: str
) -> None:
    port = free_port()
    config = write_config(tmp_path / "gw.toml", port, procs_sections(redis_prefix))
    with served(config, port, "--workers", "2") as gw:
        workers = _workers_of(gw.proc.pid)
        assert len(workers) == 2, gw.logs()
        # Each call on a fresh connection: the kernel spreads them over the workers.
        seen: set[int] = set()
        for batch in range(10):
            pids = await asyncio.gather(*(_pid_of_worker_child(port) for _ in range(16)))
            seen.update(pids)
            if len(seen) == 2 and batch >= 3:
                break
        assert len(seen) == 2, seen
        # Every stdio child belongs to one of the two workers.
        parents = {s.ppid for s in proc_table() if s.pid in seen}
        assert parents == workers
        gw.proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(gw.proc.wait, 20)
        assert code == 0, gw.logs()
        assert not any(s.alive for s in proc_table() if s.pid in workers | seen), gw.logs()
        assert "Traceback" not in gw.logs()


async def test_a_worker_that_dies_is_replaced(tmp_path: Path, redis_prefix: str) -> None:
    port = free_port()
    config = write_config(tmp_path / "gw.toml", port, procs_sections(redis_prefix))
    with served(config, port, "--workers", "2") as gw:
        workers = _workers_of(gw.proc.pid)
        # Past the start-up window a dead worker is a fault to repair, not a loop.
        victim = min(workers)
        deadline = time.monotonic() + 10
        # Wait (bounded) until the victim is past its start-up window.
        while time.monotonic() - _started(victim) < 5.5:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while True:
            now = _workers_of(gw.proc.pid)
            if len(now) == 2 and victim not in now:
                break
            assert time.monotonic() < deadline, gw.logs()
            await asyncio.sleep(0.05)
        await _pid_of_worker_child(port)


def _started(pid: int) -> float:
    """When ``pid`` started, on this process's monotonic clock."""
    ticks = os.sysconf("SC_CLK_TCK")
    start = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]) / ticks
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return time.monotonic() - (uptime - start)


@pytest.mark.parametrize(
    ("sections", "names"),
    [
        (
            {"limits": {"store": "memory"}, "limits.rate": {"requests": 10}},
            "[limits] store",
        ),
    ],
)
async def test_more_than_one_worker_with_memory_state_is_refused(
    tmp_path: Path, sections: dict[str, dict[str, object]], names: str
) -> None:
    port = free_port()
    config = write_config(tmp_path / "gw.toml", port, {**procs_sections(None), **sections})
    proc = run_cli(config, "--workers", "2")
    code = await asyncio.to_thread(proc.wait, 30)
    log = config.with_suffix(".log").read_text()
    assert code == 2, log
    assert names in log and '"redis"' in log, log
    # One worker with the same config serves.
    with served(config, port, "--workers", "1"):
        await _pid_of_worker_child(port)


def test_the_auth_replay_cache_in_memory_is_refused_too() -> None:
    sections = procs_sections(None)
    config = GatewayConfig.model_validate(
        {
            "upstreams": {"procs": sections["upstreams.procs"]},
            "routes": {"procs": sections["routes.procs"]},
            "auth": {
                "resource": "http://127.0.0.1:8787/mcp",
                "issuers": [
                    {"issuer": "https://idp.example", "jwks_uri": "https://idp.example/jwks"}
                ],
            },
        }
    )
    with pytest.raises(ConfigError) as refused:
        check_workers(config, 2)
    assert refused.value.code == "wardgate.config"
    assert "replay_store" in refused.value.detail
    check_workers(config, 1)
    redis = config.model_copy(
        update={"auth": config.auth.model_copy(update={"replay_store": "redis"})}  # type: ignore[union-attr]
    )
    check_workers(redis, 4)


async def test_sigterm_lets_a_call_in_flight_in_a_worker_finish(
    tmp_path: Path, redis_prefix: str
) -> None:
    port = free_port()
    config = write_config(tmp_path / "gw.toml", port, procs_sections(redis_prefix))
    with served(config, port, "--workers", "2") as gw:
        marker = tmp_path / "started"
        slow = mcp_request(
            "procs",
            "tools/call",
            {"name": "slow", "arguments": {"seconds": 1.5, "marker": str(marker)}},
            "slow",
        )
        call = asyncio.ensure_future(http_exchange(port, slow, within=20))
        deadline = time.monotonic() + 10
        while not marker.exists():
            assert time.monotonic() < deadline, gw.logs()
            await asyncio.sleep(0.02)
        gw.proc.send_signal(signal.SIGTERM)
        status, _, body = await asyncio.wait_for(call, 20)
        assert status == 200 and b"slept 1.5" in body, body
        assert await asyncio.to_thread(gw.proc.wait, 20) == 0, gw.logs()
