"""Lists on a federated route: the first page holds every member's first page."""

from __future__ import annotations

import pytest
from federation_helpers import member
from mcp import Client, MCPError

from support.servers import run_gateway
from wardgate.routing.federation import encode_cursor

CONFIG = {
    "upstreams": {
        # a pages its 13 tools (t0..t11, count) five at a time; b has 4 on one page.
        "a": member("a", "--tools", "12", "--page-size", "5"),
        "b": member("b", "--tools", "3"),
    },
    "routes": {"fed": {"upstreams": ["a", "b"]}},
}
A_ALL = {f"a__t{i}" for i in range(12)} | {"a__count"}
B_ALL = {"b__t0", "b__t1", "b__t2", "b__count"}


async def test_a_client_that_lists_once_sees_every_members_first_page() -> None:
    async with run_gateway(CONFIG) as (base, _), Client(f"{base}/mcp/fed", mode="legacy") as client:
        first = await client.list_tools()  # no pagination, as many clients do
        names = [t.name for t in first.tools]
        assert set(names) == {f"a__t{i}" for i in range(5)} | B_ALL
        assert first.next_cursor is not None

        seen = list(names)
        cursor = first.next_cursor
        pages = 1
        while cursor is not None:
            page = await client.list_tools(cursor=cursor)
            seen += [t.name for t in page.tools]
            cursor = page.next_cursor
            pages += 1
        assert pages == 3
        assert sorted(seen) == sorted(A_ALL | B_ALL)  # every tool once, none twice


async def test_a_forged_cursor_is_refused_in_band() -> None:
    async with run_gateway(CONFIG) as (base, _), Client(f"{base}/mcp/fed", mode="legacy") as client:
        for forged in ("not-a-cursor", encode_cursor({7: "0"}), "W10"):
            with pytest.raises(MCPError) as err:
                await client.list_tools(cursor=forged)
            assert err.value.error.code == -32602
        assert len((await client.list_tools()).tools) == 9
