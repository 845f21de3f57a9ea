"""The configuration schema. Unknown keys are errors; every value is checked, strictly.

Types are strict (pydantic strict mode): ``port = true`` is not a port, ``"1"`` is not a
number and ``1.5`` is not an integer; TOML arrays fill the tuple fields. Faults that span
keys (a route naming a missing upstream, a stdio command that does not exist) raise
:class:`ConfigFault`, which carries the key path so that the loader can name the line.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from wardgate.config._base import ConfigFault
from wardgate.config._base import StrictModel as _Strict
from wardgate.config.identity import AuthConfig, JweConfig, RouteAuthConfig, TlsConfig
from wardgate.config.limits import LimitsConfig, RedisConfig
from wardgate.config.policy_content import ContentConfig, ContentRouteConfig, PolicyConfig
from wardgate.config.sandboxing import (
    PerCallSettings,
    SandboxKind,
    SandboxLimits,
    SandboxSettings,
    check_egress,
    check_host_path,
)
from wardgate.config.secret_store import SecretsSettings
from wardgate.config.telemetry import TelemetryConfig
from wardgate.upstream.profile import forbidden_env_name
from wardgate.upstream.tcp_egress import plan_tcp_forwards

__all__ = [
    "ConfigFault",
    "GatewayConfig",
    "HttpUpstreamConfig",
    "LogConfig",
    "PropagateConfig",
    "RouteConfig",
    "ServerConfig",
    "SseUpstreamConfig",
    "StdioUpstreamConfig",
    "ToolAccessConfig",
    "UpstreamConfig",
]

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class SealedSessionsConfig(_Strict):
    """``[server.sealed_sessions]``: handshake-era session ids any replica can serve
    (see docs/fleet.md). Off unless present."""

    #: Names of environment variables, each holding a 32-byte key in base64 (never the
    #: key itself). The first seals; all open (rotation: add the new one first).
    keys: tuple[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")], ...] = Field(
        min_length=1, max_length=8
    )
    #: A sealed id is refused this long after its session opened (it cannot be renewed:
    #: MCP session ids never change).
    lifetime_seconds: float = Field(86400.0, gt=0, le=30 * 86400)
    #: This replica's name in the ids of sessions that cannot move (stdio members), for
    #: the load balancer to route on. Default: $WARDGATE_REPLICA, else the host name.
    replica: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,32}$")
    #: How long a replica serves a session it holds without checking again that no
    #: other replica DELETEd it. 0 (default): a Redis GET on every request, so a DELETE
    #: holds fleet-wide at once; more saves that round trip but lets a DELETEd session
    #: be served this long by replicas that held it.
    revocation_recheck_seconds: float = Field(0.0, ge=0, le=60)
    #: Where DELETEd sessions are listed for every replica (Redis shared by the fleet).
    redis: RedisConfig = RedisConfig()


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8787, ge=0, le=65535)
    #: Origins allowed to call (exact ``scheme://host[:port]``). Empty: loopback origins.
    allowed_origins: tuple[str, ...] = ()
    #: Host header values accepted. Empty: loopback names when bound to loopback, else any.
    allowed_hosts: tuple[str, ...] = ()
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)
    #: Deepest nesting of JSON arrays and objects accepted from clients and upstreams.
    #: At most 254: deeper JSON could be read but not serialised again to be relayed.
    max_json_depth: int = Field(64, ge=8, le=254)
    session_idle_seconds: float = Field(1800.0, gt=0)
    max_sessions: int = Field(10_000, ge=1)
    #: Handshake-era sessions (and, separately, legacy SSE streams) one principal may hold.
    max_sessions_per_principal: int = Field(100, ge=1)
    #: How often idle sessions and legacy SSE streams are swept.
    session_sweep_seconds: float = Field(60.0, gt=0, le=3600)
    #: Browser origins (exact ``scheme://host[:port]``) allowed cross-origin (CORS).
    #: Empty: none.
    cors_origins: tuple[str, ...] = ()
    #: Answer legacy HTTP+SSE (2024-11-05) clients on /sse/{route}.
    legacy_sse: bool = True
    #: Terminate TLS here (TLS 1.3, AES-256-GCM, X25519, SNI enforced by default).
    tls: TlsConfig | None = None
    #: Application-layer encryption of JSON-RPC bodies (off by default).
    jwe: JweConfig | None = None
    #: Serve without ``[auth]`` on a non-loopback address. Never do this in production.
    allow_anonymous: bool = False
    #: How long one write of a stream event may wait for a client that stopped reading.
    client_send_timeout_seconds: float = Field(30.0, gt=0, le=3600)
    # Listener bounds (edge/listener.py). Strict: ``true`` is not a number, "5" is not one.
    #: The whole request head must arrive within this (from accept, or the next request's
    #: first byte on a keep-alive connection).
    header_timeout_seconds: float = Field(10.0, gt=0, le=300, strict=True)
    #: The whole request body must arrive within this, from the end of the head.
    body_timeout_seconds: float = Field(30.0, gt=0, le=3600, strict=True)
    #: Request line and header fields, in bytes (431 beyond).
    max_header_bytes: int = Field(32 * 1024, ge=1024, le=1024 * 1024, strict=True)
    #: Header fields in one request (431 beyond).
    max_headers: int = Field(100, ge=8, le=10_000, strict=True)
    #: Open connections; at the cap a new one displaces the longest-waiting idle one.
    max_connections: int = Field(1000, ge=1, le=1_000_000, strict=True)
    #: Open connections from one client address (unset: no per-address cap).
    max_connections_per_ip: int | None = Field(None, ge=1, le=1_000_000, strict=True)
    #: Idle time allowed between requests on a keep-alive connection.
    keepalive_timeout_seconds: float = Field(5.0, gt=0, le=3600, strict=True)
    #: Requests served on one connection before it is closed.
    max_requests_per_connection: int = Field(1000, ge=1, le=10_000_000, strict=True)
    #: On SIGTERM/SIGINT, calls in flight get this long to finish before they are cut.
    shutdown_drain_seconds: float = Field(10.0, ge=0, le=3600, strict=True)
    #: Sealed session ids for a fleet behind a plain load balancer (off unless set).
    sealed_sessions: SealedSessionsConfig | None = None

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not value:
            raise ValueError("host must not be empty")
        return value

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for origin in value:
            parts = urlsplit(origin)
            if (
                parts.scheme not in ("http", "https")
                or not parts.hostname
                or parts.path not in ("", "/")
                or parts.query
                or parts.fragment
                or "@" in parts.netloc
            ):
                raise ValueError(
                    f"{origin!r} is not an origin (scheme://host[:port]); wildcards are refused"
                )
        return value

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


class LogConfig(_Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "text"] = "json"
    #: One JSON line per event on stderr (``call.ended`` is the access log; guard
    #: decisions, upstream failures, sessions). Written directly, not through logging.
    events: bool = True


class PropagateConfig(_Strict):
    """What of a call's context travels to this upstream (off: it is outside the gateway)."""

    #: The client's W3C ``traceparent`` / ``tracestate``.
    trace: bool = False
    #: The decision id (header ``wardgate-decision-id``; ``_meta`` on stdio).
    decision_id: bool = False


