"""The bubblewrap runner: each server in its own user, pid, ipc, uts, cgroup and network
namespaces, all capabilities dropped, a read-only view of ``/usr`` and of the paths
the operator lists, a size-bounded tmpfs on ``/tmp``, as an unprivileged uid.

Memory and pids are bounded by a cgroup per sandbox when the host lets the gateway
make one (else by rlimits per process). The network namespace has only loopback; a
server allowed egress reaches the gateway's egress proxy through a unix socket bound
into the sandbox, via a small forwarder (``_forwarder.py``) that runs in the sandbox.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from wardgate.upstream._box import SECRETS_DIR, Box, RunnerBase
from wardgate.upstream._cgroup import Cgroup, rlimit_preexec
from wardgate.upstream._preexec import chain
from wardgate.upstream._seccomp import filter_bytes
from wardgate.upstream.profile import SandboxProfile, resolve_program, sandbox_env
from wardgate.upstream.spawn import spawn_options
from wardgate.upstream.tcp_egress import write_etc

__all__ = [
    "EGRESS_SOCKET",
    "FORWARDER",
    "FORWARDER_IN",
    "BubblewrapRunner",
    "bwrap_argv",
    "forwarder_argv",
]

log = logging.getLogger("wardgate.sandbox")
_LIMIT = 64 * 1024 * 1024
FORWARDER = Path(__file__).with_name("_forwarder.py")
EGRESS_SOCKET = "/run/wardgate/egress.sock"
FORWARDER_IN = "/run/wardgate/forward.py"


def bwrap_argv(
    bwrap: str,
    profile: SandboxProfile,
    argv: Sequence[str],
    cwd: str | None,
    secret_paths: Mapping[str, str],
    seccomp_fd: int | None = None,
    etc_files: Mapping[str, str] | None = None,
    *,
    new_netns: bool = True,
) -> list[str]:
    """The full ``bwrap`` command line for ``argv`` under ``profile``; ``etc_files``
    (sandbox path -> host path, from :func:`~wardgate.upstream.tcp_egress.write_etc`)
    are bound read-only.

    ``new_netns=False``: the caller already runs bwrap in a network namespace made for
    this sandbox alone (a launcher's, ``_prelaunch.py``); bwrap makes every other one.
    """
    unshare = (
        ["--unshare-all"]  # user, ipc, pid, net, uts, cgroup namespaces
        if new_netns
        else [
            "--unshare-user-try",
            "--unshare-ipc",
            "--unshare-pid",
            "--unshare-uts",
            "--unshare-cgroup-try",
        ]
    )
    args = [
        bwrap,
        *unshare,
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--uid",
        str(profile.uid),
        "--gid",
        str(profile.uid),
        "--hostname",
        "sandbox",
        "--ro-bind",
        "/usr",
        "/usr",
    ]
    for link in ("bin", "lib", "lib64", "sbin"):
        host = Path("/") / link
        if host.is_symlink():
            args += ["--symlink", str(host.readlink()), f"/{link}"]
        elif host.is_dir():
            args += ["--ro-bind", str(host), f"/{link}"]
    # The scratch tmpfs first: a listed path under /tmp is bound over it, not hidden.
    args += ["--size", str(profile.scratch_bytes), "--tmpfs", "/tmp"]  # noqa: S108
    for path in profile.read_only:
        args += ["--ro-bind", path, path]
    args += ["--proc", "/proc", "--dev", "/dev"]
    if secret_paths:
        args += ["--tmpfs", SECRETS_DIR]
        for name, source in secret_paths.items():
            args += ["--ro-bind", source, f"{SECRETS_DIR}/{name}"]
        args += ["--remount-ro", SECRETS_DIR]
    if profile.egress_socket is not None:
        args += ["--ro-bind", str(FORWARDER), FORWARDER_IN]
        args += ["--bind", profile.egress_socket, EGRESS_SOCKET]
    for dest, source in (etc_files or {}).items():
        args += ["--ro-bind", source, dest]
    if seccomp_fd is not None:
        args += ["--seccomp", str(seccomp_fd)]
    args += ["--remount-ro", "/", "--chdir", cwd or "/tmp", "--"]  # noqa: S108
    return args + forwarder_argv(profile) + list(argv)


def forwarder_argv(profile: SandboxProfile) -> list[str]:
    """What runs the server under the in-sandbox forwarder (nothing without egress)."""
    if profile.egress_socket is None:
        return []
    tcp = [arg for forward in profile.tcp_forwards for arg in ("--tcp", forward.spec)]
    return [sys.executable, "-I", "-S", FORWARDER_IN, EGRESS_SOCKET, *tcp, "--"]


def _child_env(
    profile: SandboxProfile, env: Mapping[str, str], secret_paths: Mapping[str, str]
) -> dict[str, str]:
    child_env = sandbox_env(env, proxy=profile.egress_socket is not None)
    for name in secret_paths:
        child_env[f"{name}_FILE"] = f"{SECRETS_DIR}/{name}"
    return child_env


def _seccomp_fd(directory: Path) -> int | None:
    """A descriptor bwrap reads the seccomp filter from (None: no filter for this arch)."""
    program = filter_bytes()
    if program is None:
        return None
    path = directory / "seccomp.bpf"
    path.write_bytes(program)
    return os.open(path, os.O_RDONLY)


class BubblewrapRunner(RunnerBase):
    """A :class:`~wardgate.upstream.sandbox.Sandbox` running servers under ``bwrap``.

    A sandbox starts from the launcher made ahead for it (its cgroup joined, its own
    network namespace made: ``_prelaunch.py``) when one is ready, else directly.
    """

    program = "bwrap"
    name = "bubblewrap"
    launcher_netns = True

    def _seccomp_program(self) -> bytes | None:
        return filter_bytes()

    async def spawn(
        self, argv: Sequence[str], env: Mapping[str, str], cwd: str | None
    ) -> asyncio.subprocess.Process:
        """Start ``argv`` in a fresh sandbox (see the module docstring)."""
        profile = self.profile
        program = resolve_program(argv[0], env, cwd)
        if self._egress is not None:
            await self._egress.start()  # the socket must exist before bwrap binds it
        launcher = self._take_launcher()
        if launcher is not None:
            try:
                secret_paths = launcher.box.write_secrets(profile.secrets)
                command = bwrap_argv(
                    self._program,
                    profile,
                    [program, *argv[1:]],
                    cwd,
                    secret_paths,
                    launcher.seccomp_fd,
                    write_etc(launcher.box.dir, profile.tcp_forwards),
                    new_netns=False,
                )
                if launcher.run(command, _child_env(profile, env, secret_paths)):
                    return launcher.proc
            finally:
                launcher.discard()  # unused, it exits; its box goes with it
        box = Box(self._root, profile.upstream)
        seccomp_fd: int | None = None
        try:
            secret_paths = box.write_secrets(profile.secrets)
            child_env = _child_env(profile, env, secret_paths)
            box.cgroup = Cgroup.create(
                box.name, profile.memory_bytes, profile.pids, cpu=profile.cpu
            )
            limits = (
                box.cgroup.join_preexec()
                if box.cgroup is not None
                else rlimit_preexec(profile.memory_bytes)
            )
            options = spawn_options()
            seccomp_fd = _seccomp_fd(box.dir)
            keep: Callable[[], None] | None = None
            if seccomp_fd is not None:
                options["pass_fds"] = (seccomp_fd,)
                fd = seccomp_fd

                def keep() -> None:  # after cloexec_above_stdio on uvloop
                    os.set_inheritable(fd, True)

            preexec = chain(options.pop("preexec_fn", None), keep, limits)
            command = bwrap_argv(
                self._program,
                profile,
                [program, *argv[1:]],
                cwd,
                secret_paths,
                seccomp_fd,
                write_etc(box.dir, profile.tcp_forwards),
            )
            proc = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=child_env,
                limit=_LIMIT,
                start_new_session=True,
                preexec_fn=preexec,
                **options,
            )
        except BaseException:
            await box.close()
            raise
        finally:
            if seccomp_fd is not None:
                os.close(seccomp_fd)
        self._watch(proc, box)
        return proc
