"""A cgroup per sandbox (memory, pids and CPU), v2 or v1, when the host lets us write one.

:meth:`Cgroup.create` returns None where cgroups are not writable; the runners then fall
back to rlimits (:func:`rlimit_preexec`), which bound each process, not the sandbox.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
from collections.abc import Callable
from pathlib import Path

__all__ = ["CPU_PERIOD_US", "Cgroup", "rlimit_preexec"]

log = logging.getLogger("wardgate.sandbox")
_ROOT = Path("/sys/fs/cgroup")
#: The CFS period a CPU bound is expressed in (the kernel's default, 100 ms).
CPU_PERIOD_US = 100_000
_V1_PARENTS = ("memory", "pids", "cpu", "cpuacct")
#: Every v1 hierarchy runsc may make a container's cgroup in.
_V1_RUNTIME = (*_V1_PARENTS, "blkio", "cpuset", "devices", "freezer", "net_cls", "systemd")


def _quota(cores: float) -> int:
    return max(1000, int(cores * CPU_PERIOD_US))  # the kernel's least quota is 1 ms


class Cgroup:
    """One sandbox's cgroup directories; processes join by writing to ``cgroup.procs``."""

    def __init__(self, dirs: list[Path]) -> None:
        self.dirs = dirs
        self._procs = [str(d / "cgroup.procs") for d in dirs]

    @classmethod
    def create(
        cls, name: str, memory_bytes: int, pids: int, *, cpu: float | None = None
    ) -> Cgroup | None:
        """Make the cgroup of sandbox ``name``, or None if the host does not let us.

        ``cpu`` bounds the CPU time of the whole sandbox, in cores per wall-clock time
        (CFS quota over a 100 ms period); None leaves it unbounded.
        """
        try:
            if (_ROOT / "cgroup.controllers").is_file():  # v2
                return cls._create_v2(name, memory_bytes, pids, cpu)
            return cls._create_v1(name, memory_bytes, pids, cpu)
        except OSError:
            return None

    @classmethod
    def _create_v2(cls, name: str, memory_bytes: int, pids: int, cpu: float | None) -> Cgroup:
        parent = _ROOT / "wardgate"
        parent.mkdir(exist_ok=True)
        for controller in ("+memory +pids", "+cpu"):  # cpu apart: it may be absent
            with contextlib.suppress(OSError):
                (parent / "cgroup.subtree_control").write_text(controller)
        d = parent / name
        d.mkdir()
        (d / "memory.max").write_text(str(memory_bytes))
        (d / "memory.swap.max").write_text("0")
        (d / "pids.max").write_text(str(pids))
        if cpu is not None:
            (d / "cpu.max").write_text(f"{_quota(cpu)} {CPU_PERIOD_US}")
        return cls([d])

    @classmethod
    def _create_v1(cls, name: str, memory_bytes: int, pids: int, cpu: float | None) -> Cgroup:
        mem = _ROOT / "memory" / "wardgate" / name
        pid = _ROOT / "pids" / "wardgate" / name
        mem.mkdir(parents=True)
        pid.mkdir(parents=True)
        try:
            (mem / "memory.limit_in_bytes").write_text(str(memory_bytes))
            with contextlib.suppress(OSError):  # only with swap accounting on
                (mem / "memory.memsw.limit_in_bytes").write_text(str(memory_bytes))
            (pid / "pids.max").write_text(str(pids))
        except OSError:
            cls([mem, pid]).remove()
            raise
        return cls([mem, pid, *cls._cpu_v1(name, cpu)])

    @staticmethod
    def _cpu_v1(name: str, cpu: float | None) -> list[Path]:
        """The v1 cpu (bounds) and cpuacct (counts) directories of a sandbox; none, and
        a warning, where the host does not let us (memory and pids still hold)."""
        if cpu is None:
            return []
        dirs: list[Path] = []
        try:
            for controller in ("cpu", "cpuacct"):
                d = _ROOT / controller / "wardgate" / name
                if not d.is_dir():  # co-mounted (cpu,cpuacct): one directory
                    d.mkdir(parents=True)
                    dirs.append(d)
            cpu_dir = _ROOT / "cpu" / "wardgate" / name
            (cpu_dir / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
            (cpu_dir / "cpu.cfs_quota_us").write_text(str(_quota(cpu)))
        except OSError as exc:
            log.warning("sandbox %s: no CPU bound (cgroup cpu not writable: %s)", name, exc)
            Cgroup(dirs).remove()
            return []
        return dirs

    @classmethod
    def made_by_runtime(cls, name: str) -> Cgroup:
        """The cgroup a runtime (runsc) makes for container ``name`` at the top of each
        hierarchy, so that the box removes it with the sandbox."""
        if (_ROOT / "cgroup.controllers").is_file():
            return cls([_ROOT / name])
        return cls([_ROOT / c / name for c in _V1_RUNTIME])

    def cpu_usage_ns(self) -> int | None:
        """CPU time the sandbox used so far (ns), when the host accounts it."""
        for d in self.dirs:
            for name, scale in (("cpuacct.usage", 1), ("cpu.stat", 1000)):
                path = d / name
                if not path.is_file():
                    continue
                text = path.read_text()
                if name == "cpuacct.usage":
                    return int(text)
                for line in text.splitlines():
                    key, _, value = line.partition(" ")
                    if key == "usage_usec":
                        return int(value) * scale
        return None

    def join_preexec(self) -> Callable[[], None]:
        """A pre-exec function: the child joins this cgroup before it execs."""
        procs = self._procs

        def join() -> None:
            pid = str(os.getpid()).encode()
            for path in procs:
                fd = os.open(path, os.O_WRONLY)
                try:
                    os.write(fd, pid)
                finally:
                    os.close(fd)

        return join

    def remove(self) -> bool:
        """Remove the directories; False while a process of the sandbox still runs."""
        done = True
        for d in self.dirs:
            try:
                d.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                done = False
        return done

    @staticmethod
    def sweep(dead: Callable[[str], bool]) -> int:
        """Remove empty leftover cgroups whose name ``dead`` says a dead gateway made."""
        removed = 0
        parents = [_ROOT / "wardgate", *(_ROOT / c / "wardgate" for c in _V1_PARENTS)]
        # runsc's own, named after the container (the box): the top of each hierarchy.
        parents += [_ROOT, *(_ROOT / c for c in _V1_RUNTIME)]
        for parent in parents:
            if not parent.is_dir():
                continue
            for d in parent.iterdir():
                if d.is_dir() and dead(d.name):
                    with contextlib.suppress(OSError):
                        d.rmdir()
                        removed += 1
        return removed


def rlimit_preexec(memory_bytes: int) -> Callable[[], None]:
    """A pre-exec function bounding the address space of each process of the sandbox."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return limit
