"""The configuration schema. Unknown keys are errors; every value is checked."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from wardgate.config.guards import ContentConfig, ContentRouteConfig, PolicyConfig
from wardgate.config.identity import AuthConfig, JweConfig, RouteAuthConfig, TlsConfig

__all__ = [
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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8787, ge=0, le=65535)
    #: Origins allowed to call (exact ``scheme://host[:port]``). Empty: loopback origins.
    allowed_origins: tuple[str, ...] = ()
    #: Host header values accepted. Empty: loopback names when bound to loopback, else any.
    allowed_hosts: tuple[str, ...] = ()
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)
    session_idle_seconds: float = Field(1800.0, gt=0)
    max_sessions: int = Field(10_000, ge=1)
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

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not value:
            raise ValueError("host must not be empty")
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
    #: How the process is isolated. ``insecure-none`` runs it unsandboxed and must be
    #: chosen explicitly; the real sandboxes arrive with their own issue.
    sandbox: Literal["insecure-none"]


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
    #: Keys written here replace the gateway-wide ``[content]`` ones for this route.
    content: ContentRouteConfig | None = None

    @model_validator(mode="after")
    def _prefixes_known(self) -> RouteConfig:
        unknown = set(self.prefixes) - set(self.upstreams)
        if unknown:
            raise ValueError(f"prefixes name upstreams not in this route: {sorted(unknown)}")
        if len(set(self.upstreams)) != len(self.upstreams):
            raise ValueError("an upstream is listed twice")
        return self

    def prefix_of(self, upstream: str) -> str:
        return self.prefixes.get(upstream, upstream)


class GatewayConfig(_Strict):
    server: ServerConfig = ServerConfig()
    log: LogConfig = LogConfig()
    auth: AuthConfig | None = None
    upstreams: dict[Annotated[str, Field(pattern=_NAME)], UpstreamConfig]
    routes: dict[Annotated[str, Field(pattern=_NAME)], RouteConfig]
    #: Authorization as code; without it the routes' tool lists govern.
    policy: PolicyConfig | None = None
    content: ContentConfig = ContentConfig()

    @model_validator(mode="after")
    def _references(self) -> GatewayConfig:
        if not self.routes:
            raise ValueError("at least one route is needed")
        if self.auth is None and not self.server.loopback and not self.server.allow_anonymous:
            raise ValueError(
                "serving on a non-loopback address needs an [auth] section "
                "(or server.allow_anonymous = true, which lets anyone call every tool)"
            )
        if self.auth is not None:
            self.auth.check_listener(self.server.loopback)
        for name, route in self.routes.items():
            for upstream in route.upstreams:
                if upstream not in self.upstreams:
                    raise ValueError(f"route {name!r} names unknown upstream {upstream!r}")
            prefixes = [route.prefix_of(u) for u in route.upstreams]
            if prefixes.count("") > 1:
                raise ValueError(f"route {name!r}: at most one upstream may have an empty prefix")
            named = [p for p in prefixes if p]
            for i, a in enumerate(named):
                for b in named[i + 1 :]:
                    if (
                        a.startswith(b + route.separator)
                        or b.startswith(a + route.separator)
                        or a == b
                    ):
                        raise ValueError(f"route {name!r}: prefixes {a!r} and {b!r} collide")
        return self
