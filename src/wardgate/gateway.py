"""Assemble a running gateway from its configuration."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping, Sequence

from wardgate.config.identity import RouteAuthConfig
from wardgate.config.limits import LimitsConfig
from wardgate.config.model import (
    GatewayConfig,
    HttpUpstreamConfig,
    SealedSessionsConfig,
    SseUpstreamConfig,
    StdioUpstreamConfig,
    UpstreamConfig,
)
from wardgate.core.pipeline import Guard, Pipeline
from wardgate.edge.app import EdgeApp
from wardgate.edge.auth import EdgeAuth
from wardgate.edge.cors import CorsPolicy
from wardgate.edge.jwe import GatewayJweKey
from wardgate.edge.legacy_sse import LegacySseEndpoint
from wardgate.edge.origin import OriginPolicy
from wardgate.edge.streamable import StreamableHttpEndpoint
from wardgate.errors import ConfigError
from wardgate.guards.assembly import GuardAssembly
from wardgate.guards.scopes import ScopeGuard
from wardgate.guards.tool_access import ToolAccessGuard
from wardgate.limits import Limits
from wardgate.limits.build import build_store
from wardgate.routing.federated import FederatedRoute
from wardgate.routing.propagation import Propagation
from wardgate.routing.route import Member, Route
from wardgate.routing.sealed import SealKeys, SessionSealer, load_keys
from wardgate.routing.sessions import SessionStore
from wardgate.secrets import EnvSource, SecretSource, resolve_secrets
from wardgate.secrets.encrypted_file import open_file_source
from wardgate.telemetry.events import EventBus, EventSink
from wardgate.telemetry.setup import Telemetry
from wardgate.telemetry.sinks import JsonLinesSink
from wardgate.upstream.http import HttpUpstream
from wardgate.upstream.runners import build_sandbox
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

    The stdio command was checked when the config was validated (with its line).
    """
    if isinstance(config, StdioUpstreamConfig):
        return StdioUpstream(
            name,
            config.command,
            sandboxes.get(f"upstream:{name}") or sandboxes[config.sandbox],
            env=config.env,
            cwd=config.cwd,
            request_timeout=config.request_timeout_seconds,
            max_processes=config.max_processes,
            idle_seconds=config.idle_seconds,
            max_json_depth=max_json_depth,
            start=config.start,
            per_call=config.per_call,
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


def _propagation(config: UpstreamConfig) -> Propagation:
    return Propagation(
        trace=config.propagate.trace,
        decision_id=config.propagate.decision_id,
        # Only HTTP upstreams see per-request headers; the others get ``_meta``.
        via_meta=not isinstance(config, HttpUpstreamConfig),
    )


class Gateway:
    """Routes, upstreams and sessions of one gateway process; ``app`` is its ASGI app."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        sandboxes: Mapping[str, Sandbox] | None = None,
        sinks: Sequence[EventSink] | None = None,
        extra_guards: Mapping[str, Sequence[Guard]] | None = None,
    ) -> None:
        """``extra_guards`` adds the embedder's own guards to routes, by route name,
        after the configured ones (last on requests, first on replies)."""
        self.config = config
        # Embedders (tests) may pass runners by kind; otherwise each stdio upstream gets
        # its own runner, built from its config (docs/sandbox.md).
        boxes = dict(sandboxes or {"insecure-none": PlainProcessRunner()})
        self.sandboxes = boxes
        if sandboxes is None:
            sources: dict[str, SecretSource] = {"env": EnvSource()}
            if config.secrets.file is not None:
                sources["file"] = open_file_source(config.secrets)
            for name, up in config.upstreams.items():
                if isinstance(up, StdioUpstreamConfig):
                    boxes[f"upstream:{name}"] = build_sandbox(
                        name,
                        up,
                        config.sandbox,
                        secrets=resolve_secrets(up.secrets, sources, f"upstreams.{name}"),
                        # Egress refusals are events; the bus is made just below.
                        emit=lambda event: self.events.emit(event),
                    )
        if sinks is None:
            sinks = [JsonLinesSink()] if config.log.events else []
        self.telemetry = Telemetry(config.telemetry, config.routes)
        self.events = EventBus([*sinks, *self.telemetry.sinks])
        self.sessions = SessionStore(
            idle_timeout=config.server.session_idle_seconds,
            max_sessions=config.server.max_sessions,
            max_per_principal=config.server.max_sessions_per_principal,
            sweep_interval=config.server.session_sweep_seconds,
            sealer=_sealer(config.server.sealed_sessions),
            emit=self.events.emit,
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
                emit=self.events.emit,
            )
            if config.auth is not None
            else None
        )
        self.guards = GuardAssembly(config)
        self.limits = (
            Limits(config.limits, self.events, observer=self.telemetry.metrics)
            if config.limits is not None
            else None
        )
        self.routes: dict[str, Route] = {}
        for name, rc in config.routes.items():
            members = [
                Member(rc.prefix_of(u), self.upstreams[u], _propagation(config.upstreams[u]))
                for u in rc.upstreams
            ]
            # The design's order: authorize (policy, scopes, tool access), then the
            # content guards (redact · output · integrity · validate), then limits.
            guards: list[Guard] = [*self.telemetry.first_guards()]
            guards.extend(self.guards.authorize(name, rc))
            if rc.auth != RouteAuthConfig():
                if self.auth is None:
                    raise ConfigError(f"routes.{name}.auth: needs an [auth] section")
                a = rc.auth
                guards.append(ScopeGuard(a.required_scopes, a.tool_scopes, a.mfa_amr, a.acr_values))
            guards.append(ToolAccessGuard(rc.tools.allow, rc.tools.deny))
            guards.extend(self.guards.content(rc))
            if self.limits is not None:
                # Limit last: only a call that may run spends a token, a slot or budget.
                guards.extend(self.limits.guards_for(name))
            guards.extend((extra_guards or {}).get(name, ()))
            guards.extend(self.telemetry.last_guards())
            kind = FederatedRoute if len(members) > 1 else Route
            self.routes[name] = kind(
                name,
                members,
                Pipeline(guards, events=self.events),
                self.sessions,
                separator=rc.separator,
                isolation=rc.isolation,
            )
        server = config.server
        self.jwe = (
            GatewayJweKey.load(server.jwe.key_file, server.jwe.signing_key_file)
            if server.jwe is not None
            else None
        )
        self.app = EdgeApp(
            {
                n: StreamableHttpEndpoint(
                    r,
                    self.sessions,
                    server.max_body_bytes,
                    self.auth,
                    self.jwe,
                    server.jwe.required if server.jwe else False,
                    server.client_send_timeout_seconds,
                    server.max_json_depth,
                )
                for n, r in self.routes.items()
            },
            {
                n: LegacySseEndpoint(r, server.max_body_bytes, server.max_json_depth)
                for n, r in self.routes.items()
            }
            # Legacy SSE cannot seal its stream: where sealing is required it is not served.
            if server.legacy_sse and not (server.jwe is not None and server.jwe.required)
            else {},
            OriginPolicy(server.allowed_origins, server.allowed_hosts, server.loopback),
            self.auth,
            self.jwe,
            cors=CorsPolicy(server.cors_origins),
        )
        self.telemetry.attach(self)

    async def start(self) -> None:
        await self.telemetry.start()
        # The policy first: a policy that does not load never starts the gateway.
        await self.guards.start()
        await self.sessions.start()
        if self.limits is not None:
            await self.limits.start()
        if self.auth is not None:
            await self.auth.start()
        await self._prepare_sandboxes()
        for upstream in self.upstreams.values():
            await upstream.start()

    async def _prepare_sandboxes(self) -> None:
        """Have each sandbox runner make its first launcher now (its cgroup joined, its
        network namespace made), so that the first session's sandbox starts as fast as
        the next ones. A runner that cannot (the host does not let it) starts its
        sandboxes directly, with the same profile: never a reason not to start."""
        preparing = [
            prepare()
            for box in self.sandboxes.values()
            if (prepare := getattr(box, "prepare", None)) is not None
        ]
        results = await asyncio.gather(*preparing, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                log.warning("a sandbox runner could not prepare a launcher: %r", result)

    async def aclose(self) -> None:
        await self.sessions.aclose()
        await self.guards.aclose()
        if self.auth is not None:
            await self.auth.aclose()
        for upstream in self.upstreams.values():
            try:
                await upstream.aclose()
            except Exception:
                log.exception("closing upstream %s failed", upstream.name)
        # The runners after their servers: egress proxies and leftover sandbox state.
        for name, box in self.sandboxes.items():
            closer = getattr(box, "aclose", None)
            if closer is None:
                continue
            try:
                await closer()
            except Exception:
                log.exception("closing sandbox runner %s failed", name)
        if self.limits is not None:
            await self.limits.aclose()
        await self.telemetry.aclose()
        for sink in self.events.sinks:
            if isinstance(sink, JsonLinesSink):
                sink.flush()  # the last loop step's lines


def _sealer(config: SealedSessionsConfig | None) -> SessionSealer | None:
    """The fleet's session sealer, when ``[server.sealed_sessions]`` is set.

    Raises:
        ConfigError: a key variable is unset or malformed.
    """
    if config is None:
        return None
    replica = config.replica or os.environ.get("WARDGATE_REPLICA") or socket.gethostname()
    replica = "".join(c for c in replica if c.isalnum() or c in "-_")[:32] or "replica"
    try:
        keys = SealKeys(load_keys(config.keys))
    except ValueError as exc:
        raise ConfigError(f"server.sealed_sessions.keys: {exc}") from None
    store = build_store(LimitsConfig(store="redis", redis=config.redis))
    return SessionSealer(
        keys,
        store,
        lifetime=config.lifetime_seconds,
        replica=replica,
        recheck_seconds=config.revocation_recheck_seconds,
    )
