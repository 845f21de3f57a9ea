"""A stdio MCP server on the official Python SDK whose calls wait to be released: two
callers can hold calls open on one process at once, with progress."""

from __future__ import annotations

import os

import anyio
from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("held", version="1.0")
_gates: dict[str, anyio.Event] = {}


def _gate(tag: str) -> anyio.Event:
    return _gates.setdefault(tag, anyio.Event())


@server.tool()
async def slow(tag: str, ctx: Context) -> str:
    """Report progress naming ``tag``, then wait for ``release(tag)``."""
    await ctx.report_progress(1, 2, tag)
    await _gate(tag).wait()
    return f"done {tag}"


@server.tool()
def release(tag: str) -> str:
    """Let ``slow(tag)`` finish."""
    _gate(tag).set()
    return "released"


@server.tool()
def pid() -> str:
    """This process's id."""
    return str(os.getpid())


if __name__ == "__main__":
    server.run("stdio")
