"""Failure of the shared store: a redis-server of the test's own, stopped mid-test and
restarted. By default limited calls are denied (fail closed) with a clear error and a
``limits.store`` alert; in ``local`` mode this replica counts in memory meanwhile. Both
recover by themselves when Redis returns."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from limits.conftest import call_tool, gateway_config
from support.servers import free_port, gateway_events, run_gateway, wait_port
from wardgate.config.limits import LimitsConfig
from wardgate.errors import ConfigError
from wardgate.limits import build_store
from wardgate.limits.limit_events import LimitsStoreChanged
from wardgate.state import StateStoreUnavailable

REDIS_SERVER = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server not installed")


class OwnRedis:
    def __init__(self, port: int, workdir: Path, *extra: str) -> None:
        self.port = port
        self.workdir = workdir
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert REDIS_SERVER is not None
        self.proc = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.port, 10, self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(free_port(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _limits(port: int, mode: str) -> dict[str, object]:
    return {
        "store": "redis",
        "redis": {"url": f"redis://127.0.0.1:{port}/0", "key_prefix": "wg-failure-test:"},
        "on_store_failure": mode,
        "store_retry_seconds": 0.05,
        "rate": {"requests": 1, "per_seconds": 3600, "burst": 3},
    }


async def _until(base: str, status_wanted: int) -> dict[str, object]:
    for _ in range(200):
        status, _, answer = await call_tool(base, "echo")
        if status == status_wanted:
            return dict(answer)
        await asyncio.sleep(0.05)
    pytest.fail(f"never answered {status_wanted}")


async def test_fail_closed_then_recover(own_redis: OwnRedis) -> None:
    async with run_gateway(gateway_config(_limits(own_redis.port, "deny"))) as (base, gw):
        status, _, answer = await call_tool(base, "echo")
        assert status == 200 and "result" in answer
        own_redis.stop()
        status, _, answer = await call_tool(base, "echo")
        assert status == 503 and answer["error"]["data"]["code"] == "wardgate.state_unavailable"
        # While it is down, every limited call is refused, none reaches the upstream.
        for _ in range(5):
            status, _, _ = await call_tool(base, "echo")
            assert status == 503
        states = [e.state for e in gateway_events(gw).of(LimitsStoreChanged)]
        assert states == ["down"]
        own_redis.start()  # an empty Redis: the bucket starts full again
        answer = await _until(base, 200)
        assert "result" in answer
        states = [e.state for e in gateway_events(gw).of(LimitsStoreChanged)]
        assert states == ["down", "up"]
        # The limit is enforced again, on the shared store: the burst of 3, then refused.
        statuses = [(await call_tool(base, "echo"))[0] for _ in range(3)]
        assert statuses == [200, 200, 429]


async def test_degrade_to_local_limits_then_recover(own_redis: OwnRedis) -> None:
    async with run_gateway(gateway_config(_limits(own_redis.port, "local"))) as (base, gw):
        own_redis.stop()
        # Local memory now counts: the burst of 3, then refused, not unlimited.
        statuses = [(await call_tool(base, "echo"))[0] for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        assert [e.mode for e in gateway_events(gw).of(LimitsStoreChanged)] == ["local"]
        own_redis.start()
        await _until(base, 200)  # the shared (fresh) bucket answers again
        assert [e.state for e in gateway_events(gw).of(LimitsStoreChanged)] == ["down", "up"]


async def test_redis_auth_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = OwnRedis(free_port(), tmp_path, "--requirepass", "s3cret-pw")
    server.start()
    try:
        limits = LimitsConfig.model_validate(
            {
                "store": "redis",
                "redis": {"url": f"redis://127.0.0.1:{server.port}/0", "password_env": "WG_PW"},
            }
        )
        monkeypatch.setenv("WG_PW", "s3cret-pw")
        store = build_store(limits)
        await store.start()
        assert (await store.take_token("k", 1, 1)).allowed
        await store.aclose()
        monkeypatch.setenv("WG_PW", "wrong")
        wrong = build_store(limits)
        with pytest.raises(StateStoreUnavailable):
            await wrong.start()
        await wrong.aclose()
        monkeypatch.delenv("WG_PW")
        with pytest.raises(ConfigError):
            build_store(limits)
    finally:
        server.stop()
