"""Sandboxes started from launchers made ahead (``upstream/_prelaunch.py``): each has a
network namespace and a cgroup of its own from its first instruction, no launcher
serves two sandboxes, the launcher dies with the gateway, and nothing is left behind."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from wardgate.upstream import _cgroup
from wardgate.upstream._box import RunnerBase
from wardgate.upstream._prelaunch import Launcher, LauncherPool
from wardgate.upstream._process import stop_process_group
from wardgate.upstream.bwrap import BubblewrapRunner
from wardgate.upstream.gvisor import GVisorRunner
from wardgate.upstream.profile import SandboxProfile
from wardgate.upstream.runners import gvisor_works

PREFIX = Path(sys.prefix)
BASE = Path(os.path.realpath(sys.executable)).parent.parent
PYTHON = str(PREFIX / "bin" / "python")
MIB = 1024 * 1024
PIDS = 16
PROFILE = SandboxProfile(
    upstream="pre",
    read_only=(str(PREFIX), str(BASE)),
    memory_bytes=192 * MIB,
    pids=PIDS,
)
CGROUPS = Path("/sys/fs/cgroup")

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bwrap not installed")
RUNNERS = [
    pytest.param("bubblewrap", marks=needs_bwrap),
    pytest.param(
        "gvisor", marks=pytest.mark.skipif(not gvisor_works(), reason="runsc does not work here")
    ),
]

BIND = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind("\\0wardgate-prelaunch")
s.listen()
c = socket.socket(socket.AF_UNIX)
c.connect("\\0wardgate-prelaunch")  # reachable in its own namespace
print("bound", flush=True)
sys.stdin.read()
"""
CONNECT = """
import socket
c = socket.socket(socket.AF_UNIX)
try:
    c.connect("\\0wardgate-prelaunch")
    print("connected", flush=True)
except OSError:
    print("refused", flush=True)
"""
FORK_AT_ONCE = """
import os, sys
n = 0
for _ in range(64):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        sys.stdin.read()
        os._exit(0)
    n += 1
print(n, flush=True)
sys.stdin.read()
"""
IDLE = "import sys; print('up', flush=True); sys.stdin.read()"


def _make(kind: str, root: Path) -> RunnerBase:
    cls = BubblewrapRunner if kind == "bubblewrap" else GVisorRunner
    return cls(PROFILE, root=root)


def _gateway_cgroups() -> set[Path]:
    found: set[Path] = set()
    for parent in (CGROUPS / "wardgate", CGROUPS / "memory/wardgate", CGROUPS / "pids/wardgate"):
        if parent.is_dir():
            found |= {d for d in parent.iterdir() if d.name.startswith(f"{os.getpid()}-")}
    return found


def _launcher_pids(owner: int) -> list[int]:
    """Launchers the gateway process ``owner`` started (by their command line)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"_launcher.py") for a in argv) and str(owner).encode() in argv:
            pids.append(int(entry.name))
    return pids


def _tree(pid: int) -> list[int]:
    """``pid`` and every host process descended from it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo += children.get(p, [])
    return seen


def _cgroup_of(pid: int, controller: str) -> str:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        if controller in names.split(",") or (names == "" and controller == "unified"):
            return path
    return ""


STARTED: list[asyncio.subprocess.Process] = []


@pytest.fixture(params=RUNNERS)
async def runner(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RunnerBase]:
    runner = _make(request.param, tmp_path / "state")
    yield runner
    while STARTED:  # a failed test's sandboxes too
        await stop_process_group(STARTED.pop())
    await runner.aclose()
    assert not any((tmp_path / "state").iterdir())
    assert not _gateway_cgroups()
    assert not _launcher_pids(os.getpid())


async def _start(runner: RunnerBase, code: str) -> asyncio.subprocess.Process:
    assert await runner.prepare()  # the next sandbox starts from a launcher
    proc = await runner.spawn([PYTHON, "-I", "-S", "-c", code], {}, None)
    STARTED.append(proc)
    return proc


async def _line(proc: asyncio.subprocess.Process) -> str:
    assert proc.stdout is not None
    async with asyncio.timeout(60):
        return (await proc.stdout.readline()).decode().strip()


async def test_two_sandboxes_never_share_a_network_namespace(runner: RunnerBase) -> None:
    first = await _start(runner, BIND)
    assert await _line(first) == "bound"
    second = await _start(runner, CONNECT)
    assert await _line(second) == "refused"
    await stop_process_group(first)
    await stop_process_group(second)


@needs_bwrap
async def test_each_bubblewrap_sandbox_gets_a_new_network_namespace(tmp_path: Path) -> None:
    runner = BubblewrapRunner(PROFILE, root=tmp_path / "state")
    host = Path("/proc/self/ns/net").readlink()
    procs = []
    try:
        for _ in range(3):
            proc = await _start(runner, IDLE)
            assert await _line(proc) == "up"
            procs.append(proc)
        # bwrap runs in its launcher's namespace (none of the host's), one per sandbox,
        # all alive at once: none was handed to a second sandbox.
        namespaces = [Path(f"/proc/{p.pid}/ns/net").readlink() for p in procs]
        assert host not in namespaces
        assert len(set(namespaces)) == 3
    finally:
        for proc in procs:
            await stop_process_group(proc)
        await runner.aclose()
    assert not any((tmp_path / "state").iterdir())


