"""Secrets as files: readable by their own sandbox only, gone when it exits however it
exits, and a dead gateway's leftovers swept at start-up."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest

from support.stdio_driver import StdioDriver
from wardgate.upstream._process import exited, stop_process_group
from wardgate.upstream.bwrap import BubblewrapRunner
from wardgate.upstream.profile import SandboxProfile

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bwrap not installed")

SERVER = Path(__file__).with_name("escape_server.py")
BASE = str(Path(os.path.realpath(sys.executable)).parent.parent)


def _runner(root: Path, name: str, secret: bytes) -> BubblewrapRunner:
    profile = SandboxProfile(
        upstream=name,
        read_only=(sys.prefix, BASE, str(SERVER)),
        secrets={"API_TOKEN": secret},
    )
    return BubblewrapRunner(profile, root=root)


async def _start(runner: BubblewrapRunner) -> StdioDriver:
    proc = await runner.spawn([f"{sys.prefix}/bin/python", str(SERVER)], {}, None)
    driver = StdioDriver(proc)
    await driver.initialize()
    return driver


async def _gone(root: Path) -> None:
    # The runner removes the state once the sandbox's process has exited: bounded wait.
    # (The launcher made ahead for the next sandbox holds no secret: see _prelaunch.py.)
    async with asyncio.timeout(10):
        while any(root.rglob("API_TOKEN")):  # no event for a file's removal
            await asyncio.sleep(0.02)


async def test_each_sandbox_reads_its_own_secret_only(tmp_path: Path) -> None:
    root = tmp_path / "state"
    runners = [_runner(root, "a", b"secret-of-a"), _runner(root, "b", b"secret-of-b")]
    a = await _start(runners[0])
    b = await _start(runners[1])
    mine = await a.call("read_file", path="/run/secrets/API_TOKEN")
    assert mine["escaped"] is True and "secret-of-a" in mine["detail"]
    for path in sorted(str(p) for p in root.rglob("API_TOKEN")):  # b's file, by host path
        assert (await a.call("read_file", path=path))["escaped"] is False
    assert (await a.call("write_file", path="/run/secrets/API_TOKEN"))["escaped"] is False
    assert "API_TOKEN_FILE" in await a.call("environment")
    await stop_process_group(a.proc)
    await stop_process_group(b.proc)
    await _gone(root)
    for runner in runners:
        await runner.aclose()
    assert not any(root.iterdir())


async def test_secret_file_removed_when_the_sandbox_is_killed(tmp_path: Path) -> None:
    root = tmp_path / "state"
    runner = _runner(root, "k", b"v")
    server = await _start(runner)
    assert list(root.rglob("API_TOKEN"))
    os.killpg(server.proc.pid, signal.SIGKILL)
    await exited(server.proc)
    await _gone(root)
    await runner.aclose()
    assert not any(root.iterdir())


def test_start_up_sweep_removes_a_dead_gateways_leftovers(tmp_path: Path) -> None:
    root = tmp_path / "state"
    dead = root / "999999999-1-x" / "secrets"  # no such pid
    dead.mkdir(parents=True)
    (dead / "API_TOKEN").write_bytes(b"left behind")
    live = root / f"{os.getpid()}-77-y"
    live.mkdir()
    _runner(root, "s", b"v")
    assert not (root / "999999999-1-x").exists()
    assert live.exists()  # this gateway's own state is not touched
