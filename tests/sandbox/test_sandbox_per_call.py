"""Per-call sandboxes from a warm pool, under each runner that works here: every covered
``tools/call`` runs in a sandbox of its own that no other call ever sees; the pool
refills, replaces a member that dies, holds its cap while a legitimate call works, and
leaves nothing behind."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from wardgate.config.sandboxing import PerCallSettings
from wardgate.errors import UpstreamBusy
from wardgate.upstream.bwrap import BubblewrapRunner
from wardgate.upstream.gvisor import GVisorRunner
from wardgate.upstream.profile import SandboxProfile
from wardgate.upstream.runners import gvisor_works
from wardgate.upstream.seam import Reply, UpstreamSession
from wardgate.upstream.stdio import StdioUpstream
from wardgate.upstream.warm_pool import WarmPool

SERVER = Path(__file__).with_name("per_call_server.py")
PREFIX = Path(sys.prefix)
BASE = Path(os.path.realpath(sys.executable)).parent.parent
MIB = 1024 * 1024
PROFILE = SandboxProfile(
    upstream="percall",
    read_only=(str(PREFIX), str(BASE), str(SERVER)),
    scratch_bytes=8 * MIB,
    memory_bytes=512 * MIB,
    pids=64,
)
RUNNERS = [
    pytest.param(
        "bubblewrap",
        marks=pytest.mark.skipif(shutil.which("bwrap") is None, reason="bwrap not installed"),
    ),
    pytest.param(
        "gvisor", marks=pytest.mark.skipif(not gvisor_works(), reason="runsc does not work here")
    ),
]
_ids = iter(range(1, 1_000_000))


async def within(coro: Any, seconds: float = 60) -> Any:
    """A bounded wait: a hang fails the test instead of holding it."""
    return await asyncio.wait_for(coro, seconds)


async def until(predicate: Any, seconds: float = 60) -> None:
    """Wait, bounded, for a condition no event announces (processes dying)."""

    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.02)

    await within(poll(), seconds)


async def send(session: UpstreamSession, tool: str, **arguments: Any) -> Reply:
    message = {
        "jsonrpc": "2.0",
        "id": next(_ids),
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments},
    }
    return await session.request(message, {})


async def answer(reply: Reply) -> Any:
    final = None
    async for event in reply.events:
        if event.is_response:
            final = event.message
    await reply.aclose()
    assert final is not None and "result" in final, final
    text = final["result"]["content"][0]["text"]
    return json.loads(text) if text.startswith("{") else text


async def handshake(session: UpstreamSession) -> None:
    """A client's own handshake with its dedicated session."""
    params = {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "0"},
    }
    init = {"jsonrpc": "2.0", "id": next(_ids), "method": "initialize", "params": params}
    reply = await session.request(init, {})
    async for _ in reply.events:
        pass
    await session.post({"jsonrpc": "2.0", "method": "notifications/initialized"}, {})


async def call(session: UpstreamSession, tool: str, **arguments: Any) -> Any:
    return await within(answer(await send(session, tool, **arguments)))


