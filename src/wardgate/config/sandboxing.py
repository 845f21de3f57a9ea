"""Sandbox keys of a stdio upstream, and the checks that refuse unsafe ones at start-up."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Literal

from pydantic import Field, field_validator

from wardgate.config._base import StrictModel as _Strict

__all__ = [
    "DEFAULT_ALLOWED_HOST_PATHS",
    "PerCallSettings",
    "SandboxKind",
    "SandboxLimits",
    "SandboxSettings",
    "check_egress",
    "check_host_path",
]

#: Host paths an operator may bind read-only without widening ``allowed_host_paths``.
DEFAULT_ALLOWED_HOST_PATHS = ("/usr", "/opt", "/srv", "/etc/ssl", "/etc/ca-certificates")
#: Never bound into a sandbox, whatever ``allowed_host_paths`` says.
_FORBIDDEN = (
    "/proc",
    "/sys",
    "/dev",
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/var/run/containerd",
    "/run/containerd",
    "/var/run/crio",
    "/run/podman",
    "/var/lib/docker",
    "/var/lib/kubelet",
    "/etc/shadow",
    "/root/.ssh",
)


def _under(path: PurePosixPath, prefix: str) -> bool:
    return path == PurePosixPath(prefix) or PurePosixPath(prefix) in path.parents


def check_host_path(value: str, allowed: tuple[str, ...]) -> str:
    """A host path the operator wants bound read-only into a sandbox.

    Raises:
        ValueError: relative, with ``..``, the Docker (or another runtime's) socket,
            ``/proc``, ``/sys``, ``/dev``, ``/``, or outside ``allowed``.
    """
    path = PurePosixPath(value)
    if not path.is_absolute() or ".." in path.parts:
        raise ValueError(f"{value!r}: must be an absolute path without '..'")
    if str(path) == "/":
        raise ValueError("'/': the host's root may not be mounted into a sandbox")
    if path.name.endswith(".sock") and "docker" in path.name:
        raise ValueError(f"{value!r}: a Docker socket may never be mounted into a sandbox")
    for bad in _FORBIDDEN:
        if _under(path, bad):
            raise ValueError(f"{value!r}: {bad} may never be mounted into a sandbox")
        if _under(PurePosixPath(bad), str(path)):
            raise ValueError(f"{value!r} would expose {bad} in a sandbox")
    if not any(_under(path, prefix) for prefix in allowed):
        raise ValueError(f"{value!r} is outside the allowed host paths {list(allowed)}")
    return str(path)


class SandboxSettings(_Strict):
    """Gateway-wide sandbox settings (``[sandbox]``)."""

    #: Host paths (and everything under them) that upstreams may bind read-only.
    allowed_host_paths: tuple[str, ...] = DEFAULT_ALLOWED_HOST_PATHS
    #: Where sandbox state (secret files) lives; default: a directory on /dev/shm.
    state_dir: str | None = None

    @field_validator("allowed_host_paths")
    @classmethod
    def _no_forbidden(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            check_host_path(item, (item,))
        return value


SandboxKind = Literal["auto", "gvisor", "bubblewrap", "insecure-none"]


class SandboxLimits(_Strict):
    """Per-upstream sandbox limits (bytes in MiB)."""

    scratch_mib: int = Field(64, ge=1, le=65_536, strict=True)
    memory_mib: int = Field(512, ge=16, le=1_048_576, strict=True)
    pids: int = Field(128, ge=4, le=65_536, strict=True)
    #: CPU time per wall-clock time for the whole sandbox, in cores (0.5: half a core).
    cpu: float = Field(1.0, ge=0.01, le=64.0)


class PerCallSettings(_Strict):
    """``[upstreams.NAME.per_call]``: run ``tools/call`` in a fresh sandbox per call."""

    #: Tools whose every call gets a sandbox of its own; ``["*"]``: every tool.
    tools: tuple[str, ...] = Field(min_length=1)
    #: Sandboxes kept started and past the MCP handshake, ready for the next call.
    warm_pool: int = Field(2, ge=0, le=16, strict=True)
    #: Most per-call sandboxes running calls at once (the warm pool comes on top).
    max_concurrent: int = Field(4, ge=1, le=256, strict=True)
    #: How long a call over ``max_concurrent`` waits for a sandbox before it is refused
    #: (``wardgate.upstream_busy``).
    wait_seconds: float = Field(5.0, ge=0, le=60)

    def covers(self, tool: object) -> bool:
        """Does a call of ``tool`` get a sandbox of its own?"""
        return "*" in self.tools or (isinstance(tool, str) and tool in self.tools)


def check_egress(value: str) -> str:
    """One ``host:port`` egress entry (an FQDN or IP literal, a port).

    Raises:
        ValueError: not ``host:port``, or a port out of range.
    """
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r}: must be host:port")
    if any(c in host for c in "/@ ") or host.startswith("*"):
        raise ValueError(f"{value!r}: must be an exact host name (no wildcards)")
    return f"{host.strip('[]').lower().rstrip('.')}:{int(port)}"
