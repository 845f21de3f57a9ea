"""Launchers made ahead of need: a sandbox's first process, already in its cgroup (and,
for bubblewrap, in a network namespace of its own), waiting for its command.

Two costs of a sandbox start are the kernel's, not the runner's: joining a cgroup (a
write to ``cgroup.procs`` waits for an RCU grace period, about 10 ms here, and done in
a ``preexec_fn`` it also stops CPython from using ``vfork``) and creating a network
namespace. A :class:`LauncherPool` pays both before the request: it keeps one
``_launcher.py`` process ready per runner, each with its own :class:`Box` (state
directory and cgroup) and, when asked, its own new network namespace. A spawn takes
the ready launcher (:meth:`LauncherPool.take`), writes the runner's command to it
(:meth:`Launcher.run`), and the pool starts the next one. A launcher is used once, so
no two sandboxes ever share a cgroup or a network namespace. It dies with the gateway
(``PR_SET_PDEATHSIG``); an idle one is stopped by :meth:`LauncherPool.aclose`, and its
box is removed whenever its process exits.

When a launcher cannot be made (no writable cgroup, no privilege for a network
namespace), the pool logs why once and stays empty; the runners then start the sandbox
directly, as before (slower, same profile).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from wardgate.upstream.spawn import spawn_options

if TYPE_CHECKING:
    from wardgate.upstream._box import Box

__all__ = ["LAUNCHER", "Launcher", "LauncherPool", "start_launcher"]

log = logging.getLogger("wardgate.sandbox")
LAUNCHER = Path(__file__).with_name("_launcher.py")
_LIMIT = 64 * 1024 * 1024
_READY_TIMEOUT = 10.0
#: A command larger than a pipe's buffer would block the event loop: spawn directly.
MAX_COMMAND = 60000


@dataclass(eq=False)
class Launcher:
    """One ready launcher: its process (the sandbox's process once it runs), its box,
    the control pipe's write end, and the seccomp descriptor number it holds, if any."""

    proc: asyncio.subprocess.Process
    box: Box
    control: int
    seccomp_fd: int | None
    netns: bool

    def run(self, argv: Sequence[str], env: Mapping[str, str]) -> bool:
        """Hand the launcher its command (it execs it); False if it is too large or
        the launcher is gone (the caller then starts the sandbox directly)."""
        data = json.dumps({"argv": list(argv), "env": dict(env)}).encode()
        if len(data) > MAX_COMMAND:
            return False
        try:
            os.write(self.control, data)  # into an empty pipe's buffer: does not block
        except OSError:  # it died after it was handed out (EPIPE)
            return False
        finally:
            self.discard()
        return True

    def discard(self) -> None:
        """Close the control pipe: an idle launcher then exits (idempotent)."""
        if self.control >= 0:
            with contextlib.suppress(OSError):
                os.close(self.control)
            self.control = -1


async def start_launcher(
    box: Box, *, netns: bool, seccomp: bytes | None, watch: Callable[[Launcher], None]
) -> Launcher | None:
    """Start a launcher in ``box`` (whose cgroup must exist) and wait until it is ready.

    ``seccomp``: a filter program the launcher keeps open for ``bwrap --seccomp``.
    ``watch`` is called with the launcher as soon as its process exists (the runner
    removes the box when it exits). None, with the reason logged, if it cannot run.

    Raises:
        ValueError: ``box`` has no cgroup.
        OSError: the launcher could not be started at all.
    """
    if box.cgroup is None:
        raise ValueError(f"sandbox {box.name}: a launcher needs the sandbox's cgroup")
    read_end, write_end = os.pipe()
    seccomp_fd: int | None = None
    try:
        pass_fds = [read_end]
        if seccomp is not None:
            path = box.dir / "seccomp.bpf"
            path.write_bytes(seccomp)
            seccomp_fd = os.open(path, os.O_RDONLY)
            pass_fds.append(seccomp_fd)
        options = spawn_options()
        uvloop_preexec = options.pop("preexec_fn", None)
        if uvloop_preexec is not None:
            keep = tuple(pass_fds)

            def preexec() -> None:  # after cloexec_above_stdio on uvloop
                uvloop_preexec()
                for fd in keep:
                    os.set_inheritable(fd, True)

            options["preexec_fn"] = preexec
        argv = [sys.executable, "-I", "-S", str(LAUNCHER), str(os.getpid()), str(read_end)]
        if netns:
            argv.append("--netns")
        argv += [str(d / "cgroup.procs") for d in box.cgroup.dirs]
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={},
            limit=_LIMIT,
            start_new_session=True,
            pass_fds=pass_fds,
            **options,
        )
    except BaseException:
        os.close(write_end)
        raise
    finally:
        os.close(read_end)
        if seccomp_fd is not None:
            os.close(seccomp_fd)
    launcher = Launcher(proc, box, write_end, seccomp_fd, netns)
    watch(launcher)
    assert proc.stderr is not None
    try:
        ready = await asyncio.wait_for(proc.stderr.readexactly(1), _READY_TIMEOUT)
    except (asyncio.IncompleteReadError, TimeoutError):
        ready = b""
    except BaseException:  # cancelled (the pool closes): never leave it waiting
        _stop(launcher)
        raise
    if ready != b"R":
        _stop(launcher)
        why = b""
        with contextlib.suppress(asyncio.TimeoutError, OSError):
            why = await asyncio.wait_for(proc.stderr.read(4096), 1.0)
        log.warning(
            "sandbox: cannot prepare sandboxes ahead (%s); starting each on request",
            (ready + why).decode(errors="replace").strip() or "launcher did not start",
        )
        return None
    return launcher


