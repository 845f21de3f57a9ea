"""A real ``wardgate serve`` subprocess, raw attacking sockets and a legitimate MCP call."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from support.http import modern_body, modern_headers
from support.servers import free_port

PROCS_SERVER = str(Path(__file__).with_name("procs_server.py"))
SRC = str(Path(__file__).resolve().parents[2] / "src")


def procs_upstream() -> dict[str, Any]:
    return {
        "transport": "stdio",
        "command": [sys.executable, PROCS_SERVER],
        "sandbox": "insecure-none",
    }


def _toml_value(value: Any) -> str:
    # JSON scalars and arrays of them are valid TOML values; tables are written inline.
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def write_config(
    path: Path,
    port: int,
    server: dict[str, Any] | None = None,
    upstreams: dict[str, dict[str, Any]] | None = None,
    log_level: str = "warning",
) -> Path:
    """A config with one route per upstream (route name = upstream name)."""
    ups = upstreams or {"procs": procs_upstream()}
    lines = ["[server]", f"port = {port}"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in (server or {}).items()]
    lines += ["[log]", f"level = {_toml_value(log_level)}"]
    for name, up in ups.items():
        lines.append(f"[upstreams.{name}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in up.items()]
        lines += [f"[routes.{name}]", f"upstreams = [{_toml_value(name)}]"]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Served:
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    routes: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    async def logged(self, text: str, within: float = 10.0) -> None:
        """Wait (bounded) until the gateway's log contains ``text``."""
        deadline = time.monotonic() + within
        while text not in self.logs():
            assert time.monotonic() < deadline, f"never logged {text!r}:\n{self.logs()}"
            await asyncio.sleep(0.02)


def _healthy(port: int, tls: tuple[ssl.SSLContext, str] | None = None) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as raw:
            sock = tls[0].wrap_socket(raw, server_hostname=tls[1]) if tls else raw
            sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
            return sock.recv(12).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


@contextlib.contextmanager
def wardgate_serve(
    tmp_path: Path,
    server: dict[str, Any] | None = None,
    upstreams: dict[str, dict[str, Any]] | None = None,
    nofile: int | None = None,
    log_level: str = "warning",
    tls: tuple[ssl.SSLContext, str] | None = None,
) -> Iterator[Served]:
    """Run ``wardgate serve`` as a subprocess until it answers /healthz (over TLS with
    ``(context, SNI)``)."""
    port = free_port()
    config = write_config(tmp_path / f"gateway-{port}.toml", port, server, upstreams, log_level)
    log = tmp_path / f"gateway-{port}.log"
    env = {**os.environ, "PYTHONPATH": SRC}

    def limit_files() -> None:  # pragma: no cover - runs in the child
        import resource

        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "wardgate.cli", "serve", "-c", str(config)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=limit_files if nofile is not None else None,
        )
    served = Served(port, proc, log, list((upstreams or {"procs": {}}).keys()))
    try:
        deadline = time.monotonic() + 30
        while not _healthy(port, tls):
            if proc.poll() is not None:
                raise RuntimeError(f"wardgate serve exited {proc.returncode}:\n{served.logs()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"wardgate serve did not start:\n{served.logs()}")
            time.sleep(0.05)
        yield served
    finally:
        # Politely first, so that a failed test still sweeps the gateway's children.
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.send_signal(signal.SIGINT)  # the second skips the drain
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


# -- a legitimate call ------------------------------------------------------------


async def http_exchange(
    port: int,
    raw: bytes,
    source: str = "127.0.0.1",
    within: float = 10.0,
    tls: tuple[ssl.SSLContext, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """Send one raw request on a fresh connection (over TLS with ``(context, SNI)``);
    read one response (Content-Length)."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1",
        port,
        local_addr=(source, 0),
        ssl=tls[0] if tls else None,
        server_hostname=tls[1] if tls else None,
    )
    try:
        writer.write(raw)
        await writer.drain()
        return await asyncio.wait_for(read_response(reader), within)
    finally:
        writer.close()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


def mcp_request(
    route: str,
    method: str = "tools/list",
    params: dict[str, Any] | None = None,
    name: str | None = None,
    request_id: int = 1,
    keep_alive: bool = True,
    padding: int = 0,
) -> bytes:
    """A raw 2026-07-28 request; ``padding`` bytes of JSON whitespace end the body."""
    body = orjson.dumps(modern_body(method, params, request_id)) + b" " * padding
    headers = modern_headers(method, name)
    head = [f"POST /mcp/{route} HTTP/1.1", "host: 127.0.0.1", f"content-length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    if not keep_alive:
        head.append("connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def legit_tools_list(port: int, route: str = "procs", within: float = 10.0) -> float:
    """A 2026-07-28 ``tools/list`` from 127.0.0.1 must succeed; returns its latency."""
    started = time.perf_counter()
    status, _, body = await http_exchange(port, mcp_request(route), within=within)
    assert status == 200, body
    names = {t["name"] for t in orjson.loads(body)["result"]["tools"]}
    assert "pid" in names
    return time.perf_counter() - started


async def sdk_call(port: int, route: str = "procs", within: float = 15.0) -> float:
    """The official Python SDK client (2026-07-28 era) lists tools and calls one."""
    from mcp import Client

    started = time.perf_counter()
    async with asyncio.timeout(within), Client(f"http://127.0.0.1:{port}/mcp/{route}") as client:
        assert "pid" in {t.name for t in (await client.list_tools()).tools}
        result = await client.call_tool("pid", {})
        assert not result.is_error
    return time.perf_counter() - started


# -- attackers ----------------------------------------------------------------------


@dataclass
class Attacker:
    """One raw socket from an attacker address; ``closed_after`` is set when the gateway
    closes it (seconds since it connected)."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    opened: float
    received: bytes = b""
    closed_after: float | None = None

    async def watch(self) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while chunk := await self.reader.read(65536):
                self.received += chunk
        self.closed_after = time.monotonic() - self.opened

    def send(self, data: bytes) -> bool:
        if self.writer.is_closing() or self.closed_after is not None:
            return False
        with contextlib.suppress(ConnectionError, OSError):
            self.writer.write(data)
            return True
        return False

    def close(self) -> None:
        self.writer.close()


async def open_attackers(port: int, count: int, sources: list[str]) -> list[Attacker]:
    out = []
    for i in range(count):
        source = sources[i % len(sources)]
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, local_addr=(source, 0)
            )
        except OSError:
            continue
        out.append(Attacker(reader, writer, time.monotonic()))
    return out


def status_of(received: bytes) -> int | None:
    if not received.startswith(b"HTTP/1.1 "):
        return None
    return int(received[9:12])
