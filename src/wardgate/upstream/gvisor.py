"""The gVisor runner: each server in its own ``runsc`` sandbox from an OCI bundle.

The bundle has an empty read-only root, read-only binds of ``/usr`` and the paths the
operator lists, a size-bounded tmpfs on ``/tmp``, no capabilities, no new privileges,
an unprivileged uid, ``--network=none`` (loopback only), and cgroup limits on memory,
CPU and pids (``linux.resources``). gVisor's own kernel (the Sentry, itself under a
seccomp filter) answers the server's system calls.

Tested with Debian bookworm's ``runsc`` 0.0~20221219.0 (run as root, not rootless).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from wardgate.upstream._box import SECRETS_DIR, Box, RunnerBase
from wardgate.upstream._cgroup import CPU_PERIOD_US, Cgroup
from wardgate.upstream._preexec import chain, die_with_parent
from wardgate.upstream.bwrap import EGRESS_SOCKET, FORWARDER, FORWARDER_IN
from wardgate.upstream.profile import SandboxProfile, resolve_program, sandbox_env
from wardgate.upstream.spawn import spawn_options

__all__ = ["GVisorRunner", "oci_config"]

_LIMIT = 64 * 1024 * 1024
_SENTRY_THREADS = 256


def _bind(path: str, dest: str | None = None) -> dict[str, Any]:
    return {
        "destination": dest or path,
        "type": "bind",
        "source": path,
        "options": ["rbind", "ro", "nosuid", "nodev"],
    }


def _cpu(cores: float | None) -> dict[str, Any]:
    """OCI ``linux.resources.cpu``: ``cores`` of CPU time per wall-clock period."""
    if cores is None:
        return {}
    return {"cpu": {"quota": max(1000, int(cores * CPU_PERIOD_US)), "period": CPU_PERIOD_US}}


def oci_config(
    profile: SandboxProfile,
    argv: Sequence[str],
    env: Mapping[str, str],
    cwd: str | None,
    secret_paths: Mapping[str, str],
) -> dict[str, Any]:
    """The OCI runtime config (``config.json``) of one sandbox."""
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {
            "destination": "/tmp",  # noqa: S108
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "nodev", f"size={profile.scratch_bytes}", "mode=1777"],
        },
        _bind("/usr"),
    ]
    for link in ("bin", "lib", "lib64", "sbin"):
        if (Path("/") / link).exists():
            mounts.append(_bind(f"/{link}"))
    mounts += [_bind(p) for p in profile.read_only]
    mounts += [_bind(host, f"{SECRETS_DIR}/{name}") for name, host in secret_paths.items()]
    if profile.egress_socket is not None:
        mounts += [_bind(str(FORWARDER), FORWARDER_IN)]
        socket_mount = _bind(profile.egress_socket, EGRESS_SOCKET)
        socket_mount["options"] = ["rbind", "nosuid", "nodev"]  # connect() needs write
        mounts.append(socket_mount)
        argv = [sys.executable, "-I", "-S", FORWARDER_IN, EGRESS_SOCKET, "--", *argv]
    return {
        "ociVersion": "1.0.0",
        "process": {
            "terminal": False,
            "user": {"uid": profile.uid, "gid": profile.uid},
            "args": list(argv),
            "env": [f"{k}={v}" for k, v in env.items()],
            "cwd": cwd or "/tmp",  # noqa: S108
            "capabilities": {},
            "noNewPrivileges": True,
            "rlimits": [
                {"type": "RLIMIT_CORE", "hard": 0, "soft": 0},
                # The guest's own task count (the cgroup below counts host threads).
                {"type": "RLIMIT_NPROC", "hard": profile.pids, "soft": profile.pids},
            ],
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "sandbox",
        "mounts": mounts,
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "network")],
            "resources": {
                "memory": {"limit": profile.memory_bytes, "swap": profile.memory_bytes},
                # The Sentry and gofer run their own host threads inside this cgroup.
                "pids": {"limit": profile.pids + _SENTRY_THREADS},
                **_cpu(profile.cpu),
            },
        },
    }


class GVisorRunner(RunnerBase):
    """A :class:`~wardgate.upstream.sandbox.Sandbox` running servers under ``runsc``."""

    program = "runsc"
    name = "gvisor"

    @staticmethod
    def supports(profile: SandboxProfile) -> bool:
        """Every profile (egress through ``--host-uds=open`` and the forwarder)."""
        return True

    async def spawn(
        self, argv: Sequence[str], env: Mapping[str, str], cwd: str | None
    ) -> asyncio.subprocess.Process:
        """Start ``argv`` in a fresh gVisor sandbox."""
        profile = self.profile
        program = resolve_program(argv[0], env, cwd)
        if self._egress is not None:
            await self._egress.start()  # the socket must exist before runsc binds it
            if os.geteuid() == 0:
                # No user namespace maps the server's uid onto ours: the socket is
                # handed to that uid (its directory, 0700, keeps host users out).
                os.chown(self._egress.path, profile.uid, profile.uid)
        box = Box(self._root, profile.upstream)
        state = box.dir / "state"
        try:
            secret_paths = box.write_secrets(profile.secrets, owner=profile.uid)
            child_env = sandbox_env(env, proxy=profile.egress_socket is not None)
            for name in secret_paths:
                child_env[f"{name}_FILE"] = f"{SECRETS_DIR}/{name}"
            (box.dir / "rootfs").mkdir()
            config = oci_config(profile, [program, *argv[1:]], child_env, cwd, secret_paths)
            (box.dir / "config.json").write_text(json.dumps(config))
            options = spawn_options()
            command = [
                self._program,
                "--root",
                str(state),
                "--network=none",
                # Lets the sandbox connect to the one host socket bound into it.
                *(["--host-uds=open"] if profile.egress_socket is not None else []),
                "run",
                "--bundle",
                str(box.dir),
                box.name,
            ]
            proc = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={"PATH": "/usr/bin:/bin"},
                limit=_LIMIT,
                start_new_session=True,
                # runsc's sandbox is --attached: it dies with ``runsc run``, which dies
                # with the gateway.
                preexec_fn=chain(options.pop("preexec_fn", None), die_with_parent),
                **options,
            )
        except BaseException:
            await box.close()
            raise

        async def delete() -> None:
            # Whatever of the sandbox outlived ``runsc run`` (a kill of the group).
            done = await asyncio.create_subprocess_exec(
                self._program,
                "--root",
                str(state),
                "delete",
                "--force",
                box.name,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            await done.wait()

        box.on_exit(delete)
        # runsc makes the sandbox's cgroup itself; the box removes it after the delete.
        box.cgroup = Cgroup.made_by_runtime(box.name)
        task = box.watch(proc)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return proc
