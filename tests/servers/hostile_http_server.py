"""A Streamable HTTP (2026-07-28) upstream that misbehaves on request, byte by byte.

Raw asyncio, so that each answer is exactly the bytes under test. ``tools/call`` picks
the behaviour by tool name:

* ``ok``: a JSON result at once (keep-alive);
* ``array``: one ``application/json`` body holding a JSON array: a notification,
  then the response (as the conformance suite's reference server does);
* ``hang``: reads the request, never answers;
* ``pings``: an SSE stream of ``: ping`` comments, forever;
* ``empty``: an SSE stream of empty events, forever;
* ``endless``: one SSE event whose data lines never end;
* ``deep_json`` / ``deep_sse``: a result nested ``arguments.depth`` levels deep, as a
  JSON body or in an SSE event.

A request to ``/noread`` has its head read and nothing more: the upstream stops reading.
``GET /stats`` answers how many bytes the endless streams managed to send.
Run: ``python hostile_http_server.py PORT``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

STATS = {"endless_sent": 0}


def _head(status: str, ctype: str, length: int | None) -> bytes:
    framing = f"content-length: {length}" if length is not None else "transfer-encoding: chunked"
    return f"HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\n{framing}\r\n\r\n".encode()


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


async def _json(writer: asyncio.StreamWriter, body: bytes, status: str = "200 OK") -> None:
    writer.write(_head(status, "application/json", len(body)) + body)
    await writer.drain()


async def _forever(writer: asyncio.StreamWriter, piece: bytes, pause: float) -> None:
    writer.write(_head("200 OK", "text/event-stream", None))
    while True:
        writer.write(_chunk(piece))
        await writer.drain()
        if pause:
            await asyncio.sleep(pause)


async def _answer(request: dict[str, Any], writer: asyncio.StreamWriter) -> None:
    rid = request.get("id")
    if rid is None:
        writer.write(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
        return
    params = request.get("params") or {}
    name = params.get("name") if request.get("method") == "tools/call" else "ok"
    args = params.get("arguments") or {}

    def result(text: str) -> dict[str, Any]:
        content = [{"type": "text", "text": text}]
        return {"jsonrpc": "2.0", "id": rid, "result": {"content": content}}

    if name == "ok":
        await _json(writer, json.dumps(result("fine")).encode())
    elif name == "array":
        note = {"jsonrpc": "2.0", "method": "notifications/message"}
        note["params"] = {"level": "info", "data": "before the response"}
        await _json(writer, json.dumps([note, result("after the notification")]).encode())
    elif name == "hang":
        await asyncio.Event().wait()
    elif name == "pings":
        await _forever(writer, b": ping\n\n", 0.02)
    elif name == "empty":
        await _forever(writer, b"data: \n\n", 0.02)
    elif name == "endless":
        writer.write(_head("200 OK", "text/event-stream", None))
        line = _chunk(b"data: " + b"x" * 65_536 + b"\n")
        while True:
            writer.write(line)
            await writer.drain()  # the gateway's reading paces us
            STATS["endless_sent"] += len(line)
    elif name in ("deep_json", "deep_sse"):
        depth = int(args.get("depth", 10_000))
        body = b'{"jsonrpc":"2.0","id":%s,"result":{"content":[],"x":%s}}' % (
            json.dumps(rid).encode(),
            _deep(depth),
        )
        if name == "deep_json":
            await _json(writer, body)
        else:
            writer.write(_head("200 OK", "text/event-stream", None))
            writer.write(_chunk(b"data: " + body + b"\n\n") + b"0\r\n\r\n")
    else:
        error = {"jsonrpc": "2.0", "id": rid, "error": {"code": -32602, "message": "unknown"}}
        await _json(writer, json.dumps(error).encode())


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
            if path == "/noread":
                await asyncio.Event().wait()  # takes the head, never reads the body
            body = await reader.readexactly(length)
            if method == "GET" and path == "/stats":
                await _json(writer, json.dumps(STATS).encode())
                continue
            await _answer(json.loads(body), writer)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(_serve, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
