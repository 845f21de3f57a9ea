"""A stdio server process is shared only within an isolation group, and an upstream
never runs more than ``max_processes`` processes, whoever asks."""

from __future__ import annotations

import pytest

from wardgate.errors import UpstreamBusy
from wardgate.upstream.stdio import StdioUpstream

from .helpers import answer, call, eventually, key, raw_upstream, rest, started, text_of


async def _pid(upstream: StdioUpstream, caller_key: str) -> int:
    return int(text_of(await answer(upstream.shared_session(caller_key), 1, "pid")))


async def test_tenants_never_share_a_process_by_default() -> None:
    async with started(raw_upstream()) as up:
        a1 = await _pid(up, key("alice", "tenant", tenant="t1"))
        b1 = await _pid(up, key("bob", "tenant", tenant="t1"))
        c2 = await _pid(up, key("carol", "tenant", tenant="t2"))
        solo = await _pid(up, key("dave", "tenant"))  # no tenant: a process of its own
        assert a1 == b1
        assert len({a1, c2, solo}) == 3


async def test_principal_isolation_gives_each_principal_its_process() -> None:
    async with started(raw_upstream()) as up:
        alice = await _pid(up, key("alice", "principal", tenant="t1"))
        bob = await _pid(up, key("bob", "principal", tenant="t1"))
        assert alice != bob
        assert alice == await _pid(up, key("alice", "principal", tenant="t1"))


async def test_shared_isolation_is_one_process_for_everyone() -> None:
    async with started(raw_upstream()) as up:
        assert await _pid(up, key("alice", tenant="t1")) == await _pid(up, key("bob", tenant="t2"))


async def test_over_the_cap_the_least_recently_used_idle_process_is_stopped() -> None:
    async with started(raw_upstream(max_processes=2)) as up:
        first = await _pid(up, key("t1-user", "tenant", tenant="t1"))
        await _pid(up, key("t2-user", "tenant", tenant="t2"))
        await _pid(up, key("t1-user", "tenant", tenant="t1"))  # t1 is now the most recent
        await _pid(up, key("t3-user", "tenant", tenant="t3"))  # t2's idle process goes
        assert up.processes == 2
        assert first == await _pid(up, key("t1-user", "tenant", tenant="t1"))


async def test_over_the_cap_with_every_process_busy_the_call_is_refused() -> None:
    async with started(raw_upstream(max_processes=2)) as up:
        t1 = up.shared_session(key("a", "tenant", tenant="t1"))
        t2 = up.shared_session(key("b", "tenant", tenant="t2"))
        held = [await call(t1, 1, "wait", tag="x"), await call(t2, 1, "wait", tag="y")]
        for tenant in range(3, 13):  # a flood of new tenants spawns nothing
            with pytest.raises(UpstreamBusy):
                up.shared_session(key("m", "tenant", tenant=f"t{tenant}"))
        assert up.processes == 2
        # The callers already served keep working.
        assert text_of(await answer(t1, 2, "echo", text="still")) == "still"
        await answer(t2, 2, "release", tag="y")
        await answer(t1, 3, "release", tag="x")
        assert [text_of(m) for r in held for m in await rest(r)] == ["released x", "released y"]


async def test_session_flood_stops_at_the_cap_and_the_open_session_keeps_working() -> None:
    async with started(raw_upstream(max_processes=3)) as up:
        legit = await up.open_session()
        init = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {}},
        }
        await rest(await legit.request(init, {}))
        flood = [await up.open_session() for _ in range(2)]
        refused = 0
        for _ in range(20):
            try:
                await up.open_session()
            except UpstreamBusy:
                refused += 1
        assert refused == 20 and up.processes == 3
        assert text_of(await answer(legit, 1, "echo", text="fine")) == "fine"
        for session in flood:
            await session.close()
        assert up.processes == 1
        another = await up.open_session()  # room again once the flood's sessions end
        await another.close()


async def test_idle_processes_are_reaped_and_restarted_on_demand() -> None:
    now = [0.0]
    async with started(raw_upstream(idle_seconds=60, clock=lambda: now[0])) as up:
        alice = key("alice", "tenant", tenant="t1")
        before = await _pid(up, alice)
        session = up._pool[key("alice", "tenant", tenant="t1").split("\n")[0]]
        now[0] = 59.0
        assert up.reap_idle() == 0
        now[0] = 61.0
        assert up.reap_idle() == 1
        assert up.processes == 0
        await eventually(lambda: session._proc is not None and session._proc.returncode is not None)
        assert before != await _pid(up, alice)


async def test_the_reaper_runs_on_a_timer() -> None:
    async with started(raw_upstream(idle_seconds=0.2)) as up:
        await _pid(up, key("alice"))
        assert up.processes == 1
        await eventually(lambda: up.processes == 0)


async def test_a_busy_process_is_never_reaped() -> None:
    now = [0.0]
    async with started(raw_upstream(idle_seconds=1, clock=lambda: now[0])) as up:
        alice = up.shared_session(key("alice"))
        held = await call(alice, 1, "wait", tag="x")
        now[0] = 3600.0
        assert up.reap_idle() == 0 and up.processes == 1
        await answer(alice, 2, "release", tag="x")
        assert text_of((await rest(held))[0]) == "released x"
