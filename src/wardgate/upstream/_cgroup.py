"""A cgroup per sandbox (memory and pids), v2 or v1, when the host lets us write one.

:meth:`Cgroup.create` returns None where cgroups are not writable; the runners then fall
back to rlimits (:func:`rlimit_preexec`), which bound each process, not the sandbox.
"""

from __future__ import annotations

import contextlib
import os
import resource
from collections.abc import Callable
from pathlib import Path

__all__ = ["Cgroup", "rlimit_preexec"]

_ROOT = Path("/sys/fs/cgroup")


class Cgroup:
    """One sandbox's cgroup directories; processes join by writing to ``cgroup.procs``."""

    def __init__(self, dirs: list[Path]) -> None:
        self.dirs = dirs
        self._procs = [str(d / "cgroup.procs") for d in dirs]

    @classmethod
    def create(cls, name: str, memory_bytes: int, pids: int) -> Cgroup | None:
        """Make the cgroup of sandbox ``name``, or None if the host does not let us."""
        try:
            if (_ROOT / "cgroup.controllers").is_file():  # v2
                parent = _ROOT / "wardgate"
                parent.mkdir(exist_ok=True)
                with contextlib.suppress(OSError):
                    (parent / "cgroup.subtree_control").write_text("+memory +pids")
                d = parent / name
                d.mkdir()
                (d / "memory.max").write_text(str(memory_bytes))
                (d / "memory.swap.max").write_text("0")
                (d / "pids.max").write_text(str(pids))
                return cls([d])
            mem = _ROOT / "memory" / "wardgate" / name
            pid = _ROOT / "pids" / "wardgate" / name
            mem.mkdir(parents=True)
            pid.mkdir(parents=True)
            (mem / "memory.limit_in_bytes").write_text(str(memory_bytes))
            with contextlib.suppress(OSError):  # only with swap accounting on
                (mem / "memory.memsw.limit_in_bytes").write_text(str(memory_bytes))
            (pid / "pids.max").write_text(str(pids))
            return cls([mem, pid])
        except OSError:
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
        for parent in (_ROOT / "wardgate", _ROOT / "memory/wardgate", _ROOT / "pids/wardgate"):
            if not parent.is_dir():
                continue
            for d in parent.iterdir():
                if dead(d.name):
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
