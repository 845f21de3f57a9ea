"""The sandbox seam: how an upstream stdio server process is started.

The real sandboxes (gVisor, bubblewrap) come with their own module; here is the seam
and the plain process runner, which is unsandboxed, must be enabled explicitly in the
config (``sandbox = "insecure-none"``) and says so loudly every time it starts one.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Protocol

from wardgate.upstream.spawn import spawn_options

__all__ = ["PlainProcessRunner", "Sandbox", "minimal_env"]

log = logging.getLogger("wardgate.sandbox")

#: What a child inherits from the gateway's environment; secrets never travel by env.
_INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "SYSTEMROOT")
_LIMIT = 64 * 1024 * 1024  # asyncio StreamReader line limit: one message at most 64 MiB


def minimal_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: os.environ[k] for k in _INHERITED if k in os.environ}
    env.update(extra)
    return env


class Sandbox(Protocol):
    name: str

    async def spawn(
        self, argv: Sequence[str], env: Mapping[str, str], cwd: str | None
    ) -> asyncio.subprocess.Process:
        """Start ``argv`` with stdin/stdout/stderr pipes, as the leader of a new process
        group (callers stop it with ``os.killpg``), inheriting no other descriptor."""
        ...


class PlainProcessRunner:
    """Runs the server as an ordinary child process: NO isolation."""

    name = "insecure-none"

    async def spawn(
        self, argv: Sequence[str], env: Mapping[str, str], cwd: str | None
    ) -> asyncio.subprocess.Process:
        log.warning(
            "starting %s UNSANDBOXED (sandbox = 'insecure-none'): it runs with the "
            "gateway's own privileges and can reach anything the gateway can",
            argv[0],
        )
        return await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=minimal_env(env),
            cwd=cwd,
            limit=_LIMIT,
            # Its own process group, so stopping it stops its children too; and no
            # descriptor of the gateway's but the three pipes.
            start_new_session=True,
            **spawn_options(),  # stdio only, on uvloop too
        )
