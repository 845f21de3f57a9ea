"""Resources on a federated route: no member captures another's, templates match exactly,
and unknown URIs cannot make the route list every member again and again."""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import AsyncIterator

import pytest
from federation_helpers import member
from mcp import Client, MCPError, types

from support.servers import run_gateway
from wardgate.gateway import Gateway
from wardgate.routing.federated import FederatedRoute

INVALID_PARAMS = -32602
LISTINGS = ("resources/list", "resources/templates/list")


@pytest.fixture
async def fed() -> AsyncIterator[tuple[str, Gateway]]:
    config = {
        "upstreams": {
            "a": member(
                "a",
                "--resources",
                "a://only,shared://x",
                "--templates",
                "users://{id}/profile,file:///{path}",
            ),
            "b": member(
                "b",
                "--resources",
                "b://only,shared://x",
                "--templates",
                "users://{id}/settings,file:///{path}",
            ),
        },
        "routes": {"fed": {"upstreams": ["a", "b"]}},
    }
    async with run_gateway(config) as (base, gateway):
        yield f"{base}/mcp/fed", gateway


def _text(result: types.ReadResourceResult) -> str:
    content = result.contents[0]
    assert isinstance(content, types.TextResourceContents)
    return content.text


async def _counts(client: Client, prefix: str) -> dict[str, int]:
    result = await client.call_tool(f"{prefix}__count", {})
    block = result.content[0]
    assert isinstance(block, types.TextContent)
    counts: dict[str, int] = json.loads(block.text)
    return {m: counts.get(m, 0) for m in LISTINGS}


async def test_a_uri_two_members_list_is_a_conflict_served_by_neither(
    fed: tuple[str, Gateway], caplog: pytest.LogCaptureFixture
) -> None:
    url, _ = fed
    caplog.set_level(logging.ERROR, logger="wardgate.routing.resources")
    async with Client(url, mode="legacy") as client:
        # The members' own resources still read, from the member that lists them.
        assert _text(await client.read_resource("a://only")) == "a:a://only"
        assert _text(await client.read_resource("b://only")) == "b:b://only"
        # Neither member captures the shared URI: both listed it.
        with pytest.raises(MCPError) as err:
            await client.read_resource("shared://x")
        assert err.value.error.code == INVALID_PARAMS
        # A URI matched by templates of both members is a conflict too.
        with pytest.raises(MCPError) as err:
            await client.read_resource("file:///notes.txt")
        assert err.value.error.code == INVALID_PARAMS
    conflicts = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert any("shared://x" in r.getMessage() and "a, b" in r.getMessage() for r in conflicts)
    assert any("file:///" in r.getMessage() and "a, b" in r.getMessage() for r in conflicts)


async def test_templates_route_by_their_whole_shape_not_their_prefix(
    fed: tuple[str, Gateway],
) -> None:
    url, _ = fed
    async with Client(url, mode="legacy") as client:
        assert _text(await client.read_resource("users://7/profile")) == "a:users://7/profile"
        assert _text(await client.read_resource("users://7/settings")) == "b:users://7/settings"
        for outside in ("users://7/profile/x", "users://7/other", "users://a/b/profile"):
            with pytest.raises(MCPError) as err:
                await client.read_resource(outside)
            assert err.value.error.code == INVALID_PARAMS


async def test_random_uris_cost_a_bounded_number_of_member_listings(
    fed: tuple[str, Gateway],
) -> None:
    url, gateway = fed
    route = gateway.routes["fed"]
    assert isinstance(route, FederatedRoute)
    now = [1000.0]
    route.resources.clock = lambda: now[0]  # time stands still: no learn interval elapses
    async with Client(url, mode="legacy") as client:
        before = {p: await _counts(client, p) for p in ("a", "b")}
        for _ in range(1000):
            with pytest.raises(MCPError) as err:
                await client.read_resource(f"rand://{secrets.token_hex(8)}")
            assert err.value.error.code == INVALID_PARAMS
        # A real resource still reads, beside the flood.
        assert _text(await client.read_resource("a://only")) == "a:a://only"
        after = {p: await _counts(client, p) for p in ("a", "b")}
        listings = {p: sum(after[p].values()) - sum(before[p].values()) for p in after}
        # One learn step: resources/list and resources/templates/list once per member.
        assert listings == {"a": 2, "b": 2}, listings
        # The same unknown URI again is answered from the miss cache, not by listing.
        with pytest.raises(MCPError):
            await client.read_resource("rand://again")
        now[0] += 3600  # the learn interval has passed: one more learn is allowed
        with pytest.raises(MCPError):
            await client.read_resource("rand://later")
        later = {p: await _counts(client, p) for p in ("a", "b")}
        assert all(sum(later[p].values()) - sum(after[p].values()) == 2 for p in later), later
