"""A minimal stdio JSON-RPC driver for a sandboxed process (the runner's own pipes)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

__all__ = ["StdioDriver"]


class StdioDriver:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self._id = 0

    async def _send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")
        await self.proc.stdin.drain()

    async def request(self, method: str, params: dict[str, Any], timeout: float = 60) -> Any:
        self._id += 1
        await self._send({"jsonrpc": "2.0", "id": self._id, "method": method, "params": params})
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                line = await self.proc.stdout.readline()
                if not line:
                    raise EOFError("server exited")
                message = json.loads(line)
                if message.get("id") == self._id:
                    return message

    async def initialize(self) -> Any:
        reply = await self.request(
            "initialize",
            {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "0"},
            },
        )
        await self._send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return reply

    async def call(self, tool: str, **arguments: Any) -> Any:
        reply = await self.request("tools/call", {"name": tool, "arguments": arguments})
        text = reply["result"]["content"][0]["text"]
        return json.loads(text) if text.startswith(("{", "[")) else text
