"""Runs INSIDE a sandbox (standalone: imports nothing of wardgate's).

Usage: ``python _forwarder.py SOCKET -- ARGV...``. Listens on 127.0.0.1:3128 in the
sandbox's own network namespace (which has no route out), relays each connection to
the gateway's egress proxy through the unix socket ``SOCKET`` bound into the sandbox,
and runs the server ``ARGV`` as its child with the same stdio; exits with its status.
"""

import asyncio
import contextlib
import os
import signal
import sys


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


async def _relay(sock: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        up_reader, up_writer = await asyncio.open_unix_connection(sock)
    except OSError:
        writer.close()
        return
    await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
    writer.close()
    up_writer.close()


async def _main(sock: str, argv: list[str]) -> int:
    server = await asyncio.start_server(lambda r, w: _relay(sock, r, w), "127.0.0.1", 3128)
    child = await asyncio.create_subprocess_exec(*argv)
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, child.send_signal, signum)
    code = await child.wait()
    server.close()
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    split = sys.argv.index("--")
    os._exit(asyncio.run(_main(sys.argv[1], sys.argv[split + 1 :])))