class _UpstreamBase(_Strict):
    request_timeout_seconds: float = Field(300.0, gt=0, le=86_400)
    propagate: PropagateConfig = PropagateConfig()


class StdioUpstreamConfig(_UpstreamBase):
    transport: Literal["stdio"]
    command: tuple[str, ...] = Field(min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    #: How the process is isolated (docs/sandbox.md): ``auto`` picks gVisor when it
    #: works on this host, else bubblewrap; ``insecure-none`` runs it unsandboxed and
    #: must be chosen explicitly.
    sandbox: SandboxKind = "auto"
    #: Host paths bound read-only into the sandbox (the interpreter, the packages);
    #: each must be under ``[sandbox] allowed_host_paths``.
    read_only_paths: tuple[str, ...] = ()
    sandbox_limits: SandboxLimits = SandboxLimits()
    #: ``host:port`` pairs the server may reach, through the gateway's egress proxy.
    egress: tuple[str, ...] = ()
    #: ``host:port`` pairs the server may reach by raw TCP (a database driver), each
    #: through a loopback listener in the sandbox and the same proxy checks.
    egress_tcp: tuple[str, ...] = ()
    #: Exact addresses the egress proxy may connect to although they are not public
    #: (a test site on loopback, a service in the VPC).
    egress_allow_addresses: tuple[str, ...] = ()
    #: Secret files: NAME -> source reference (``env:VAR``: the gateway's environment;
    #: ``file:NAME``: the ``[secrets]`` encrypted file).
    secrets: dict[Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]{0,63}$")], str] = Field(
        default_factory=dict
    )
    #: Never allowed; present so that a config asking for it is refused by name.
    privileged: bool = False

    @field_validator("privileged")
    @classmethod
    def _not_privileged(cls, value: bool) -> bool:
        if value:
            raise ValueError("privileged sandboxes are never allowed")
        return value

    @field_validator("env")
    @classmethod
    def _no_credentials_in_env(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if forbidden_env_name(name):
                raise ValueError(f"{name!r} may not be set for a server (use secrets)")
        return value

    @field_validator("egress")
    @classmethod
    def _egress(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(check_egress(v) for v in value)

    @field_validator("egress_tcp")
    @classmethod
    def _egress_tcp(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        pairs = tuple(check_egress(v) for v in value)
        plan_tcp_forwards(pairs)  # raises ValueError for the forwarder's own port
        return pairs

    @field_validator("egress_allow_addresses")
    @classmethod
    def _addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(str(ipaddress.ip_address(v)) for v in value)

    #: Most processes this upstream may run at once: shared (stateless) processes plus
    #: one per handshake-era session. Past it, the least recently used idle shared
    #: process is stopped, else the call is refused (``wardgate.upstream_busy``).
    max_processes: int = Field(16, ge=1, le=4096, strict=True)
    #: A shared process with no call for this long is stopped (restarted when needed).
    idle_seconds: float = Field(300.0, gt=0, le=86_400, strict=True)
    #: ``lazy``: nothing starts before the first call. ``eager``: at start-up, one
    #: spare sandbox is started for the next session and the per-call warm pool filled.
    start: Literal["lazy", "eager"] = "lazy"
    #: A fresh sandbox for every ``tools/call`` of the listed tools (docs/sandbox.md).
    per_call: PerCallSettings | None = None


def _check_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise ValueError("must not carry credentials; use headers")
    return value


class HttpUpstreamConfig(_UpstreamBase):
    transport: Literal["http"]
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    #: PEM file of the CA(s) that sign an https upstream's certificate; default: the
    #: system's trust store. Certificates and host names are always verified.
    ca_file: str | None = None

    _url = field_validator("url")(classmethod(lambda cls, v: _check_url(v)))


class SseUpstreamConfig(_UpstreamBase):
    transport: Literal["sse"]
    url: str
    headers: dict[str, str] = Field(default_factory=dict)

    _url = field_validator("url")(classmethod(lambda cls, v: _check_url(v)))


UpstreamConfig = Annotated[
    StdioUpstreamConfig | HttpUpstreamConfig | SseUpstreamConfig,
    Field(discriminator="transport"),
]


class ToolAccessConfig(_Strict):
    """Tool names (glob patterns) a route lets through. Deny wins over allow."""

    allow: tuple[str, ...] = ("*",)
    deny: tuple[str, ...] = ()


class RouteConfig(_Strict):
    upstreams: tuple[str, ...] = Field(min_length=1)
    #: Name prefix per upstream on federated routes; default: the upstream's name.
    #: One upstream may have ``""``: its names pass unprefixed.
    prefixes: dict[str, Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{0,64}$")]] = Field(
        default_factory=dict
    )
    separator: str = Field("__", pattern=r"^[A-Za-z0-9_.-]{1,4}$")
    tools: ToolAccessConfig = ToolAccessConfig()
    auth: RouteAuthConfig = RouteAuthConfig()
    #: Who may share a stdio server process on stateless calls: ``principal``,
    #: ``tenant`` (per principal when no tenant is known) or ``shared`` (everyone).
    isolation: Literal["principal", "tenant", "shared"] = "tenant"
    #: Keys written here replace the gateway-wide ``[content]`` ones for this route.
    content: ContentRouteConfig | None = None

    def prefix_of(self, upstream: str) -> str:
        return self.prefixes.get(upstream, upstream)


class GatewayConfig(_Strict):
    server: ServerConfig = ServerConfig()
    log: LogConfig = LogConfig()
    auth: AuthConfig | None = None
    upstreams: dict[Annotated[str, Field(pattern=_NAME)], UpstreamConfig]
    routes: dict[Annotated[str, Field(pattern=_NAME)], RouteConfig]
    #: Abuse controls (rate limits, quotas, concurrency, breakers); off unless present.
    limits: LimitsConfig | None = None
    #: Authorization as code; without it the routes' tool lists govern.
    policy: PolicyConfig | None = None
    content: ContentConfig = ContentConfig()
    #: Audit trail, traces, metrics and health; off unless present.
    telemetry: TelemetryConfig = TelemetryConfig()
    sandbox: SandboxSettings = SandboxSettings()
    #: The encrypted file ``file:NAME`` secrets come from.
    secrets: SecretsSettings = SecretsSettings()

    @model_validator(mode="after")
    def _references(self) -> GatewayConfig:
        # ConfigFault is not a ValueError: it leaves pydantic as is, with its key path.
        if not self.routes:
            raise ConfigFault(("routes",), "at least one route is needed")
        if self.auth is None and not self.server.loopback and not self.server.allow_anonymous:
            raise ConfigFault(
                ("server", "host"),
                "serving on a non-loopback address needs an [auth] section "
                "(or server.allow_anonymous = true, which lets anyone call every tool)",
            )
        if self.auth is not None:
            try:
                self.auth.check_listener(self.server.loopback)
            except ValueError as exc:
                raise ConfigFault(("auth", "public_url"), str(exc)) from None
        for name, upstream in self.upstreams.items():
            if isinstance(upstream, StdioUpstreamConfig):
                _check_command(name, upstream)
                _check_sandbox(name, upstream, self.sandbox)
                _check_secret_refs(name, upstream, self.secrets)
        if self.limits is not None:
            for unknown in sorted(set(self.limits.routes) - set(self.routes)):
                raise ConfigFault(("limits", "routes", unknown), "names no route")
        for name, route in self.routes.items():
            _check_route(name, route, self)
        return self


def _check_command(name: str, config: StdioUpstreamConfig) -> None:
    """The program must exist now: a route that cannot start is a bad config."""
    program = config.command[0]
    where = ("upstreams", name, "command")
    if "/" in program:
        # A relative path is taken from the child's working directory, as exec does.
        path = Path(config.cwd) / program if config.cwd else Path(program)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ConfigFault(where, f"{program!r} is not an executable file")
        return
    search = config.env.get("PATH", os.environ.get("PATH", os.defpath))
    if shutil.which(program, path=search) is None:
        raise ConfigFault(where, f"{program!r} not found on PATH")


def _check_sandbox(name: str, config: StdioUpstreamConfig, settings: SandboxSettings) -> None:
    """Refuse unsafe mounts (the Docker socket, /proc, /sys, paths outside the allowed set)."""
    for index, path in enumerate(config.read_only_paths):
        try:
            check_host_path(path, settings.allowed_host_paths)
        except ValueError as exc:
            raise ConfigFault(("upstreams", name, "read_only_paths", index), str(exc)) from None
    if config.sandbox == "insecure-none" and (config.egress or config.egress_tcp or config.secrets):
        raise ConfigFault(
            ("upstreams", name, "sandbox"),
            "egress and secrets need a sandbox (an unsandboxed process reaches everything)",
        )


def _check_secret_refs(name: str, config: StdioUpstreamConfig, settings: SecretsSettings) -> None:
    for secret, ref in config.secrets.items():
        try:
            settings.check_ref(ref)
        except ValueError as exc:
            raise ConfigFault(("upstreams", name, "secrets", secret), str(exc)) from None


def _check_route(name: str, route: RouteConfig, config: GatewayConfig) -> None:
    seen: set[str] = set()
    for upstream in route.upstreams:
        if upstream not in config.upstreams:
            raise ConfigFault(("routes", name, "upstreams"), f"unknown upstream {upstream!r}")
        if upstream in seen:
            raise ConfigFault(("routes", name, "upstreams"), f"{upstream!r} is listed twice")
        seen.add(upstream)
    for upstream in route.prefixes:
        if upstream not in seen:
            raise ConfigFault(
                ("routes", name, "prefixes", upstream), f"{upstream!r} is not in this route"
            )
    if route.auth != RouteAuthConfig() and config.auth is None:
        raise ConfigFault(("routes", name, "auth"), "needs an [auth] section")
    prefixes = [route.prefix_of(u) for u in route.upstreams]
    if prefixes.count("") > 1:
        raise ConfigFault(
            ("routes", name, "prefixes"), "at most one upstream may have an empty prefix"
        )
    named = [p for p in prefixes if p]
    for i, a in enumerate(named):
        for b in named[i + 1 :]:
            if a.startswith(b + route.separator) or b.startswith(a + route.separator) or a == b:
                raise ConfigFault(("routes", name, "prefixes"), f"prefixes {a!r} and {b!r} collide")
