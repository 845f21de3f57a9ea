"""The CPU bound of a sandbox (``sandbox_limits.cpu``), under each runner that works here:
a tool that busy-loops gets at most about ``cpu`` × wall time of CPU, a looser bound
lets it use more, and the sandbox keeps serving."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from support.stdio_driver import StdioDriver
from wardgate.upstream._process import stop_process_group
from wardgate.upstream.bwrap import BubblewrapRunner
from wardgate.upstream.gvisor import GVisorRunner
from wardgate.upstream.profile import SandboxProfile
from wardgate.upstream.runners import gvisor_works

SERVER = Path(__file__).with_name("per_call_server.py")
CGROUP = Path("/sys/fs/cgroup")
PREFIX = Path(sys.prefix)
BASE = Path(os.path.realpath(sys.executable)).parent.parent
RUNNERS = [
    pytest.param(
        "bubblewrap",
        marks=pytest.mark.skipif(shutil.which("bwrap") is None, reason="bwrap not installed"),
    ),
    pytest.param(
        "gvisor", marks=pytest.mark.skipif(not gvisor_works(), reason="runsc does not work here")
    ),
]


def usage_ns(pid: int) -> int:
    """CPU time the sandbox whose first host process is ``pid`` used so far, as its host
    cgroup counts it (gVisor's guest clock does not see the host's throttling)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "cpuacct" in controllers.split(","):
            d = CGROUP / controllers / path.lstrip("/")
            if not d.is_dir():  # co-mounted hierarchies are also linked by each name
                d = CGROUP / "cpuacct" / path.lstrip("/")
            return int((d / "cpuacct.usage").read_text())
        if controllers == "" and (CGROUP / path.lstrip("/") / "cpu.stat").is_file():
            stat = (CGROUP / path.lstrip("/") / "cpu.stat").read_text().split()
            return int(stat[stat.index("usage_usec") + 1]) * 1000
    pytest.skip("the host does not account CPU per cgroup here")


async def burn(kind: str, cpu: float | None, root: Path) -> tuple[float, float]:
    """CPU seconds a one-second busy loop got in a sandbox bounded to ``cpu`` cores,
    and its wall time."""
    cls = BubblewrapRunner if kind == "bubblewrap" else GVisorRunner
    profile = SandboxProfile(
        upstream="cpu", read_only=(str(PREFIX), str(BASE), str(SERVER)), cpu=cpu
    )
    runner = cls(profile, root=root)
    proc = await runner.spawn([str(PREFIX / "bin" / "python"), str(SERVER)], {}, None)
    try:
        driver = StdioDriver(proc)
        await driver.initialize()
        before = usage_ns(proc.pid)
        used = await driver.call("burn", seconds=1.0)
        after = usage_ns(proc.pid)
        assert (await driver.call("whoami"))["boot"]  # still serving after the burn
        return (after - before) / 1e9, float(used["wall"])
    finally:
        await stop_process_group(proc)
        await runner.aclose()


@pytest.mark.parametrize("kind", RUNNERS)
async def test_a_busy_loop_gets_no_more_cpu_than_its_bound(kind: str, tmp_path: Path) -> None:
    bounded, wall = await burn(kind, 0.2, tmp_path / "a")
    loose, _ = await burn(kind, 2.0, tmp_path / "b")
    # 0.2 of a core over ~1 s of wall time (plus the answer's own round trip); slack
    # for the period boundaries.
    assert bounded <= 0.2 * (wall + 0.2) * 1.5, (bounded, wall)
    assert loose > bounded * 1.5, (bounded, loose)
    assert not any((tmp_path / "a").iterdir())
