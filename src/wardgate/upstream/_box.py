"""The host side of one sandbox: its state directory, secret files and cgroup, and
their removal when the sandbox exits, however it exits.

State lives under ``<root>/<gateway pid>-<n>``; a gateway that died by SIGKILL leaves
its directories behind, and :func:`sweep` (run when a runner is made) removes every
one whose gateway pid no longer runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from wardgate.errors import ConfigError
from wardgate.net.egress import EgressProxy
from wardgate.upstream._cgroup import Cgroup
from wardgate.upstream._prelaunch import Launcher, LauncherPool, start_launcher
from wardgate.upstream._process import exited

if TYPE_CHECKING:
    from wardgate.upstream.profile import SandboxProfile

__all__ = ["SECRETS_DIR", "Box", "default_root", "sweep"]

log = logging.getLogger("wardgate.sandbox")
_serial = itertools.count(1)
SECRETS_DIR = "/run/secrets"


def default_root() -> Path:
    """Where sandbox state lives: a tmpfs (``/dev/shm``) when there is one, so secret
    files never reach a disk."""
    shm = Path("/dev/shm")  # noqa: S108 - the tmpfs, on purpose
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())
    return base / f"wardgate-sandbox-{os.getuid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _dead_owner(name: str) -> bool:
    """Was ``<pid>-…`` made by a gateway process that no longer runs?"""
    owner = name.split("-", 1)[0]
    return owner.isdigit() and int(owner) != os.getpid() and not _alive(int(owner))


def sweep(root: Path) -> int:
    """Remove what dead gateways left under ``root``, and their cgroups. Returns how many."""
    removed = Cgroup.sweep(_dead_owner)
    if not root.is_dir():
        return removed
    for entry in root.iterdir():
        if _dead_owner(entry.name):
            if (entry / "state").is_dir():
                _runsc_delete(entry)
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
    if removed:
        log.warning("sandbox: removed %d leftover sandbox state directories in %s", removed, root)
    return removed


def _runsc_delete(entry: Path) -> None:
    """A gVisor sandbox a dead gateway left: ``runsc delete --force`` it."""
    runsc = shutil.which("runsc")
    if runsc is not None:
        subprocess.run(
            [runsc, "--root", str(entry / "state"), "delete", "--force", entry.name],
            capture_output=True,
            timeout=30,
            check=False,
        )


class Box:
    """State of one sandbox on the host."""

    def __init__(self, root: Path, upstream: str) -> None:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.name = f"{os.getpid()}-{next(_serial)}-{upstream}"[:60]
        self.dir = root / self.name
        self.dir.mkdir(mode=0o700)
        self.cgroup: Cgroup | None = None
        self._cleanups: list[Callable[[], Awaitable[None] | None]] = []

    def write_secrets(
        self, secrets: Mapping[str, bytes], owner: int | None = None
    ) -> dict[str, str]:
        """Write each secret to a 0400 file (owned by ``owner`` if given, so that a
        runner without a user namespace can let the server's uid read it, and no one
        else: the directory is the gateway's, mode 0700); returns name -> host path."""
        if not secrets:
            return {}
        d = self.dir / "secrets"
        d.mkdir(mode=0o700)
        paths = {}
        for name, value in secrets.items():
            path = d / name
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o400)
            try:
                if owner is not None and os.geteuid() == 0:
                    os.fchown(fd, owner, owner)
                os.write(fd, value)
            finally:
                os.close(fd)
            paths[name] = str(path)
        return paths

    def on_exit(self, cleanup: Callable[[], Awaitable[None] | None]) -> None:
        self._cleanups.append(cleanup)

    async def close(self) -> None:
        """Run the cleanups, remove the cgroup and the state directory (idempotent)."""
        cleanups, self._cleanups = self._cleanups, []
        for cleanup in reversed(cleanups):
            with contextlib.suppress(Exception):
                result = cleanup()
                if result is not None:
                    await result
        if self.cgroup is not None:
            # The sandbox's last processes die asynchronously after its leader; no event
            # says when a cgroup empties (v1), so poll, bounded.
            for _ in range(100):
                if self.cgroup.remove():
                    break
                await asyncio.sleep(0.02)
        shutil.rmtree(self.dir, ignore_errors=True)

    def watch(self, proc: asyncio.subprocess.Process) -> asyncio.Task[None]:
        """Close this box once ``proc`` (the sandbox's outermost process) has exited."""

        async def watcher() -> None:
            try:
                await exited(proc)
            finally:
                await asyncio.shield(self.close())

        return asyncio.get_running_loop().create_task(watcher(), name=f"sandbox {self.name}")


