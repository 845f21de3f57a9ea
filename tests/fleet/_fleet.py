"""Real ``wardgate serve`` processes for the fleet tests: config files, start, stop."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from listener._gateway import PROCS_SERVER

SRC = str(Path(__file__).resolve().parents[2] / "src")
REDIS_URL = "redis://127.0.0.1:6379/0"


def _toml(value: Any) -> str:
    return json.dumps(value)


def write_config(path: Path, port: int, sections: dict[str, dict[str, Any]]) -> Path:
    """A TOML file from ``{"section.sub": {key: scalar-or-array}}``."""
    lines = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {_toml(v)}" for k, v in values.items()]
    text = "\n".join(lines) + "\n"
    path.write_text(text.replace('"__PORT__"', str(port)))
    return path


def procs_sections(redis_prefix: str | None) -> dict[str, dict[str, Any]]:
    """One stdio route ``procs`` (its ``pid`` tool names the worker's child); Redis
    limits when ``redis_prefix`` is given."""
    sections: dict[str, dict[str, Any]] = {
        "server": {"port": "__PORT__", "shutdown_drain_seconds": 5.0},
        "log": {"level": "info", "format": "text"},
        "upstreams.procs": {
            "transport": "stdio",
            "command": [sys.executable, PROCS_SERVER],
            "sandbox": "insecure-none",
        },
        "routes.procs": {"upstreams": ["procs"]},
    }
    if redis_prefix is not None:
        sections["limits"] = {"store": "redis"}
        sections["limits.redis"] = {"url": REDIS_URL, "key_prefix": redis_prefix}
        sections["limits.rate"] = {"requests": 100000, "per_seconds": 1.0, "burst": 100000}
    return sections


@dataclass
class Proc:
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


def _healthy(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
            return sock.recv(12).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def run_cli(config: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    log = config.with_suffix(".log")
    with log.open("wb") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "wardgate.cli", "serve", "-c", str(config), *args],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": SRC, **(env or {})},
        )


@contextlib.contextmanager
def served(
    config: Path, port: int, *args: str, env: dict[str, str] | None = None
) -> Iterator[Proc]:
    """``wardgate serve`` until it answers /healthz; stopped (and waited for) after."""
    proc = run_cli(config, *args, env=env)
    served = Proc(port, proc, config.with_suffix(".log"))
    try:
        deadline = time.monotonic() + 30
        while not _healthy(port):
            if proc.poll() is not None:
                raise RuntimeError(f"wardgate serve exited {proc.returncode}:\n{served.logs()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"wardgate serve did not start:\n{served.logs()}")
            time.sleep(0.05)
        yield served
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
