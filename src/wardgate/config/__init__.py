"""Wardgate's configuration: one TOML file, validated whole at start-up."""

from __future__ import annotations

from wardgate.config.loader import load_config, parse_config
from wardgate.config.model import (
    GatewayConfig,
    HttpUpstreamConfig,
    RouteConfig,
    ServerConfig,
    SseUpstreamConfig,
    StdioUpstreamConfig,
    ToolAccessConfig,
)

__all__ = [
    "GatewayConfig",
    "HttpUpstreamConfig",
    "RouteConfig",
    "ServerConfig",
    "SseUpstreamConfig",
    "StdioUpstreamConfig",
    "ToolAccessConfig",
    "load_config",
    "parse_config",
]
