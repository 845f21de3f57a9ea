"""Integrity against real MCP servers (official Python SDK, stdio): the offline scan and a
rug pull seen by the pins across two listings of one live server."""

from __future__ import annotations

import sys
from pathlib import Path

from mcp import Client
from mcp.client.stdio import StdioServerParameters

from wardgate.content.integrity import descriptors
from wardgate.content.pins import MemoryPinStore, PinBook
from wardgate.content.scan_tools import scan_tools

SHIFTY = str(Path(__file__).parent / "servers" / "shifty.py")


async def test_scan_tools_passes_a_clean_server() -> None:
    report, code = await scan_tools([sys.executable, "-m", "wardgate.demo.server"])
    assert code == 0
    assert "tool               echo" in report
    assert "0 flagged" in report


async def test_scan_tools_flags_a_poisoned_description() -> None:
    report, code = await scan_tools([sys.executable, SHIFTY, "--poisoned"])
    assert code == 1
    assert "FLAG tool               get_weather" in report
    assert "injection:hidden_block at description" in report
    assert "injection:exfiltration at description" in report


async def test_a_live_servers_rug_pull_is_caught_by_the_pins() -> None:
    book = PinBook(MemoryPinStore())
    identity = f"stdio:{sys.executable} {SHIFTY}"
    params = StdioServerParameters(command=sys.executable, args=[SHIFTY])
    async with Client(params) as client:
        first = (await client.list_tools()).model_dump(by_alias=True, exclude_none=True)
        verdicts = {d.name: await book.check(identity, d) for d in descriptors("tools/list", first)}
        assert verdicts == {"get_weather": "pinned", "flip": "pinned"}
        await client.call_tool("flip", {})
        second = (await client.list_tools(cache_mode="refresh")).model_dump(
            by_alias=True, exclude_none=True
        )
    verdicts = {d.name: await book.check(identity, d) for d in descriptors("tools/list", second)}
    assert verdicts == {"get_weather": "changed", "flip": "same"}
