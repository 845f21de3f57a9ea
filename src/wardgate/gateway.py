"""Assemble a running gateway from its configuration."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping

from wardgate.config.identity import RouteAuthConfig
from wardgate.config.model import (
    GatewayConfig,
    HttpUpstreamConfig,
    SseUpstreamConfig,
    StdioUpstreamConfig,
    UpstreamConfig,
)
from wardgate.core.pipeline import Pipeline, RequestGuard, ResponseGuard
from wardgate.edge.app import EdgeApp
from wardgate.edge.auth import EdgeAuth
from wardgate.edge.jwe import GatewayJweKey
from wardgate.edge.legacy_sse import LegacySseEndpoint
from wardgate.edge.origin import OriginPolicy
from wardgate.edge.streamable import StreamableHttpEndpoint
from wardgate.errors import ConfigError
from wardgate.guards.scopes import ScopeGuard
from wardgate.guards.tool_access import ToolAccessGuard
from wardgate.routing.federated import FederatedRoute
from wardgate.routing.route import Member, Route
from wardgate.routing.sessions import SessionStore
from wardgate.upstream.http import HttpUpstream
from wardgate.upstream.sandbox import PlainProcessRunner, Sandbox
from wardgate.upstream.seam import Upstream
from wardgate.upstream.sse_client import SseUpstream
from wardgate.upstream.stdio import StdioUpstream
from wardgate.wire.jsonrpc import DEFAULT_MAX_JSON_DEPTH

__all__ = ["Gateway", "build_upstream"]

log = logging.getLogger("wardgate")


def build_upstream(
    name: str,
    config: UpstreamConfig,
    sandboxes: Mapping[str, Sandbox],
    max_json_depth: int = DEFAULT_MAX_JSON_DEPTH,
) -> Upstream:
    """Make the upstream object a config entry describes (no I/O).

    Raises:
        ConfigError: the stdio command cannot be found.
    """
    if isinstance(config, StdioUpstreamConfig):
        if shutil.which(config.command[0]) is None:
            raise ConfigError(f"upstreams.{name}.command: {config.command[0]!r} not found on PATH")
        return StdioUpstream(
            name,
            config.command,
            sandboxes[config.sandbox],
            env=config.env,
            cwd=config.cwd,
            request_timeout=config.request_timeout_seconds,
        )
    if isinstance(config, HttpUpstreamConfig):
        return HttpUpstream(
            name,
            config.url,
            headers=config.headers,
            request_timeout=config.request_timeout_seconds,
            max_json_depth=max_json_depth,
            ca_file=config.ca_file,
        )
    if isinstance(config, SseUpstreamConfig):
        return SseUpstream(
            name,
            config.url,
            headers=config.headers,
            request_timeout=config.request_timeout_seconds,
            max_json_depth=max_json_depth,
        )
    raise ConfigError(f"upstreams.{name}: unknown transport")  # pragma: no cover


class Gateway:
    """Routes, upstreams and sessions of one gateway process; ``app`` is its ASGI app."""

    def __init__(
        self, config: GatewayConfig, *, sandboxes: Mapping[str, Sandbox] | None = None
    ) -> None:
        self.config = config
        boxes = dict(sandboxes or {"insecure-none": PlainProcessRunner()})
        self.sessions = SessionStore(
            idle_timeout=config.server.session_idle_seconds, max_sessions=config.server.max_sessions
        )
        self.upstreams = {
            name: build_upstream(name, up, boxes, config.server.max_json_depth)
            for name, up in config.upstreams.items()
        }
        self.auth = (
            EdgeAuth(
                config.auth,
                {
                    n: r.auth.failure_status
                    for n, r in config.routes.items()
                    if r.auth.failure_status
                },
            )
            if config.auth is not None
            else None
        )
        self.routes: dict[str, Route] = {}
        for name, rc in config.routes.items():
            members = [Member(rc.prefix_of(u), self.upstreams[u]) for u in rc.upstreams]
            guards: list[RequestGuard | ResponseGuard] = []
            if rc.auth != RouteAuthConfig():
                if self.auth is None:
                    raise ConfigError(f"routes.{name}.auth: needs an [auth] section")
                a = rc.auth
                guards.append(ScopeGuard(a.required_scopes, a.tool_scopes, a.mfa_amr, a.acr_values))
            guards.append(ToolAccessGuard(rc.tools.allow, rc.tools.deny))
            kind = FederatedRoute if len(members) > 1 else Route
            self.routes[name] = kind(
                name, members, Pipeline(guards), self.sessions, separator=rc.separator
            )
        server = config.server
        self.jwe = GatewayJweKey.load(server.jwe.key_file) if server.jwe is not None else None
        self.app = EdgeApp(
            {
                n: StreamableHttpEndpoint(
                    r,
                    self.sessions,
                    server.max_body_bytes,
                    self.auth,
                    self.jwe,
                    server.jwe.required if server.jwe else False,
                )
                for n, r in self.routes.items()
            },
            {n: LegacySseEndpoint(r, server.max_body_bytes) for n, r in self.routes.items()}
            if server.legacy_sse
            else {},
            OriginPolicy(server.allowed_origins, server.allowed_hosts, server.loopback),
            self.auth,
            self.jwe,
        )

    async def start(self) -> None:
        if self.auth is not None:
            await self.auth.start()
        for upstream in self.upstreams.values():
            await upstream.start()

    async def aclose(self) -> None:
        await self.sessions.aclose()
        if self.auth is not None:
            await self.auth.aclose()
        for upstream in self.upstreams.values():
            try:
                await upstream.aclose()
            except Exception:
                log.exception("closing upstream %s failed", upstream.name)
