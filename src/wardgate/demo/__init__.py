"""The demo MCP server shipped with Wardgate, and the config ``wardgate demo`` uses."""

from __future__ import annotations

import sys
from pathlib import Path

from wardgate.config.model import GatewayConfig

__all__ = ["demo_config"]


def demo_config(port: int) -> GatewayConfig:
    """Embedded defaults: loopback only, the demo server as an (unsandboxed) stdio child,
    and the demo's Cedar policy (:mod:`wardgate.policy.demo`): it allows the tools echo,
    add and utc_now, the prompt greet and the resource demo://readme, and nothing else.
    """
    import wardgate.policy.demo

    policy_dir = Path(wardgate.policy.demo.__file__).parent
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
            "routes": {"demo": {"upstreams": ["demo"]}},
            "policy": {"engine": "cedar", "dir": str(policy_dir)},
        }
    )
