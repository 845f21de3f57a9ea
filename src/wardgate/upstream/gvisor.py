"""The gVisor runner: each server in its own ``runsc`` sandbox from an OCI bundle.

The bundle has an empty read-only root (holding the host's ``/bin``-style links into
``/usr``), read-only binds of ``/usr`` and the paths the operator lists, a size-bounded
tmpfs on ``/tmp``, no capabilities, no new privileges, an unprivileged uid,
``--network=none`` (loopback only), and cgroup limits on memory, CPU and pids (the
gateway's cgroup, which ``runsc run`` starts in; see :meth:`GVisorRunner.spawn`).
gVisor's own kernel (the Sentry, itself under a seccomp filter) answers the server's
system calls.

Tested with Debian bookworm's ``runsc`` 0.0~20221219.0 (run as root, not rootless).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from wardgate.upstream._box import SECRETS_DIR, Box, RunnerBase
from wardgate.upstream._cgroup import CPU_PERIOD_US, Cgroup
from wardgate.upstream._preexec import chain, die_with_parent
from wardgate.upstream.bwrap import EGRESS_SOCKET, FORWARDER, FORWARDER_IN, forwarder_argv
from wardgate.upstream.profile import SandboxProfile, resolve_program, sandbox_env
from wardgate.upstream.spawn import spawn_options
from wardgate.upstream.tcp_egress import write_etc

__all__ = ["GVisorRunner", "oci_config"]

_LIMIT = 64 * 1024 * 1024
_SENTRY_THREADS = 256
_RUNSC_ENV = {"PATH": "/usr/bin:/bin"}


def _bind(path: str, dest: str | None = None) -> dict[str, Any]:
    return {
        "destination": dest or path,
        "type": "bind",
        "source": path,
        "options": ["rbind", "ro", "nosuid", "nodev"],
    }


def root_links() -> dict[str, str]:
    """``/bin``, ``/lib``, ... that are symbolic links on the host (merged ``/usr``):
    name -> target. The bundle's root gets the same links instead of a bind mount
    each (every mount costs runsc about 13 ms of start here)."""
    links = {}
    for link in ("bin", "lib", "lib64", "sbin"):
        host = Path("/") / link
        if host.is_symlink():
            links[link] = str(host.readlink())
    return links


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
    etc_files: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The OCI runtime config (``config.json``) of one sandbox; ``etc_files`` (sandbox
    path -> host path) are bound read-only."""
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
    links = root_links()
    for link in ("bin", "lib", "lib64", "sbin"):
        if link not in links and (Path("/") / link).exists():
            mounts.append(_bind(f"/{link}"))
    mounts += [_bind(p) for p in profile.read_only]
    mounts += [_bind(host, f"{SECRETS_DIR}/{name}") for name, host in secret_paths.items()]
    if profile.egress_socket is not None:
        mounts += [_bind(str(FORWARDER), FORWARDER_IN)]
        socket_mount = _bind(profile.egress_socket, EGRESS_SOCKET)
        socket_mount["options"] = ["rbind", "nosuid", "nodev"]  # connect() needs write
        mounts.append(socket_mount)
        argv = [*forwarder_argv(profile), *argv]
    mounts += [_bind(host, dest) for dest, host in (etc_files or {}).items()]
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
    launcher_delay = 0.5  # runsc run starts many host threads for ~0.25 s

    @staticmethod
    def supports(profile: SandboxProfile) -> bool:
        """Every profile (egress through ``--host-uds=open`` and the forwarder)."""
        return True

    def _cgroup_pids(self) -> int:
        # The Sentry, the gofer and ``runsc run`` run their own host threads in it.
        return self.profile.pids + _SENTRY_THREADS

    async def spawn(
        self, argv: Sequence[str], env: Mapping[str, str], cwd: str | None
    ) -> asyncio.subprocess.Process:
        """Start ``argv`` in a fresh gVisor sandbox.

        The sandbox's cgroup is the gateway's (``--ignore-cgroups``: runsc's own set-up
        of a cgroup in every controller, each join waiting for an RCU grace period,
        cost about 50 ms a start); ``runsc run`` starts in it, from the launcher made
        ahead for it when one is ready, so the gofer and the Sentry are in it too.
        """
        profile = self.profile
        program = [resolve_program(argv[0], env, cwd), *argv[1:]]
        if self._egress is not None:
            await self._egress.start()  # the socket must exist before runsc binds it
            if os.geteuid() == 0:
                # No user namespace maps the server's uid onto ours: the socket is
                # handed to that uid (its directory, 0700, keeps host users out).
                os.chown(self._egress.path, profile.uid, profile.uid)
        launcher = self._take_launcher()
        if launcher is not None:
            try:
                command = self._bundle(launcher.box, program, env, cwd)
                if launcher.run(command, _RUNSC_ENV):
                    self._delete_on_exit(launcher.box)
                    return launcher.proc
            finally:
                launcher.discard()  # unused, it exits; its box goes with it
        box = self._new_box()
        try:
            command = self._bundle(box, program, env, cwd)
            options = spawn_options()
            join = box.cgroup.join_preexec() if box.cgroup is not None else None
            proc = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=_RUNSC_ENV,
                limit=_LIMIT,
                start_new_session=True,
                # runsc's sandbox is --attached: it dies with ``runsc run``, which dies
                # with the gateway.
                preexec_fn=chain(options.pop("preexec_fn", None), die_with_parent, join),
                **options,
            )
        except BaseException:
            await box.close()
            raise
        self._delete_on_exit(box)
        self._watch(proc, box)
        return proc

    def _bundle(
        self, box: Box, program: Sequence[str], env: Mapping[str, str], cwd: str | None
    ) -> list[str]:
        """Write the sandbox's OCI bundle into ``box``; the ``runsc run`` command."""
        profile = self.profile
        secret_paths = box.write_secrets(profile.secrets, owner=profile.uid)
        child_env = sandbox_env(env, proxy=profile.egress_socket is not None)
        for name in secret_paths:
            child_env[f"{name}_FILE"] = f"{SECRETS_DIR}/{name}"
        rootfs = box.dir / "rootfs"
        rootfs.mkdir()
        for name, target in root_links().items():
            (rootfs / name).symlink_to(target)
        etc_files = write_etc(box.dir, profile.tcp_forwards)
        config = oci_config(profile, program, child_env, cwd, secret_paths, etc_files)
        (box.dir / "config.json").write_text(json.dumps(config))
        return [
            self._program,
            "--root",
            str(box.dir / "state"),
            "--network=none",
            # Limits are the gateway's cgroup, which runsc starts in (else runsc's own).
            *(["--ignore-cgroups"] if box.cgroup is not None else []),
            # Lets the sandbox connect to the one host socket bound into it.
            *(["--host-uds=open"] if profile.egress_socket is not None else []),
            "run",
            "--bundle",
            str(box.dir),
            box.name,
        ]

    def _delete_on_exit(self, box: Box) -> None:
        state = box.dir / "state"

        async def delete() -> None:
            # ``runsc run`` removes its container when it exits; what a kill of the
            # group left (its state files) is ``runsc delete --force``d.
            if not state.is_dir() or not any(state.iterdir()):
                return
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
        if box.cgroup is None:
            # No cgroup of ours (not writable here): runsc made its own, at the top of
            # each hierarchy; the box removes it after the delete.
            box.cgroup = Cgroup.made_by_runtime(box.name)