def server_processes(root: Path) -> list[int]:
    """Host processes running the test server (bubblewrap), or a sandbox whose state is
    under ``root`` (gVisor's runsc, sandbox and gofer)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        mine = str(SERVER).encode() in cmdline or str(root).encode() in cmdline
        if mine and state not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def pool_of(upstream: StdioUpstream) -> WarmPool:
    assert upstream.warm_pool is not None
    return upstream.warm_pool


async def filled(pool: WarmPool) -> None:
    async def wait() -> None:
        while pool.ready < pool.settings.warm_pool:
            await pool.changed()

    await within(wait())


@pytest.fixture(params=RUNNERS)
def runner_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make_runner(kind: str, root: Path) -> BubblewrapRunner | GVisorRunner:
    cls = BubblewrapRunner if kind == "bubblewrap" else GVisorRunner
    return cls(PROFILE, root=root)


@pytest.fixture
async def upstream(runner_kind: str, tmp_path: Path) -> AsyncIterator[StdioUpstream]:
    runner = make_runner(runner_kind, tmp_path / "state")
    up = StdioUpstream(
        "percall",
        [str(PREFIX / "bin" / "python"), str(SERVER)],
        runner,
        per_call=PerCallSettings(tools=("whoami",), warm_pool=2, max_concurrent=2),
    )
    await up.start()
    try:
        yield up
    finally:
        await within(up.aclose())
        await within(runner.aclose())
    assert server_processes(tmp_path) == []  # nothing runs: no member, no call, no process
    assert not any((tmp_path / "state").iterdir())  # no state directory, no secret


async def test_each_call_gets_a_fresh_sandbox_that_sees_nothing_of_the_last(
    upstream: StdioUpstream,
) -> None:
    session = upstream.shared_session("")
    first = await call(session, "whoami", note="secret of caller one")
    second = await call(session, "whoami", note="caller two")
    assert first["boot"] != second["boot"]
    # The first call's mark stayed in its own (killed) sandbox.
    assert not [name for name in second["seen"] if name.startswith("mark-")]
    # A dedicated (handshake-era) session's covered calls go the same way.
    dedicated = await upstream.open_session()
    third = await call(dedicated, "whoami")
    assert third["boot"] not in (first["boot"], second["boot"])
    assert dedicated.pid is None  # its own process was never needed for the call
    await dedicated.close()


async def test_uncovered_calls_use_the_ordinary_process(tmp_path: Path, runner_kind: str) -> None:
    runner = make_runner(runner_kind, tmp_path / "state")
    up = StdioUpstream(
        "percall",
        [str(PREFIX / "bin" / "python"), str(SERVER)],
        runner,
        per_call=PerCallSettings(tools=("burn",), warm_pool=0),
    )
    await up.start()
    try:
        session = await up.open_session()
        await within(handshake(session))
        one, two = await call(session, "whoami"), await call(session, "whoami")
        assert one["boot"] == two["boot"]  # the session's own process, as without per_call
        assert f"mark-{one['boot']}" in two["seen"]
        burnt = await call(session, "burn", seconds=0.01)  # covered: in a sandbox of its own
        assert burnt["wall"] >= 0.01
        assert pool_of(up).ready == 0  # warm_pool = 0: started for the call, then killed
        await session.close()
    finally:
        await within(up.aclose())
        await within(runner.aclose())


async def test_the_pool_is_used_and_refills(upstream: StdioUpstream) -> None:
    pool = pool_of(upstream)
    assert pool.ready == 0  # the lazy start: nothing before the first call
    await call(upstream.shared_session(""), "whoami")  # started for it; the pool fills
    await filled(pool)
    before = set(pool.pids)
    assert len(before) == 2
    await call(upstream.shared_session(""), "whoami")
    await filled(pool)
    after = set(pool.pids)
    assert len(after) == 2 and after != before
    assert len(after & before) == 1  # one member was used (and killed), one replaced it
    used = (before - after).pop()
    await until(lambda: not Path(f"/proc/{used}").exists() or _zombie(used))


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


async def test_a_member_killed_while_pooled_is_replaced(upstream: StdioUpstream) -> None:
    pool = pool_of(upstream)
    await call(upstream.shared_session(""), "whoami")  # the first call fills the pool
    await filled(pool)
    victim = pool.pids[0]
    os.killpg(victim, signal.SIGKILL)

    async def replaced() -> None:
        while victim in pool.pids or pool.ready < 2:
            await pool.changed()

    await within(replaced())
    assert (await call(upstream.shared_session(""), "whoami"))["boot"]


async def test_the_cap_holds_while_a_legitimate_call_succeeds(
    runner_kind: str, tmp_path: Path
) -> None:
    runner = make_runner(runner_kind, tmp_path / "state")
    up = StdioUpstream(
        "percall",
        [str(PREFIX / "bin" / "python"), str(SERVER)],
        runner,
        per_call=PerCallSettings(tools=("*",), warm_pool=1, max_concurrent=1, wait_seconds=0.2),
    )
    await up.start()
    pool = pool_of(up)
    try:
        session = up.shared_session("")
        held = await within(send(session, "whoami"))  # its sandbox lives until read
        for _ in range(5):  # a flood over the cap is refused, nothing more starts
            with pytest.raises(UpstreamBusy):
                await within(send(session, "whoami"))
        assert len(pool.leases) == 1
        assert pool.sandboxes <= 1 + pool.settings.warm_pool
        assert (await within(answer(held)))["boot"]  # the legitimate call is answered
        await until(lambda: not pool.leases)
        assert (await call(session, "whoami"))["boot"]  # and the slot is free again
    finally:
        await within(up.aclose())
        await within(runner.aclose())
    assert server_processes(tmp_path) == []


async def test_shutdown_mid_call_and_with_a_full_pool_leaves_nothing(
    runner_kind: str, tmp_path: Path
) -> None:
    runner = make_runner(runner_kind, tmp_path / "state")
    up = StdioUpstream(
        "percall",
        [str(PREFIX / "bin" / "python"), str(SERVER)],
        runner,
        start="eager",
        per_call=PerCallSettings(tools=("burn",), warm_pool=2),
    )
    await up.start()  # eager: the pool is full as start() returns
    try:
        pool = pool_of(up)
        assert pool.ready == 2
        pending = await within(send(up.shared_session(""), "burn", seconds=30))
        assert server_processes(tmp_path)
    finally:
        await within(up.aclose())
        await within(runner.aclose())
    assert server_processes(tmp_path) == []
    assert not any((tmp_path / "state").iterdir())
    with pytest.raises(Exception):  # noqa: B017 - the call in flight fails, whatever the error
        await within(answer(pending))


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bwrap not installed")
async def test_per_call_from_the_config_through_the_gateway_with_the_sdk_client() -> None:
    from mcp import Client

    from support.servers import run_gateway

    paths = [sys.prefix, str(BASE), str(SERVER.parent)]
    config = {
        "sandbox": {"allowed_host_paths": paths},
        "upstreams": {
            "runner": {
                "transport": "stdio",
                "command": [str(PREFIX / "bin" / "python"), str(SERVER)],
                "sandbox": "bubblewrap",
                "read_only_paths": paths,
                "sandbox_limits": {"cpu": 0.5},
                "start": "eager",
                "per_call": {"tools": ["whoami"], "warm_pool": 1, "max_concurrent": 2},
            }
        },
        "routes": {"runner": {"upstreams": ["runner"]}},
    }
    async with run_gateway(config) as (url, gateway):
        upstream = gateway.upstreams["runner"]
        assert isinstance(upstream, StdioUpstream)
        assert pool_of(upstream).ready == 1  # eager: filled at start-up
        async with Client(f"{url}/mcp/runner", mode="legacy") as client:
            tools = {t.name for t in (await client.list_tools()).tools}
            assert {"whoami", "burn"} <= tools
            one = json.loads((await client.call_tool("whoami", {})).content[0].text)  # type: ignore[union-attr]
            two = json.loads((await client.call_tool("whoami", {})).content[0].text)  # type: ignore[union-attr]
            assert one["boot"] != two["boot"]
            assert not [n for n in two["seen"] if n.startswith("mark-")]


async def test_a_replacement_waits_for_the_call_to_end_or_a_moment_at_most(
    upstream: StdioUpstream,
) -> None:
    """A sandbox starting beside a call would take the CPU its answer needs: the taken
    member is replaced when the call is answered, or after ``refill_delay`` at most."""
    pool = pool_of(upstream)
    await call(upstream.shared_session(""), "whoami")
    await until(lambda: not pool.leases)  # that call's sandbox is gone
    await filled(pool)
    pool.refill_delay = 600.0  # only the call's end starts the replacement
    held = await within(send(upstream.shared_session(""), "whoami"))
    assert len(pool.leases) == 1 and pool.ready == 1
    await asyncio.sleep(0.3)
    assert pool.sandboxes == 2  # one waiting, one in the call: nothing starting
    assert (await within(answer(held)))["boot"]
    await filled(pool)  # the answer ended the lease, which started the replacement
    pool.refill_delay = 0.05  # a call that lasts: the replacement starts anyway
    slow = await within(send(upstream.shared_session(""), "whoami"))  # held: unread
    await filled(pool)
    assert len(pool.leases) == 1  # the call is still in progress
    assert (await within(answer(slow)))["boot"]
