"""Call the demo through the gateway with the official MCP Python SDK client.

Run: ``python -m wardgate.demo.client http://127.0.0.1:8787/mcp/demo``
"""

from __future__ import annotations

import asyncio
import sys

from mcp import Client, MCPError


async def _main(url: str) -> None:
    for mode in ("legacy", "auto"):
        async with Client(url, mode=mode) as client:
            print(f"[{mode}] protocol {client.protocol_version}")
            tools = await client.list_tools()
            print("  tools:", ", ".join(t.name for t in tools.tools))
            result = await client.call_tool("add", {"a": 2, "b": 3})
            print("  add(2, 3) ->", result.content[0].text)  # type: ignore[union-attr]
            try:
                await client.call_tool("delete_everything", {"confirm": True})
            except MCPError as exc:
                print(f"  delete_everything -> refused: {exc.error.message} {exc.error.data}")


def main() -> None:
    url = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8787/mcp/demo"
    asyncio.run(_main(url))


if __name__ == "__main__":
    main()
