"""A legacy HTTP+SSE (2024-11-05) MCP server that misbehaves on request.

Raw asyncio: ``GET /sse`` opens the stream (``endpoint`` event first), ``POST
/messages`` takes a message and answers 202, the reply goes out on the stream.
``tools/call`` picks the behaviour by tool name: ``ok`` answers; ``deep`` answers with
a result nested ``arguments.depth`` levels deep. Run: ``python hostile_sse_server.py PORT``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

STREAMS: list[asyncio.StreamWriter] = []


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _event(data: bytes, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return _chunk(head + b"data: " + data + b"\n\n")


def _reply(request: dict[str, Any]) -> bytes | None:
    rid = request.get("id")
    method = request.get("method")
    if rid is None:
        return None
    if method == "initialize":
        result: dict[str, Any] = {
            "protocolVersion": "2024-11-05",
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "hostile-sse", "version": "1"},
        }
    elif method == "tools/list":
        tools = [{"name": n, "inputSchema": {"type": "object"}} for n in ("ok", "deep")]
        result = {"tools": tools}
    elif method == "tools/call" and request["params"]["name"] == "deep":
        depth = int(request["params"].get("arguments", {}).get("depth", 10_000))
        nested = b"[" * depth + b"]" * depth
        return b'{"jsonrpc":"2.0","id":%d,"result":{"content":[],"x":%s}}' % (rid, nested)
    else:
        result = {"content": [{"type": "text", "text": "fine"}]}
    return json.dumps({"jsonrpc": "2.0", "id": rid, "result": result}).encode()


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            length = 0
            for line in lines[1:]:
                key, _, value = line.partition(":")
                if key.strip().lower() == "content-length":
                    length = int(value)
            body = await reader.readexactly(length)
            if method == "GET" and path == "/sse":
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                    b"transfer-encoding: chunked\r\n\r\n" + _event(b"/messages", "endpoint")
                )
                STREAMS.append(writer)
                await writer.drain()
                await asyncio.Event().wait()  # the stream stays open
            writer.write(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
            await writer.drain()
            answer = _reply(json.loads(body))
            if answer is not None and STREAMS:
                STREAMS[-1].write(_event(answer))
                await STREAMS[-1].drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        if writer in STREAMS:
            STREAMS.remove(writer)
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(_serve, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
