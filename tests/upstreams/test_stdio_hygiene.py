"""Stopping a stdio server stops everything it started; it inherits nothing but stdio."""

from __future__ import annotations

import json
import os
from pathlib import Path

from isolation.helpers import (
    answer,
    eventually,
    key,
    live_members,
    raw_upstream,
    started,
    text_of,
)


async def test_close_kills_the_whole_process_group() -> None:
    async with started(raw_upstream()) as up:
        session = await up.open_session()
        grandchild = int(text_of(await answer(session, 1, "spawn")))
        leader = session.pid
        assert leader is not None
        assert set(live_members(leader)) == {leader, grandchild}
        await session.close()
        assert live_members(leader) == []
        assert up.processes == 0


async def test_a_crashed_servers_children_are_stopped_before_the_restart() -> None:
    async with started(raw_upstream()) as up:
        alice = up.shared_session(key("alice"))
        grandchild = int(text_of(await answer(alice, 1, "spawn")))
        leader = int(text_of(await answer(alice, 2, "pid")))
        os.kill(leader, 9)  # the server dies; its grandchild would live on
        await eventually(lambda: live_members(leader) == [])
        assert not Path(f"/proc/{grandchild}").exists() or live_members(leader) == []
        assert text_of(await answer(alice, 3, "echo", text="back")) == "back"


async def test_aclose_leaves_no_process_behind() -> None:
    leaders = []
    async with started(raw_upstream()) as up:
        for name in ("alice", "bob"):
            view = up.shared_session(key(name, "principal"))
            await answer(view, 1, "spawn")
            leaders.append(int(text_of(await answer(view, 2, "pid"))))
        session = await up.open_session()
        await answer(session, 1, "spawn")
        leaders.append(session.pid)
    assert all(live_members(leader) == [] for leader in leaders)


async def test_children_inherit_no_descriptor_but_stdio() -> None:
    read_end, write_end = os.pipe()
    os.set_inheritable(write_end, True)  # even one marked inheritable stays behind
    try:
        async with started(raw_upstream()) as up:
            fds = json.loads(text_of(await answer(up.shared_session(key("a")), 1, "fds")))
    finally:
        os.close(read_end)
        os.close(write_end)
    # 0-2 are the pipes; one more is the directory the server lists /proc/self/fd with.
    assert fds[:3] == [0, 1, 2] and len(fds) <= 4
    assert write_end not in fds or write_end == fds[-1] == 3
