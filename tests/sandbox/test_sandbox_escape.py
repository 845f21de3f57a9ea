"""The escape battery: a tool of our own tries to break out, under each runner that
works on this host; every attempt fails and the sandbox (and the next one) still serves."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from support.stdio_driver import StdioDriver
from wardgate.upstream._process import stop_process_group
from wardgate.upstream.bwrap import BubblewrapRunner
from wardgate.upstream.gvisor import GVisorRunner
from wardgate.upstream.profile import SandboxProfile
from wardgate.upstream.runners import gvisor_works
from wardgate.upstream.sandbox import Sandbox

SERVER = Path(__file__).with_name("escape_server.py")
PREFIX = Path(sys.prefix)
BASE = Path(os.path.realpath(sys.executable)).parent.parent  # the interpreter's install
MIB = 1024 * 1024

PROFILE = SandboxProfile(
    upstream="escape",
    read_only=(str(PREFIX), str(BASE), str(SERVER)),
    scratch_bytes=8 * MIB,
    memory_bytes=256 * MIB,
    pids=48,
    secrets={"API_TOKEN": b"tok-1"},
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


@pytest.fixture(params=RUNNERS)
async def runner(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[BubblewrapRunner | GVisorRunner]:
    cls = BubblewrapRunner if request.param == "bubblewrap" else GVisorRunner
    runner = cls(PROFILE, root=tmp_path / "state")
    yield runner
    await runner.aclose()
    assert not any((tmp_path / "state").iterdir())  # nothing left behind


async def start(runner: Sandbox) -> StdioDriver:
    proc = await runner.spawn([str(PREFIX / "bin" / "python"), str(SERVER)], {}, None)
    driver = StdioDriver(proc)
    await driver.initialize()
    return driver


@pytest.fixture
async def server(runner: Sandbox) -> AsyncIterator[StdioDriver]:
    os.environ["WARDGATE_CANARY"] = "gateway-env"
    driver = await start(runner)
    yield driver
    await stop_process_group(driver.proc)


async def escaped(server: StdioDriver, tool: str, **arguments: object) -> bool:
    """Did the attempt succeed? A sandbox that dies of it contained it too."""
    try:
        return bool((await server.call(tool, **arguments))["escaped"])
    except EOFError:
        return False


async def test_host_files_and_environment_are_out_of_reach(server: StdioDriver) -> None:
    for path in ("/etc/shadow", "/etc/passwd", str(Path(__file__))):
        assert (await server.call("read_file", path=path))["escaped"] is False, path
    # Process 1 of the sandbox is the sandbox's own; nothing of the gateway's is in it.
    init_env = await server.call("read_file", path="/proc/1/environ")
    assert "WARDGATE_CANARY" not in init_env["detail"]
    env = await server.call("environment")
    assert "WARDGATE_CANARY" not in env
    assert not [n for n in env if n.startswith(("AWS_", "VAULT_", "GOOGLE_"))]
    # The legitimate path: its own secret file, named by an env var, value not in env.
    assert "API_TOKEN" not in env
    assert (await server.call("read_file", path="/run/secrets/API_TOKEN"))["escaped"] is True
    assert (await server.call("ping")) == "pong"


async def test_writes_outside_scratch_fail_and_scratch_is_bounded(server: StdioDriver) -> None:
    for path in ("/usr/pwned", "/etc/pwned", f"{sys.prefix}/pwned", "/pwned", "/run/secrets/x"):
        assert (await server.call("write_file", path=path))["escaped"] is False, path
    assert (await server.call("write_file", path="/tmp/ok"))["escaped"] is True
    assert (await server.call("fill_scratch", mib=32))["escaped"] is False
    assert (await server.call("fill_scratch", mib=2))["escaped"] is True


async def test_no_network_at_all(server: StdioDriver) -> None:
    for host, port in (("169.254.169.254", 80), ("127.0.0.1", 6379), ("1.1.1.1", 53)):
        assert (await server.call("connect", host=host, port=port))["escaped"] is False
    for path in ("/var/run/docker.sock", "/run/docker.sock"):
        assert (await server.call("connect_unix", path=path))["escaped"] is False
    assert (await server.call("ping")) == "pong"


async def test_fork_bomb_is_bounded(server: StdioDriver, runner: Sandbox) -> None:
    assert await escaped(server, "fork_bomb", target=200) is False
    fresh = await start(runner)  # the next sandbox (the gateway's restart) still serves
    assert (await fresh.call("fork_bomb", target=3))["escaped"] is True
    await stop_process_group(fresh.proc)


async def test_memory_is_bounded(server: StdioDriver, runner: Sandbox) -> None:
    assert await escaped(server, "allocate", mib=1024) is False
    fresh = await start(runner)
    assert (await fresh.call("allocate", mib=16))["escaped"] is True
    await stop_process_group(fresh.proc)


async def test_no_privilege_to_raise_or_trace(server: StdioDriver, runner: Sandbox) -> None:
    assert (await server.call("raise_capability"))["escaped"] is False
    if runner.name == "bubblewrap":
        # Process 1 is the sandbox's own, same uid: only the seccomp filter stops this.
        assert (await server.call("ptrace", pid=1))["escaped"] is False
    assert (await server.call("ptrace", pid=os.getpid()))["escaped"] is False
    assert (await server.call("ping")) == "pong"
