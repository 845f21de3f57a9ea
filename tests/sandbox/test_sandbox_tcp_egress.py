"""Raw TCP egress (``egress_tcp``): a sandboxed tool of our own, called through the
gateway by the official SDK client, reaches the real Redis (redis-py, by a listed name)
and the real PostgreSQL (wire protocol, by a listed IP literal) through the forwarder
and the egress proxy, under each runner; an unlisted pair, the metadata address, a name
resolving to loopback without an operator exception and a direct connection bypassing
the forwarder all fail, and every refusal at the proxy is an ``egress.refused`` event
naming the server, the host and the address."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from support.servers import gateway_events, run_gateway
from wardgate.net.egress import EgressRefused
from wardgate.upstream.runners import gvisor_works

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bwrap not installed")

TOOL = Path(__file__).with_name("tcp_tool.py")
BASE = str(Path(os.path.realpath(sys.executable)).parent.parent)
RUNNERS = [
    "bubblewrap",
    pytest.param("gvisor", marks=pytest.mark.skipif(not gvisor_works(), reason="no runsc")),
]


def _upstream(runner: str, pairs: list[str], exceptions: list[str]) -> dict[str, Any]:
    return {
        "transport": "stdio",
        "command": [f"{sys.prefix}/bin/python", str(TOOL)],
        "sandbox": runner,
        "read_only_paths": [sys.prefix, BASE, str(TOOL)],
        "egress_tcp": pairs,
        "egress_allow_addresses": exceptions,
        "sandbox_limits": {"memory_mib": 1024},
    }


def _config(runner: str) -> dict[str, Any]:
    upstreams = {
        # The operator's exception for the test: this machine's Redis and PostgreSQL
        # listen on 127.0.0.1. The metadata address is listed by mistake.
        "db": _upstream(
            runner, ["localhost:6379", "127.0.0.1:5432", "169.254.169.254:8080"], ["127.0.0.1"]
        ),
        # The same name, no exception: it resolves to loopback, which is refused.
        "noexc": _upstream(runner, ["localhost:6379"], []),
    }
    return {
        "sandbox": {"allowed_host_paths": ["/usr", sys.prefix, BASE, str(TOOL)]},
        "upstreams": upstreams,
        "routes": {n: {"upstreams": [n]} for n in upstreams},
    }


async def _call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result
    text = result.content[0].text  # type: ignore[union-attr]
    answer: dict[str, Any] = json.loads(text)
    return answer


@pytest.mark.parametrize("runner", RUNNERS)
async def test_listed_pairs_reach_real_services_and_nothing_else_does(runner: str) -> None:
    async with run_gateway(_config(runner)) as (url, gateway):
        async with Client(f"{url}/mcp/db", mode="legacy") as db:
            # Legitimate traffic: a listed name (Redis, real driver), a listed literal.
            assert await _call(db, "redis_ping", host="localhost", port=6379) == {
                "ok": True,
                "detail": "PONG",
            }
            assert await _call(db, "pg_query", host="127.0.0.1", port=5432) == {
                "ok": True,
                "detail": "42",
            }
            listeners = (await db.call_tool("forwards", {})).content[0].text  # type: ignore[union-attr]
            metadata_alias = dict(s.split("=")[::-1] for s in listeners.split(","))[
                "169.254.169.254:8080"
            ]

            # Unlisted port of a listed name; unlisted port of a listed literal.
            assert not (await _call(db, "connect", host="localhost", port=5432))["ok"]
            assert not (await _call(db, "redis_ping", host="127.0.0.1", port=6379))["ok"]
            # Bypassing the forwarder: the metadata address and Redis by raw address.
            assert not (await _call(db, "connect", host="169.254.169.254", port=8080))["ok"]
            assert not (await _call(db, "connect", host="10.0.0.1", port=6379))["ok"]
            # Through the forwarder's listener of the mistakenly listed metadata pair.
            alias, port = metadata_alias.rsplit(":", 1)
            assert not (await _call(db, "connect", host=alias, port=int(port)))["ok"]
            # Through the forwarder's HTTP proxy port to an unlisted pair.
            assert not (await _call(db, "proxy_connect", host="127.0.0.1", port=6379))["ok"]
            assert not (await _call(db, "proxy_connect", host="localhost", port=5432))["ok"]

            # Still serving, still reaching what is listed.
            assert (await _call(db, "redis_ping", host="localhost", port=6379))["ok"]

        async with Client(f"{url}/mcp/noexc", mode="legacy") as noexc:
            refused = await _call(noexc, "redis_ping", host="localhost", port=6379)
            assert not refused["ok"]

        events = gateway_events(gateway).of(EgressRefused)
        seen = {(e.upstream, e.host, e.port, e.address, e.reason) for e in events}
        assert ("db", "169.254.169.254", 8080, "169.254.169.254", "address-refused") in seen
        assert ("db", "127.0.0.1", 6379, "", "not-on-allow-list") in seen
        assert ("db", "localhost", 5432, "", "not-on-allow-list") in seen
        assert any(
            e[:3] == ("noexc", "localhost", 6379)
            and "127.0.0.1" in e[3]
            and e[4] == "address-refused"
            for e in seen
        )