def _stop(launcher: Launcher) -> None:
    launcher.discard()
    with contextlib.suppress(ProcessLookupError):
        launcher.proc.kill()


class LauncherPool:
    """Keeps ``size`` launchers ready; :meth:`take` hands one out and starts the next
    ``delay`` seconds later.

    The delay matters: a launcher's cgroup join holds the kernel's
    ``cgroup_threadgroup_rwsem`` for writing through an RCU grace period, and every
    ``fork``/``clone`` on the host (threads too) waits for it meanwhile; the sandbox just
    handed out should be done forking first. Measured: bubblewrap +7.6/+8.6 ms over
    bare with the next launcher started at once, +3.7/+2.9 ms with it 0.25 s later.
    """

    def __init__(
        self,
        make: Callable[[], Awaitable[Launcher | None]],
        size: int = 1,
        delay: float = 0.0,
    ) -> None:
        self._make = make
        self._size = size
        self._delay = delay
        self._ready: list[Launcher] = []
        self._filling: asyncio.Task[None] | None = None
        self._broken = False
        self._closed = False

    def take(self) -> Launcher | None:
        """A ready launcher, or None (the caller starts its sandbox directly)."""
        launcher = None
        while self._ready and launcher is None:
            candidate = self._ready.pop(0)
            if candidate.proc.returncode is None:
                launcher = candidate
            else:
                candidate.discard()
        self._refill(self._delay)
        return launcher

    async def ready(self) -> bool:
        """Fill the pool now; whether a launcher is ready."""
        self._refill(0.0)
        if self._filling is not None:
            await asyncio.shield(self._filling)
        return bool(self._ready)

    def _refill(self, delay: float) -> None:
        if self._broken or self._closed or self._filling is not None or not self._size:
            return
        self._filling = asyncio.get_running_loop().create_task(self._fill(delay))

    async def _fill(self, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
            while len(self._ready) < self._size and not self._closed:
                launcher = await self._make()
                if launcher is None:
                    self._broken = True
                    return
                if self._closed:
                    launcher.discard()
                    return
                self._ready.append(launcher)
        except Exception:  # fail closed to the direct path, never to no sandbox
            log.exception("sandbox: preparing a sandbox ahead failed")
            self._broken = True
        finally:
            self._filling = None

    async def aclose(self) -> None:
        """Stop filling; idle launchers exit (their boxes go with their processes)."""
        self._closed = True
        if self._filling is not None:
            self._filling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._filling
        ready, self._ready = self._ready, []
        for launcher in ready:
            launcher.discard()
