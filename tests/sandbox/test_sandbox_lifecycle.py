"""Lifecycle of sandboxed stdio servers under bubblewrap: a server that keeps crashing
is restarted with a bounded exponential backoff (calls meanwhile fail at once, never
hang), and ``start`` chooses whether a sandbox is started before it is needed."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from wardgate.errors import UpstreamError
from wardgate.upstream.bwrap import BubblewrapRunner
from wardgate.upstream.profile import SandboxProfile
from wardgate.upstream.restarts import RestartBackoff
from wardgate.upstream.seam import UpstreamSession
from wardgate.upstream.stdio import StdioUpstream

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bwrap not installed")

SERVER = Path(__file__).with_name("per_call_server.py")
PREFIX = Path(sys.prefix)
BASE = Path(os.path.realpath(sys.executable)).parent.parent
PROFILE = SandboxProfile(upstream="life", read_only=(str(PREFIX), str(BASE), str(SERVER)))
ARGV = [str(PREFIX / "bin" / "python"), str(SERVER)]


class CountingRunner(BubblewrapRunner):
    """A real bubblewrap runner that counts the sandboxes it starts."""

    spawned = 0

    async def spawn(
        self, argv: Sequence[str], env: Mapping[str, str], cwd: str | None
    ) -> asyncio.subprocess.Process:
        self.spawned += 1
        return await super().spawn(argv, env, cwd)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def outcome(session: UpstreamSession) -> UpstreamError | None:
    """The error a call fails with (bounded: a hang fails the test), or None."""
    message = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}

    async def run() -> None:
        reply = await session.request(message, {})
        async for _ in reply.events:
            pass

    try:
        await asyncio.wait_for(run(), 60)
    except UpstreamError as exc:
        return exc
    return None


async def test_a_server_that_exits_at_once_is_restarted_with_backoff(tmp_path: Path) -> None:
    runner = CountingRunner(PROFILE, root=tmp_path / "state")
    clock = Clock()
    up = StdioUpstream(
        "life", ARGV, runner, env={"EXIT_AT_ONCE": "1"}, backoff=(1.0, 4.0), clock=clock
    )
    await up.start()
    session = up.shared_session("")
    try:
        assert await outcome(session) is not None  # started, crashed: the call fails
        assert await outcome(session) is not None  # one immediate restart, crashed again
        assert runner.spawned == 2
        for _ in range(5):  # a crash loop: refused at once, no sandbox started
            error = await outcome(session)
            assert error is not None and error.code == "wardgate.upstream"
            assert "keeps crashing" in error.detail
        assert runner.spawned == 2
        waits = []
        for _ in range(4):  # 1 s, 2 s, 4 s, 4 s: doubling, bounded
            wait = 0.0
            while runner.spawned == 2 + len(waits):
                clock.now += 0.5
                wait += 0.5
                assert await outcome(session) is not None
            waits.append(wait)
        assert waits == [1.0, 2.0, 4.0, 4.0]
    finally:
        await up.aclose()
        await runner.aclose()
    assert not any((tmp_path / "state").iterdir())


async def test_a_healthy_run_resets_the_backoff(tmp_path: Path) -> None:
    clock = Clock()
    backoff = RestartBackoff(initial=1.0, maximum=4.0, stable=30.0, clock=clock)
    for _ in range(3):
        backoff.admit("s")
        clock.now += backoff.waiting
    assert backoff.failures == 2
    clock.now += 30.0  # it ran long enough this time
    backoff.admit("s")
    assert backoff.failures == 0 and backoff.waiting == 0


async def handshake(session: UpstreamSession) -> Any:
    params = {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "0"},
    }
    reply = await session.request(
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params}, {}
    )
    final = [e.message async for e in reply.events][-1]
    await session.post({"jsonrpc": "2.0", "method": "notifications/initialized"}, {})
    return final


async def test_eager_start_keeps_a_spare_sandbox_and_lazy_starts_none(tmp_path: Path) -> None:
    lazy_runner = CountingRunner(PROFILE, root=tmp_path / "lazy")
    lazy = StdioUpstream("life", ARGV, lazy_runner)
    await lazy.start()
    assert lazy_runner.spawned == 0 and lazy.spare_pid is None
    await lazy.aclose()
    await lazy_runner.aclose()

    runner = CountingRunner(PROFILE, root=tmp_path / "eager")
    up = StdioUpstream("life", ARGV, runner, start="eager")
    await up.start()
    try:
        spare = up.spare_pid
        assert spare is not None and runner.spawned == 1
        session = await up.open_session()
        final = await asyncio.wait_for(handshake(session), 60)
        assert "result" in final  # the spare took the client's own initialize
        assert session.pid == spare

        async def replaced() -> None:
            while up.spare_pid is None:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(replaced(), 60)
        assert up.spare_pid != spare and runner.spawned == 2
        await session.close()
    finally:
        await up.aclose()
        await runner.aclose()
    assert not any((tmp_path / "eager").iterdir())  # the spare went too


async def test_a_pool_of_a_crashing_server_fails_calls_cleanly_and_backs_off(
    tmp_path: Path,
) -> None:
    from wardgate.config.sandboxing import PerCallSettings

    runner = CountingRunner(PROFILE, root=tmp_path / "state")
    up = StdioUpstream(
        "life",
        ARGV,
        runner,
        env={"EXIT_AT_ONCE": "1"},
        per_call=PerCallSettings(tools=("*",), warm_pool=2),
    )
    await up.start()
    pool = up.warm_pool
    assert pool is not None
    try:
        call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "x"}}
        with pytest.raises(UpstreamError) as caught:
            await asyncio.wait_for(up.shared_session("").request(call, {}), 60)
        assert caught.value.code == "wardgate.upstream"

        async def backing_off() -> None:
            while pool._retry is None:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(backing_off(), 60)
        assert pool.ready == 0 and pool.sandboxes <= pool.settings.warm_pool
    finally:
        await up.aclose()
        await runner.aclose()
    assert not any((tmp_path / "state").iterdir())
