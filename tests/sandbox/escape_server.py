"""A stdio MCP server (official SDK) whose tools try to break out of their sandbox.

Each tool answers ``{"escaped": bool, "detail": ...}``; the tests assert every attempt fails.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from mcp.server.mcpserver import MCPServer

app = MCPServer("escape")


def _verdict(escaped: bool, detail: object) -> str:
    return json.dumps({"escaped": escaped, "detail": str(detail)[:300]})


@app.tool()
def ping() -> str:
    return "pong"


@app.tool()
def read_file(path: str) -> str:
    try:
        with Path(path).open("rb") as f:
            return _verdict(True, f.read(64))
    except OSError as exc:
        return _verdict(False, exc)


@app.tool()
def environment() -> str:
    return json.dumps(sorted(os.environ))


@app.tool()
def write_file(path: str) -> str:
    try:
        with Path(path).open("wb") as f:
            f.write(b"pwned")
        return _verdict(True, path)
    except OSError as exc:
        return _verdict(False, exc)


@app.tool()
def fill_scratch(mib: int) -> str:
    written = 0
    try:
        with Path("/tmp/fill").open("wb") as f:
            for _ in range(mib):
                f.write(b"\0" * 1024 * 1024)
                f.flush()
                written += 1
        return _verdict(True, written)
    except OSError as exc:
        return _verdict(False, f"{written} MiB then {exc}")
    finally:
        with contextlib.suppress(OSError):
            Path("/tmp/fill").unlink()


@app.tool()
def connect(host: str, port: int) -> str:
    try:
        with socket.create_connection((host, port), timeout=2):
            return _verdict(True, f"{host}:{port}")
    except OSError as exc:
        return _verdict(False, exc)


@app.tool()
def connect_unix(path: str) -> str:
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path)
        return _verdict(True, path)
    except OSError as exc:
        return _verdict(False, exc)
    finally:
        s.close()


@app.tool()
def fork_bomb(target: int) -> str:
    children = []
    error = None
    try:
        for _ in range(target):
            pid = os.fork()
            if pid == 0:
                time.sleep(60)
                os._exit(0)
            children.append(pid)
    except OSError as exc:
        error = exc
    finally:
        for pid in children:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
    return _verdict(len(children) >= target, f"{len(children)} forks, then {error}")


@app.tool()
def allocate(mib: int) -> str:
    code = f"b = bytearray({mib} * 1024 * 1024)\nfor i in range(0, len(b), 4096): b[i] = 1\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    return _verdict(done.returncode == 0, f"rc={done.returncode}")


@app.tool()
def ptrace(pid: int) -> str:
    libc = ctypes.CDLL(None, use_errno=True)
    rc = libc.ptrace(16, pid, None, None)  # PTRACE_ATTACH
    return _verdict(rc == 0, f"rc={rc} errno={ctypes.get_errno()}")


@app.tool()
def raise_capability() -> str:
    try:
        os.setuid(0)
        return _verdict(True, "setuid(0)")
    except OSError as exc:
        return _verdict(False, exc)


if __name__ == "__main__":
    app.run()