async def test_a_sandbox_that_forks_at_once_is_in_its_cgroup(runner: RunnerBase) -> None:
    proc = await _start(runner, FORK_AT_ONCE)
    forked = int(await _line(proc))
    assert 1 <= forked < PIDS  # the pids bound held from the first instruction
    tree = _tree(proc.pid)
    assert len(tree) >= 2  # bwrap and its children; runsc run, its gofer and Sentry
    pids_max = runner._cgroup_pids()  # gVisor's adds room for its own host threads
    for controller, limit in (("memory", "memory.limit_in_bytes"), ("pids", "pids.max")):
        paths = {_cgroup_of(pid, controller) for pid in tree}
        assert len(paths) == 1, paths  # every process of the sandbox, in one cgroup
        (path,) = paths
        assert path.startswith(f"/wardgate/{os.getpid()}-")
        if (CGROUPS / controller).is_dir():  # v1
            value = (CGROUPS / controller / path.lstrip("/") / limit).read_text().strip()
            assert value == str(PROFILE.memory_bytes if controller == "memory" else pids_max)
    await stop_process_group(proc)


async def test_an_idle_launcher_is_stopped_at_shutdown(tmp_path: Path) -> None:
    kind = "bubblewrap" if shutil.which("bwrap") else "gvisor"
    runner = _make(kind, tmp_path / "state")
    assert await runner.prepare()
    assert len(_launcher_pids(os.getpid())) == 1
    assert _gateway_cgroups()
    await runner.aclose()
    assert not _launcher_pids(os.getpid())
    assert not _gateway_cgroups()
    assert not any((tmp_path / "state").iterdir())


GATEWAY = """
import asyncio, os, signal, sys
from pathlib import Path
from wardgate.upstream.bwrap import BubblewrapRunner
from wardgate.upstream.profile import SandboxProfile

async def main():
    runner = BubblewrapRunner(SandboxProfile(upstream="dies"), root=Path(sys.argv[1]))
    assert await runner.prepare()
    print("ready", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


@needs_bwrap
async def test_a_launcher_dies_with_a_killed_gateway(tmp_path: Path) -> None:
    root = tmp_path / "state"
    env = {"PYTHONPATH": os.pathsep.join(sys.path), "PATH": os.environ["PATH"]}
    gateway = await asyncio.create_subprocess_exec(
        sys.executable, "-c", GATEWAY, str(root), stdout=subprocess.PIPE, env=env
    )
    assert gateway.stdout is not None
    assert (await gateway.stdout.readline()).strip() == b"ready"
    assert await gateway.wait() == -signal.SIGKILL
    async with asyncio.timeout(10):
        while _launcher_pids(gateway.pid):
            await asyncio.sleep(0.05)
    assert any(root.iterdir())  # a dead gateway's leftovers...
    fresh = BubblewrapRunner(PROFILE, root=root)  # ...are swept by the next one
    assert not any(root.iterdir())
    await fresh.aclose()


async def test_without_launchers_sandboxes_start_directly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kind = "bubblewrap" if shutil.which("bwrap") else "gvisor"
    monkeypatch.setattr(_cgroup.Cgroup, "create", classmethod(lambda cls, *a, **kw: None))
    runner = _make(kind, tmp_path / "state")
    assert not await runner.prepare()
    proc = await runner.spawn([PYTHON, "-I", "-S", "-c", IDLE], {}, None)
    assert await _line(proc) == "up"
    await stop_process_group(proc)
    await runner.aclose()
    assert not any((tmp_path / "state").iterdir())


@needs_bwrap
async def test_a_command_too_large_for_a_launcher_starts_directly(tmp_path: Path) -> None:
    runner = BubblewrapRunner(PROFILE, root=tmp_path / "state")
    assert await runner.prepare()
    proc = await runner.spawn(
        [PYTHON, "-I", "-S", "-c", "import os; print(len(os.environ['BIG']), flush=True)"],
        {"BIG": "x" * 70000},
        None,
    )
    assert await _line(proc) == "70000"
    await proc.wait()
    await runner.aclose()
    assert not any((tmp_path / "state").iterdir())
    assert not _launcher_pids(os.getpid())


@needs_bwrap
async def test_a_launcher_gone_when_handed_out_falls_back_to_a_direct_start(
    tmp_path: Path,
) -> None:
    runner = BubblewrapRunner(PROFILE, root=tmp_path / "state")
    assert await runner.prepare()
    (launcher,) = runner._launchers._ready  # reach in: its death between ready and use
    read_end, write_end = os.pipe()
    os.close(read_end)
    os.close(launcher.control)  # the launcher sees end of file and exits
    launcher.control = write_end  # and writing its command fails (EPIPE)
    proc = await runner.spawn([PYTHON, "-I", "-S", "-c", IDLE], {}, None)
    assert proc is not launcher.proc
    assert await _line(proc) == "up"
    await stop_process_group(proc)
    await runner.aclose()
    assert not any((tmp_path / "state").iterdir())


async def test_the_pool_hands_out_each_launcher_once() -> None:
    made: list[Launcher] = []

    async def make() -> Launcher | None:
        proc = await asyncio.create_subprocess_exec("sleep", "30")
        r, w = os.pipe()
        os.close(r)
        launcher = Launcher(proc, None, w, None, netns=False)  # type: ignore[arg-type]
        made.append(launcher)
        return launcher

    pool = LauncherPool(make)
    assert await pool.ready()
    first = pool.take()
    assert first is made[0]
    assert await pool.ready()
    second = pool.take()
    assert second is made[1] and second is not first
    await pool.aclose()
    assert pool.take() is None
    for launcher in made:
        launcher.proc.kill()
        await launcher.proc.wait()


async def test_a_pool_that_cannot_make_launchers_stays_empty() -> None:
    calls = 0

    async def make() -> Launcher | None:
        nonlocal calls
        calls += 1
        return None

    pool = LauncherPool(make)
    assert not await pool.ready()
    assert pool.take() is None
    assert not await pool.ready()
    assert calls == 1  # not retried on every start
    await pool.aclose()
