"""An MCP server that misbehaves on request: for crash, hang and restart tests."""

from __future__ import annotations

import argparse
import os

import anyio
from mcp.server import MCPServer

server = MCPServer("faulty", version="1.0")


@server.tool()
def ok() -> str:
    """Answer at once."""
    return f"ok from {os.getpid()}"


@server.tool()
def crash() -> str:
    """Die mid-call, without answering."""
    os._exit(3)


@server.tool()
async def hang() -> str:
    """Never answer."""
    await anyio.sleep(3600)
    return "unreachable"


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", type=int)
    args = parser.parse_args()
    if args.http:
        server.run("streamable-http", host="127.0.0.1", port=args.http)
    else:
        server.run("stdio")
