"""The demo MCP server shipped with Wardgate, and the config ``wardgate demo`` uses."""

from __future__ import annotations

import sys

from wardgate.config.model import GatewayConfig

__all__ = ["demo_config"]


def demo_config(port: int) -> GatewayConfig:
    """Embedded defaults: loopback only, the demo server as an (unsandboxed) stdio child,
    and a tool deny list to show the guard at work."""
    return GatewayConfig.model_validate(
        {
            "server": {"host": "127.0.0.1", "port": port},
            "log": {"format": "text"},
            "upstreams": {
                "demo": {
                    "transport": "stdio",
                    "command": [sys.executable, "-m", "wardgate.demo.server"],
                    "sandbox": "insecure-none",
                }
            },
            "routes": {"demo": {"upstreams": ["demo"], "tools": {"deny": ["delete_*"]}}},
        }
    )
