"""A stdio MCP server (official SDK) that speaks raw TCP from inside its sandbox: Redis
with the real redis-py driver, PostgreSQL's wire protocol by hand, a bare connect, and a
CONNECT through the in-sandbox HTTP proxy port. Each tool answers ``{"ok": bool,
"detail": ...}``."""

from __future__ import annotations

import json
import os
import socket
import struct

import redis
from mcp.server.mcpserver import MCPServer

app = MCPServer("tcp-tool")


def _answer(ok: bool, detail: object) -> str:
    return json.dumps({"ok": ok, "detail": str(detail)[:300]})


@app.tool()
def redis_ping(host: str, port: int) -> str:
    client = redis.Redis(host=host, port=port, socket_timeout=5, socket_connect_timeout=5)
    try:
        return _answer(client.ping() is True, "PONG")
    except redis.RedisError as exc:
        return _answer(False, exc)
    finally:
        client.close()


def _pg_messages(sock: socket.socket) -> list[tuple[bytes, bytes]]:
    """Messages until ReadyForQuery ('Z') or an error ('E')."""
    buf, out = b"", []
    while True:
        while len(buf) < 5 or len(buf) < 1 + struct.unpack("!I", buf[1:5])[0]:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by peer")
            buf += chunk
        size = struct.unpack("!I", buf[1:5])[0]
        kind, body, buf = buf[:1], buf[5 : 1 + size], buf[1 + size :]
        out.append((kind, body))
        if kind in (b"Z", b"E"):
            return out


@app.tool()
def pg_query(host: str, port: int) -> str:
    """Startup as ``postgres`` on database ``test`` (trust auth), then ``SELECT 41 + 1``."""
    try:
        with socket.create_connection((host, port), timeout=5) as sock:
            params = b"user\0postgres\0database\0test\0\0"
            sock.sendall(struct.pack("!II", 8 + len(params), 196608) + params)
            startup = _pg_messages(sock)
            if (b"R", struct.pack("!I", 0)) not in startup:
                return _answer(False, startup[-1])
            query = b"SELECT 41 + 1\0"
            sock.sendall(b"Q" + struct.pack("!I", 4 + len(query)) + query)
            for kind, body in _pg_messages(sock):
                if kind == b"D":  # DataRow: count, then length-prefixed columns
                    (length,) = struct.unpack("!i", body[2:6])
                    return _answer(True, body[6 : 6 + length].decode())
            return _answer(False, "no row")
    except OSError as exc:
        return _answer(False, exc)


@app.tool()
def connect(host: str, port: int) -> str:
    """A bare TCP connect (and a Redis PING, whatever listens)."""
    try:
        with socket.create_connection((host, port), timeout=5) as sock:
            sock.sendall(b"PING\r\n")
            data = sock.recv(64)
            return _answer(bool(data), data or "closed without an answer")
    except OSError as exc:
        return _answer(False, exc)


@app.tool()
def proxy_connect(host: str, port: int) -> str:
    """CONNECT host:port through the forwarder's HTTP proxy port: the proxy's answer."""
    try:
        with socket.create_connection(("127.0.0.1", 3128), timeout=5) as sock:
            sock.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\n\r\n".encode())
            status = sock.recv(64).split(b"\r\n", 1)[0]
            return _answer(status.startswith(b"HTTP/1.1 200"), status.decode())
    except OSError as exc:
        return _answer(False, exc)


@app.tool()
def forwards() -> str:
    return os.environ.get("WARDGATE_EGRESS_TCP", "")


if __name__ == "__main__":
    app.run()