class RunnerBase:
    """What both sandbox runners hold: their program, the profile, the state root swept
    of what dead gateways left, the egress proxy, the clean-up tasks in flight, and the
    launcher made ahead of the next sandbox (``_prelaunch.py``)."""

    name = "sandbox"
    #: The runner's program on the host (``bwrap``, ``runsc``).
    program = ""
    #: Whether a launcher also makes the sandbox's network namespace.
    launcher_netns = False
    #: Seconds after a launcher is handed out before the next one starts: by then the
    #: sandbox should have forked its processes (see :class:`LauncherPool`).
    launcher_delay = 0.25

    def __init__(
        self,
        profile: SandboxProfile,
        *,
        root: Path | None = None,
        egress: EgressProxy | None = None,
        prelaunch: bool = True,
    ) -> None:
        """``prelaunch=False``: every sandbox starts directly, none from a launcher
        made ahead (for comparison; slower, same profile).

        Raises:
            ConfigError: the runner's program is not installed.
        """
        found = shutil.which(self.program)
        if found is None:
            raise ConfigError(f"sandbox {self.name!r}: {self.program} is not installed")
        self._program = found
        self.profile = profile
        self._root = root or default_root()
        self._egress = egress
        self._tasks: set[asyncio.Task[None]] = set()
        self._launchers = LauncherPool(
            self._new_launcher, size=1 if prelaunch else 0, delay=self.launcher_delay
        )
        sweep(self._root)

    def _cgroup_pids(self) -> int:
        """The pids bound of the sandbox's cgroup."""
        return self.profile.pids

    def _seccomp_program(self) -> bytes | None:
        """A seccomp filter the launcher holds open for the runner (bwrap's)."""
        return None

    def _new_box(self) -> Box:
        box = Box(self._root, self.profile.upstream)
        box.cgroup = Cgroup.create(
            box.name, self.profile.memory_bytes, self._cgroup_pids(), cpu=self.profile.cpu
        )
        return box

    def _watch(self, proc: asyncio.subprocess.Process, box: Box) -> None:
        task = box.watch(proc)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _new_launcher(self) -> Launcher | None:
        box = self._new_box()
        if box.cgroup is None:
            await box.close()
            log.info("sandbox %s: no writable cgroup, sandboxes start on request", self.name)
            return None
        watched = False

        def watch(launcher: Launcher) -> None:
            nonlocal watched
            watched = True
            self._watch(launcher.proc, box)

        try:
            return await start_launcher(
                box, netns=self.launcher_netns, seccomp=self._seccomp_program(), watch=watch
            )
        except BaseException:
            if not watched:
                await box.close()
            raise

    async def prepare(self) -> bool:
        """Make the next sandbox's launcher now rather than after the first start (a
        spawn takes it when ready); whether one is ready. False where the host does
        not let the gateway make one (the reason is logged): sandboxes then start
        directly, with the same profile."""
        return await self._launchers.ready()

    def _take_launcher(self) -> Launcher | None:
        """The launcher made ahead for this sandbox, or None: start it directly."""
        return self._launchers.take()

    async def aclose(self) -> None:
        """Stop idle launchers, wait for the clean-up of sandboxes already stopped; stop
        the egress proxy."""
        await self._launchers.aclose()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._egress is not None:
            await self._egress.aclose()
