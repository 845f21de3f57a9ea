"""The ``[limits]`` section: off unless configured, checked, placed after authorization."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from limits.conftest import gateway_config
from wardgate.config.model import ConfigFault, GatewayConfig
from wardgate.gateway import Gateway


def _names(config: dict[str, Any]) -> list[str]:
    gateway = Gateway(GatewayConfig.model_validate(config), sinks=[])
    return [g.name for g in gateway.routes["lim"].pipeline.guards]


def test_off_unless_configured() -> None:
    config = gateway_config({})
    del config["limits"]
    # (redact and controls: the content guards on by default, before any limit)
    assert _names(config) == ["tool_access", "redact", "controls"]
    assert _names(gateway_config({})) == ["tool_access", "redact", "controls"]


def test_every_control_in_the_designs_order() -> None:
    limits = {
        "rate": {},
        "breaker": {},
        "concurrency": {"per_subject": 4},
        "budgets": {"monthly_usd": 100},
        "tools": {"query": {"max_cost_usd": 5, "arguments": {"maximum_bytes_billed": {}}}},
    }
    assert _names(gateway_config(limits)) == [
        "tool_access",
        "redact",
        "controls",
        "rate_limit",
        "breaker",
        "argument_bounds",
        "concurrency",
        "cost_quota",
    ]


def test_a_route_can_turn_limits_off() -> None:
    assert _names(gateway_config({"rate": {}, "routes": {"lim": {"enabled": False}}})) == [
        "tool_access",
        "redact",
        "controls",
    ]


@pytest.mark.parametrize(
    "limits",
    [
        {"budgets": {"monthly_usd": 10}},  # a budget, but no tool has a cost
        {"tools": {"q": {"monthly_usd": 10}}},  # a tool budget without max_cost_usd
        {"budgets": {"timezone": "Mars/Olympus"}},
        {"routes": {"nope": {}}},
        {"redis": {"url": "http://127.0.0.1:6379"}},
        {"rate": {"burst": 0}},
        {"breaker": {"error_rate": 0}},
        {"surprise": 1},
    ],
)
def test_bad_limits_are_refused(limits: dict[str, Any]) -> None:
    with pytest.raises((ValidationError, ConfigFault)):
        GatewayConfig.model_validate(gateway_config(limits))


async def test_a_routes_own_rate_replaces_the_top_level_one() -> None:
    from limits.conftest import call_tool
    from support.servers import run_gateway

    limits = {
        "rate": {"requests": 1, "per_seconds": 3600, "burst": 100},
        "routes": {"lim": {"rate": {"requests": 1, "per_seconds": 3600, "burst": 1}}},
    }
    async with run_gateway(gateway_config(limits)) as (base, _):
        assert (await call_tool(base, "echo"))[0] == 200
        assert (await call_tool(base, "echo"))[0] == 429
