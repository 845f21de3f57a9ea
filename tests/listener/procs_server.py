"""A stdio MCP server for listener and shutdown tests: reports its descriptors, forks a
grandchild, holds a call open."""

from __future__ import annotations

import os
from pathlib import Path

# Taken before anything else runs: what this process got from its parent at exec.
# (The directory handle used to list them is closed by the time each is read.)
INHERITED = {int(p.name): str(p.readlink()) for p in Path("/proc/self/fd").iterdir() if p.exists()}

import subprocess  # noqa: E402 - after the descriptor snapshot
import sys  # noqa: E402

import anyio  # noqa: E402
from mcp.server import MCPServer  # noqa: E402

server = MCPServer("procs", version="1.0")


@server.tool()
def fds() -> dict[str, str]:
    """The descriptors this process was started with, and what each points to."""
    return {str(n): target for n, target in sorted(INHERITED.items())}


@server.tool()
def spawn_grandchild() -> int:
    """Start a long sleeper in this server's process group and return its pid."""
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(3600)"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return child.pid


@server.tool()
async def slow(seconds: float, marker: str = "") -> str:
    """Answer after ``seconds``; touch ``marker`` (a path) when the call starts."""
    if marker:
        Path(marker).touch()
    await anyio.sleep(seconds)
    return f"slept {seconds}"


@server.tool()
def pid() -> int:
    """This server's pid."""
    return os.getpid()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run("stdio")
