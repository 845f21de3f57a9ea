"""A stdio MCP server (official SDK) that shows which sandbox answered and what it saw,
and burns CPU on demand: the per-call, warm pool and CPU limit tests use it."""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from pathlib import Path

from mcp.server.mcpserver import MCPServer

#: Unique to this process: two calls with the same boot id ran in the same sandbox.
BOOT = secrets.token_hex(8)
app = MCPServer("per-call")

if os.environ.get("EXIT_AT_ONCE") == "1":  # a server that crashes as it starts
    sys.exit(3)


@app.tool()
def whoami(note: str = "") -> str:
    """Report this sandbox's boot id and what /tmp held, then leave a mark in /tmp."""
    seen = sorted(p.name for p in Path("/tmp").iterdir())
    Path(f"/tmp/mark-{BOOT}").write_text(note)
    return json.dumps({"boot": BOOT, "pid": os.getpid(), "seen": seen})


@app.tool()
def burn(seconds: float) -> str:
    """Busy-loop for ``seconds`` of wall time; report the CPU time it got."""
    cpu0, wall0 = time.process_time(), time.monotonic()
    while time.monotonic() - wall0 < seconds:
        sum(range(1000))
    return json.dumps({"cpu": time.process_time() - cpu0, "wall": time.monotonic() - wall0})


if __name__ == "__main__":
    app.run()
