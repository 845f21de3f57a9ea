"""Choosing and building the sandbox runner of each stdio upstream."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Callable
from functools import cache
from pathlib import Path

from wardgate.config.model import StdioUpstreamConfig
from wardgate.config.sandboxing import SandboxSettings
from wardgate.errors import ConfigError
from wardgate.net.egress import EgressProxy, EgressRules
from wardgate.telemetry.events import GatewayEvent
from wardgate.upstream._box import default_root
from wardgate.upstream.bwrap import BubblewrapRunner
from wardgate.upstream.profile import SandboxProfile
from wardgate.upstream.sandbox import PlainProcessRunner, Sandbox
from wardgate.upstream.tcp_egress import plan_tcp_forwards

__all__ = ["build_sandbox", "gvisor_works"]

log = logging.getLogger("wardgate.sandbox")
_MIB = 1024 * 1024


@cache
def gvisor_works() -> bool:
    """Whether ``runsc`` can run a sandbox on this host (probed once: ``runsc do true``)."""
    runsc = shutil.which("runsc")
    if runsc is None:
        return False
    try:
        done = subprocess.run(
            [runsc, "--network=none", "do", "true"],
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def build_sandbox(
    name: str,
    config: StdioUpstreamConfig,
    settings: SandboxSettings,
    *,
    secrets: dict[str, bytes] | None = None,
    emit: Callable[[GatewayEvent], None] | None = None,
) -> Sandbox:
    """The runner for upstream ``name``; says at start-up which one it is.

    Raises:
        ConfigError: the requested runner cannot run on this host.
    """
    if config.sandbox == "insecure-none":
        return PlainProcessRunner()
    root = Path(settings.state_dir) if settings.state_dir else default_root()
    egress: EgressProxy | None = None
    if config.egress or config.egress_tcp:
        # A TCP pair is a CONNECT the forwarder makes: one allow-list, the same checks.
        rules = EgressRules.parse(config.egress + config.egress_tcp, config.egress_allow_addresses)
        # Named <pid>-...: the start-up sweep removes it once this gateway is gone.
        path = root / f"{os.getpid()}-egress-{name}" / "egress.sock"
        egress = EgressProxy(name, rules, path, emit)
        log.info(
            "upstream %s: egress only to %s",
            name,
            ", ".join([*config.egress, *(f"tcp {p}" for p in config.egress_tcp)]),
        )
    limits = config.sandbox_limits
    profile = SandboxProfile(
        upstream=name,
        read_only=config.read_only_paths,
        scratch_bytes=limits.scratch_mib * _MIB,
        memory_bytes=limits.memory_mib * _MIB,
        pids=limits.pids,
        cpu=limits.cpu,
        egress_socket=egress.path if egress is not None else None,
        secrets=secrets or {},
        tcp_forwards=plan_tcp_forwards(config.egress_tcp),
    )
    kind = config.sandbox
    if kind in ("auto", "gvisor"):
        from wardgate.upstream.gvisor import GVisorRunner

        usable = gvisor_works() and GVisorRunner.supports(profile)
        if kind == "gvisor" and not usable:
            raise ConfigError(f"upstreams.{name}: sandbox 'gvisor' does not work on this host")
        if usable:
            log.info("upstream %s: sandbox gvisor (runsc)", name)
            return GVisorRunner(profile, root=root, egress=egress)
    log.info("upstream %s: sandbox bubblewrap (pid %d)", name, os.getpid())
    return BubblewrapRunner(profile, root=root, egress=egress)
