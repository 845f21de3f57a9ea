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
def spawn_daemon(seconds: float = 3600) -> int:
    """Double-fork a sleeper (for ``seconds``) into a session of its own (it leaves this
    server's group and session, and its parent exits); return its pid."""
    read, write = os.pipe()
    first = os.fork()
    if first == 0:  # pragma: no cover - child
        os.setsid()
        if os.fork() == 0:
            os.close(read)
            os.write(write, str(os.getpid()).encode())
            os.close(write)
            os.execv(sys.executable, [sys.executable, "-c", f"import time; time.sleep({seconds})"])  # noqa: S606
        os._exit(0)
    os.close(write)
    os.waitpid(first, 0)
    with os.fdopen(read) as pipe:
        return int(pipe.read())


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
