"""What a sandboxed server may see and spend: one :class:`SandboxProfile` per upstream.

The runners (:mod:`wardgate.upstream.bwrap`, :mod:`wardgate.upstream.gvisor`) turn a
profile into their own mounts and limits; both build the server's environment with
:func:`sandbox_env`, from scratch: nothing of the gateway's environment goes in.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from wardgate.upstream.tcp_egress import TcpForward

__all__ = [
    "FORBIDDEN_ENV",
    "SANDBOX_PATH",
    "SandboxProfile",
    "forbidden_env_name",
    "resolve_program",
    "sandbox_env",
]

#: PATH inside a sandbox; the program itself is resolved on the host first.
SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"
#: Never set in a sandboxed server, whatever the config says: credentials travel as files.
FORBIDDEN_ENV = re.compile(
    r"^(VAULT_.*|AWS_.*|GOOGLE_APPLICATION_CREDENTIALS|GOOGLE_.*CREDENTIALS.*|AZURE_.*"
    r"|LD_PRELOAD|LD_LIBRARY_PATH|LD_AUDIT|PYTHONPATH|PYTHONSTARTUP|NODE_OPTIONS"
    r"|HTTPS?_PROXY|ALL_PROXY|NO_PROXY)$",
    re.IGNORECASE,
)


def forbidden_env_name(name: str) -> bool:
    """Whether ``name`` may never be set in a sandboxed server's environment."""
    return FORBIDDEN_ENV.match(name) is not None


@dataclass(frozen=True, slots=True)
class SandboxProfile:
    """Mounts and limits of one sandboxed server.

    ``read_only`` host paths are bound read-only at the same path (the server's
    interpreter, its packages); ``/usr`` always is. ``scratch_bytes`` sizes the one
    writable place, a tmpfs on ``/tmp``. ``memory_bytes`` and ``pids`` bound the whole
    sandbox (cgroups where the host lets us, else rlimits); so does ``cpu`` (cgroups
    only). ``uid`` is the server's user inside the sandbox (never 0).
    """

    upstream: str = "server"
    read_only: tuple[str, ...] = ()
    scratch_bytes: int = 64 * 1024 * 1024
    memory_bytes: int = 512 * 1024 * 1024
    pids: int = 128
    #: CPU time the whole sandbox may use per wall-clock time, in cores; None: unbounded.
    cpu: float | None = 1.0
    uid: int = 65534
    #: Host path of the egress proxy socket for this server; None: no network at all.
    egress_socket: str | None = None
    #: Secret name -> value; each becomes a 0400 file ``/run/secrets/NAME`` in the
    #: sandbox, named to the server by ``NAME_FILE`` (the value never is in the env).
    secrets: Mapping[str, bytes] = field(default_factory=dict)
    #: Raw TCP pairs (``egress_tcp``) the forwarder listens for in the sandbox
    #: (:mod:`wardgate.upstream.tcp_egress`); needs ``egress_socket``.
    tcp_forwards: tuple[TcpForward, ...] = ()


def sandbox_env(extra: Mapping[str, str], *, proxy: bool) -> dict[str, str]:
    """The server's environment, from scratch; forbidden names are dropped.

    With ``proxy``, the proxy variables point at the in-sandbox forwarder.
    """
    scratch = "/tmp"  # noqa: S108 - the sandbox's own tmpfs
    env = {"PATH": SANDBOX_PATH, "HOME": scratch, "LANG": "C.UTF-8", "TMPDIR": scratch}
    env.update({k: v for k, v in extra.items() if not forbidden_env_name(k)})
    if proxy:
        url = "http://127.0.0.1:3128"
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            env[name] = url
    return env


def resolve_program(argv0: str, env: Mapping[str, str], cwd: str | None) -> str:
    """The absolute host path of the program: the sandbox has no PATH of the host's.

    Raises:
        FileNotFoundError: not found.
    """
    if "/" in argv0:
        path = Path(cwd) / argv0 if cwd else Path(argv0)
        return str(path.absolute())
    found = shutil.which(argv0, path=env.get("PATH", os.environ.get("PATH", os.defpath)))
    if found is None:
        raise FileNotFoundError(argv0)
    return str(Path(found).absolute())
