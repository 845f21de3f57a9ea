"""The ``[telemetry]`` section: the audit trail, traces, metrics and health listener.

Everything is off unless configured; see docs/telemetry.md.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from wardgate.config._base import StrictModel as _Strict

__all__ = [
    "AuditConfig",
    "OtlpMetricsConfig",
    "SinkConfig",
    "TelemetryConfig",
    "TracingConfig",
    "UebaConfig",
]

#: Attribute keys replaced before export (fnmatch patterns, case-insensitive).
DEFAULT_REDACT_KEYS = (
    "*token*",
    "*key*",
    "*secret*",
    "*password*",
    "authorization",
    "cookie",
)


class AuditConfig(_Strict):
    """The tamper-evident audit trail (hash-chained JSON lines, sealed with Ed25519)."""

    path: str
    #: PEM Ed25519 private key that signs the seals (``wardgate audit keygen`` makes one).
    signing_key_file: str
    seal_every_records: int = Field(1000, ge=1, le=1_000_000, strict=True)
    seal_interval_seconds: float = Field(10.0, gt=0, le=86_400)
    max_file_bytes: int = Field(64 * 1024 * 1024, ge=4096, strict=True)
    queue_size: int = Field(65_536, ge=16, le=10_000_000, strict=True)
    #: fsync after every batch and seal (durable across power loss; slower).
    fsync: bool = False
    kinds: tuple[str, ...] = (
        "call.ended",
        "guard.decision",
        "policy.decision",
        "auth.failed",
        "session.opened",
        "session.closed",
        "ueba.alert",
    )


class TracingConfig(_Strict):
    """OpenTelemetry spans exported over OTLP (needs the ``otel`` extra)."""

    endpoint: str
    protocol: Literal["http/protobuf", "grpc"] = "http/protobuf"
    service_name: str = "wardgate"
    headers: dict[str, str] = Field(default_factory=dict)
    #: Spans waiting for export; past this they are dropped (and counted).
    max_queue: int = Field(8192, ge=16, le=1_000_000, strict=True)
    max_batch: int = Field(512, ge=1, le=100_000, strict=True)
    export_timeout_seconds: float = Field(5.0, gt=0, le=300)
    schedule_delay_seconds: float = Field(1.0, gt=0, le=300)
    redact_keys: tuple[str, ...] = DEFAULT_REDACT_KEYS
    #: A gRPC endpoint without TLS (``http://`` endpoints are always plaintext).
    insecure: bool = False


class OtlpMetricsConfig(_Strict):
    """The ``/metrics`` series, also pushed over OTLP at intervals (needs ``otel`` and
    ``metrics``)."""

    #: The full metrics URL for HTTP (``…/v1/metrics``); ``host:port`` or a URL for gRPC.
    endpoint: str
    protocol: Literal["http/protobuf", "grpc"] = "http/protobuf"
    service_name: str = "wardgate"
    headers: dict[str, str] = Field(default_factory=dict)
    interval_seconds: float = Field(15.0, gt=0, le=3600)
    export_timeout_seconds: float = Field(5.0, gt=0, le=300)
    #: A gRPC endpoint without TLS (``http://`` endpoints are always plaintext).
    insecure: bool = False


SinkType = Literal["syslog", "splunk_hec", "loki", "elastic", "datadog", "webhook"]


class SinkConfig(_Strict):
    """One SIEM destination (``[[telemetry.sinks]]``); see docs/telemetry.md."""

    type: SinkType
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    #: HTTP sinks: the endpoint (Splunk ``…/services/collector/event``, Loki
    #: ``…/loki/api/v1/push``, Elastic ``…/_bulk``, Datadog ``…/api/v2/logs``, a webhook).
    url: str | None = None
    #: Syslog: the receiver, TCP (RFC 6587 octet counting; TLS with ``tls``) or UDP.
    host: str | None = None
    port: int | None = Field(None, ge=1, le=65535, strict=True)
    protocol: Literal["tcp", "udp"] = "tcp"
    tls: bool = False
    ca_file: str | None = None
    format: Literal["rfc5424", "cef"] = "rfc5424"
    #: Environment variable holding the credential (HEC token, Datadog API key, Elastic
    #: ``ApiKey …`` value, Loki bearer token); never written in the file.
    token_env: str | None = None
    #: Webhook: environment variable holding the HMAC-SHA256 secret.
    hmac_secret_env: str | None = None
    index: str = "wardgate"
    kinds: tuple[str, ...] | None = None
    queue_size: int = Field(10_000, ge=1, le=10_000_000, strict=True)
    batch_size: int = Field(200, ge=1, le=100_000, strict=True)
    #: Directory where batches wait while the destination is down (none: they are dropped).
    spool_dir: str | None = None
    spool_max_bytes: int = Field(256 * 1024 * 1024, ge=4096, strict=True)
    backoff_max_seconds: float = Field(30.0, gt=0, le=3600)
    timeout_seconds: float = Field(5.0, gt=0, le=300)
    #: Loopback and private destinations are refused unless allowed (tests, sidecars).
    allow_loopback: bool = False
    allow_private: bool = False

    @model_validator(mode="after")
    def _shape(self) -> SinkConfig:
        from wardgate.config._base import ConfigFault

        if self.type == "syslog":
            if self.host is None or self.port is None:
                raise ConfigFault(("telemetry", "sinks", self.name), "syslog needs host and port")
            if self.tls and self.protocol == "udp":
                raise ConfigFault(("telemetry", "sinks", self.name), "TLS needs protocol tcp")
        elif self.url is None:
            raise ConfigFault(("telemetry", "sinks", self.name), f"{self.type} needs url")
        if self.type == "webhook" and self.hmac_secret_env is None:
            raise ConfigFault(("telemetry", "sinks", self.name), "a webhook needs hmac_secret_env")
        return self


UebaDetector = Literal[
    "impossible_travel", "token_continents", "scripting", "new_asn", "first_seen_tool"
]


class UebaConfig(_Strict):
    """Behaviour analytics (``[telemetry.ueba]``); state in the ``[limits]`` store when
    configured (shared by replicas), else in memory."""

    #: Where addresses are: the country + ASN database of the ``geoip`` extra, or none.
    geoip: Literal["geoip2fast", "none"] = "geoip2fast"
    impossible_travel: bool = True
    travel_kmh: float = Field(1000.0, gt=0)
    travel_min_km: float = Field(500.0, ge=0)
    token_continents: bool = True
    token_seconds: float = Field(300.0, gt=0)
    scripting: bool = True
    scripting_tools: int = Field(5, ge=1, le=1000, strict=True)
    scripting_seconds: float = Field(1.0, gt=0, le=3600)
    new_asn: bool = True
    first_seen_tool: bool = True
    #: How long a subject's known networks and tools are remembered.
    memory_days: float = Field(30.0, gt=0, le=3650)
    #: Refuse the subject's calls this long after an alert of a ``block_on`` detector
    #: (0: alert only).
    block_seconds: float = Field(0.0, ge=0, le=86_400 * 30)
    block_on: tuple[UebaDetector, ...] = ("impossible_travel", "token_continents", "scripting")
    #: After an alert of a ``revoke_on`` detector, end the call's session and refuse its
    #: credential this long, on every replica sharing the store (0: off). The handshake
    #: session (``Mcp-Session-Id``) is ended (its id answers 404 from then on; a sealed
    #: id is revoked fleet-wide); the token (by hash) is refused with 401, so a stateless
    #: client must authenticate again. The subject itself is not blocked (``block_*``).
    revoke_seconds: float = Field(0.0, ge=0, le=86_400 * 30)
    revoke_on: tuple[UebaDetector, ...] = ("impossible_travel", "token_continents")


class TelemetryConfig(_Strict):
    """``[telemetry]``: each part is off unless its table (or port) is present."""

    audit: AuditConfig | None = None
    tracing: TracingConfig | None = None
    otlp_metrics: OtlpMetricsConfig | None = None
    sinks: tuple[SinkConfig, ...] = ()
    ueba: UebaConfig | None = None
    #: The metrics and health listener (``/metrics``, ``/healthz``, ``/readyz``).
    metrics_port: int | None = Field(None, ge=0, le=65535, strict=True)
    metrics_host: str = "127.0.0.1"
    #: Distinct tool names a metric label takes (from what upstreams listed); past it, "other".
    max_tool_labels: int = Field(200, ge=1, le=10_000, strict=True)
