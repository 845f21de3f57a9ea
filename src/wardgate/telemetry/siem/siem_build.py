"""Make a :class:`Forwarder` from a ``[[telemetry.sinks]]`` entry."""

from __future__ import annotations

import functools
import os
import ssl

from wardgate.config.telemetry import SinkConfig
from wardgate.errors import ConfigError
from wardgate.net.fetch import FetchPolicy, FetchRefused, SafeFetcher
from wardgate.telemetry.siem import formats
from wardgate.telemetry.siem.forwarder import Forwarder, Transport
from wardgate.telemetry.siem.transports import Encoder, HttpTransport, SyslogTcp, SyslogUdp

__all__ = ["build_forwarder"]


def _secret(env: str | None, what: str) -> str | None:
    if env is None:
        return None
    value = os.environ.get(env)
    if not value:
        raise ConfigError(f"telemetry.sinks: {what}: environment variable {env} is not set")
    return value


def build_forwarder(config: SinkConfig) -> Forwarder:
    """The forwarder for one sink (no I/O).

    Raises:
        ConfigError: a credential's variable is unset, or the URL is refused by policy.
    """
    policy = FetchPolicy(
        timeout_seconds=config.timeout_seconds,
        allow_loopback=config.allow_loopback,
        allow_private=config.allow_private,
    )
    token = _secret(config.token_env, config.name)
    transport: Transport
    if config.type == "syslog":
        assert config.host is not None and config.port is not None
        if config.protocol == "udp":
            transport = SyslogUdp(config.host, config.port, policy, fmt=config.format)
        else:
            ctx = ssl.create_default_context(cafile=config.ca_file) if config.tls else None
            transport = SyslogTcp(
                config.host, config.port, policy, ssl_context=ctx, fmt=config.format,
                timeout=config.timeout_seconds,
            )  # fmt: skip
    else:
        assert config.url is not None
        headers: dict[str, str] = {}
        content_type = "application/json"
        secret: bytes | None = None
        encode: Encoder
        if config.type == "splunk_hec":
            encode = formats.hec
            if token:
                headers["Authorization"] = f"Splunk {token}"
        elif config.type == "loki":
            encode = formats.loki
            if token:
                headers["Authorization"] = f"Bearer {token}"
        elif config.type == "elastic":
            encode = functools.partial(formats.ecs_bulk, index=config.index)
            content_type = "application/x-ndjson"
            if token:
                headers["Authorization"] = token
        elif config.type == "datadog":
            encode = formats.datadog
            if token:
                headers["DD-API-KEY"] = token
        else:
            encode = formats.webhook
            secret_text = _secret(config.hmac_secret_env, config.name)
            secret = secret_text.encode() if secret_text else None
        try:
            transport = HttpTransport(
                SafeFetcher(policy), config.url, encode, content_type=content_type,
                headers=headers, hmac_secret=secret,
            )  # fmt: skip
        except FetchRefused as exc:
            raise ConfigError(f"telemetry.sinks.{config.name}.url: {exc}") from None
    return Forwarder(
        config.name,
        transport,
        kinds=config.kinds,
        queue_size=config.queue_size,
        batch_size=config.batch_size,
        spool_dir=config.spool_dir,
        spool_max_bytes=config.spool_max_bytes,
        backoff_max=config.backoff_max_seconds,
    )
