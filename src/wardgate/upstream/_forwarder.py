"""Runs INSIDE a sandbox (standalone: imports nothing of wardgate's).

Usage: ``python _forwarder.py SOCKET [--tcp LISTEN:PORT=HOST:PORT]... -- ARGV...``.
Listens on 127.0.0.1:3128 in the sandbox's own network namespace (which has no route
out) and relays each connection to the gateway's egress proxy through the unix socket
``SOCKET`` bound into the sandbox. Each ``--tcp`` adds a raw TCP listener on
``LISTEN:PORT`` (a loopback address of the namespace) whose connections it relays as
``CONNECT HOST:PORT`` through the same proxy, so a database driver that speaks no HTTP
proxy reaches a listed pair, and only through the proxy's checks. Runs the server
``ARGV`` as its child with the same stdio (and ``WARDGATE_EGRESS_TCP`` naming the
listeners); exits with its status. A listener that cannot bind exits 70 before the
server starts.
"""

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable

_HEAD_LIMIT = 16 * 1024


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            writer.write_eof()


async def _tunnel(
    sock: str, target: str | None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to the proxy; with ``target``, already through its CONNECT.

    Raises:
        OSError: the proxy is unreachable or refused the pair.
    """
    reader, writer = await asyncio.open_unix_connection(sock)
    if target is None:
        return reader, writer
    writer.write(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode("ascii"))
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        head = b""
    if len(head) > _HEAD_LIMIT or not head.startswith((b"HTTP/1.1 200 ", b"HTTP/1.0 200 ")):
        writer.close()
        raise ConnectionRefusedError(target)
    return reader, writer


async def _relay(
    sock: str, target: str | None, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        up_reader, up_writer = await _tunnel(sock, target)
    except OSError:
        writer.close()
        return
    try:
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
    except asyncio.CancelledError:
        pass  # the server exited: the forwarder is going away with its connections
    finally:
        writer.close()
        up_writer.close()


def _listener(
    sock: str, target: str | None
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    return lambda r, w: _relay(sock, target, r, w)


async def _main(sock: str, tcp: list[str], argv: list[str]) -> int:
    servers = [await asyncio.start_server(_listener(sock, None), "127.0.0.1", 3128)]
    for spec in tcp:
        listen, _, target = spec.partition("=")
        host, _, port = listen.rpartition(":")
        try:
            servers.append(await asyncio.start_server(_listener(sock, target), host, int(port)))
        except OSError as exc:
            print(f"wardgate forwarder: cannot listen on {listen}: {exc}", file=sys.stderr)
            return 70
    env = dict(os.environ)
    if tcp:
        env["WARDGATE_EGRESS_TCP"] = ",".join(tcp)
    child = await asyncio.create_subprocess_exec(*argv, env=env)
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, child.send_signal, signum)
    code = await child.wait()
    for server in servers:
        server.close()
    return code if code >= 0 else 128 - code


def _args(argv: list[str]) -> tuple[str, list[str], list[str]]:
    split = argv.index("--")
    options, tcp = argv[1:split], list[str]()
    while len(options) >= 2 and options[-2] == "--tcp":
        tcp.insert(0, options.pop())
        options.pop()
    return options[0], tcp, argv[split + 1 :]


if __name__ == "__main__":
    sock_path, tcp_specs, server_argv = _args(sys.argv)
    os._exit(asyncio.run(_main(sock_path, tcp_specs, server_argv)))
