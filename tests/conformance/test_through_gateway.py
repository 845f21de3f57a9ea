"""The official MCP conformance suite (TypeScript SDK) passes through the gateway.

An upstream of our own (tests/servers/conformance_server.py, official Python SDK)
provides the suite's tools; the gateway sits in front, so the suite tests the gateway's
protocol transparency, and (dns-rebinding-protection) the gateway's own listener.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import stdio_demo_upstream
from support.servers import free_port, run_gateway, spawn_http_server

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.conformance.run_conformance import DEFAULT_BASELINE, run_suite

SERVER = Path(__file__).resolve().parents[1] / "servers" / "conformance_server.py"


@pytest.fixture(scope="module")
def conformance_upstream() -> Iterator[str]:
    port = free_port()
    with spawn_http_server([sys.executable, str(SERVER), "--port", str(port)], port):
        yield f"http://127.0.0.1:{port}/mcp"


def _route(upstream: str) -> dict[str, object]:
    return {
        "upstreams": {"conf": {"transport": "http", "url": upstream}},
        "routes": {"conf": {"upstreams": ["conf"]}},
    }


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({}, id="active-suite"),
        pytest.param({"suite": "all"}, id="all-scenarios"),
        pytest.param({"requirements": "2026-07-28"}, id="2026-07-28-requirements"),
    ],
)
async def test_suite_passes_through_transparent_route(
    conformance_upstream: str, options: dict[str, str]
) -> None:
    async with run_gateway(_route(conformance_upstream)) as (url, _):
        result = await asyncio.to_thread(
            run_suite, f"{url}/mcp/conf", baseline=DEFAULT_BASELINE, timeout=300, **options
        )
    assert result.ok, result.summary() + "\n" + result.output[-4000:]
    assert result.passed >= 70


@pytest.mark.parametrize(
    "options",
    [pytest.param({}, id="active-suite"), pytest.param({"suite": "all"}, id="all-scenarios")],
)
async def test_suite_passes_through_federated_route(
    conformance_upstream: str, options: dict[str, str]
) -> None:
    """The conformance upstream unprefixed beside the demo server (prefixed ``demo__``)."""
    config = {
        "upstreams": {
            "conf": {"transport": "http", "url": conformance_upstream},
            "demo": stdio_demo_upstream(),
        },
        "routes": {"fed": {"upstreams": ["conf", "demo"], "prefixes": {"conf": ""}}},
    }
    async with run_gateway(config) as (url, _):
        result = await asyncio.to_thread(
            run_suite, f"{url}/mcp/fed", baseline=DEFAULT_BASELINE, timeout=300, **options
        )
    assert result.ok, result.summary() + "\n" + result.output[-4000:]


#: The suite's subscription checks (server-stateless): they pass only when served, not
#: when skipped because nothing advertises change notifications.
SUBSCRIPTION_CHECKS = (
    "sep-2575-server-sends-subscription-ack",
    "sep-2575-server-tags-subscription-id",
    "sep-2575-server-honors-notification-filter",
    "sep-2575-server-sends-tools-list-changed-on-subscription",
    "sep-2575-server-sends-prompts-list-changed-on-subscription",
)


async def test_subscriptions_listen_through_federated_route(
    conformance_upstream: str, demo_http_upstream: str
) -> None:
    """server-stateless through a federated route whose members both serve
    subscriptions/listen: the route merges their streams."""
    config = {
        "upstreams": {
            "conf": {"transport": "http", "url": conformance_upstream},
            "demo": {"transport": "http", "url": demo_http_upstream},
        },
        "routes": {"fed": {"upstreams": ["conf", "demo"], "prefixes": {"conf": ""}}},
    }
    async with run_gateway(config) as (url, _):
        result = await asyncio.to_thread(
            run_suite,
            f"{url}/mcp/fed",
            scenario="server-stateless",
            baseline=DEFAULT_BASELINE,
            timeout=300,
        )
    assert result.ok, result.summary() + "\n" + result.output[-4000:]
    statuses = {c.get("id"): c.get("status") for c in result.scenarios["server-stateless"].checks}
    assert {c: statuses.get(c) for c in SUBSCRIPTION_CHECKS} == dict.fromkeys(
        SUBSCRIPTION_CHECKS, "SUCCESS"
    )
