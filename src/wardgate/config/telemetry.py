"""The ``[telemetry]`` section: the audit trail, traces, metrics and health listener.

Everything is off unless configured; see docs/telemetry.md.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from wardgate.config._base import StrictModel as _Strict

__all__ = ["AuditConfig", "TelemetryConfig", "TracingConfig"]

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


class TelemetryConfig(_Strict):
    """``[telemetry]``: each part is off unless its table (or port) is present."""

    audit: AuditConfig | None = None
    tracing: TracingConfig | None = None
    #: The metrics and health listener (``/metrics``, ``/healthz``, ``/readyz``).
    metrics_port: int | None = Field(None, ge=0, le=65535, strict=True)
    metrics_host: str = "127.0.0.1"
    #: Distinct tool names a metric label takes (from what upstreams listed); past it, "other".
    max_tool_labels: int = Field(200, ge=1, le=10_000, strict=True)
