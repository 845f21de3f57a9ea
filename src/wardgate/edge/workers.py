"""``wardgate serve --workers N``: N gateway processes on one listening socket.

The supervisor reserves the address (a bound socket that never listens), then forks N
workers; each listens on its own socket in one ``SO_REUSEPORT`` group on that address
(the kernel spreads incoming connections across them) and runs the whole of
:func:`wardgate.edge.serve.serve` on it, with its own bounded listener, upstream sessions,
stdio children and drain. The supervisor serves nothing itself: it forwards SIGTERM and
SIGINT to every worker (so one signal drains them all), waits for them, and exits 0 when
they all did. A worker that dies on its own is replaced, unless it died within its first
seconds (a start-up fault would only loop), which stops the others and exits 1.

Workers share nothing in memory, so more than one is refused while any state the config
uses lives in memory (:func:`check_workers`): replay caches and limit counters must be in
Redis for N processes to enforce one bound.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from types import FrameType

from wardgate.config.model import GatewayConfig
from wardgate.errors import ConfigError

__all__ = ["check_workers", "serve_workers"]

log = logging.getLogger("wardgate")

#: A worker that exits sooner than this after its start is a start-up fault.
_CRASH_WINDOW = 5.0
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def check_workers(config: GatewayConfig, workers: int) -> None:
    """Refuse ``workers`` processes when a bound the config sets would be per process.

    Raises:
        ConfigError: ``workers`` < 1, or more than one worker with in-memory state
            (the message names the Redis option to set).
    """
    if workers < 1:
        raise ConfigError("--workers must be at least 1")
    if workers == 1:
        return
    memory: list[str] = []
    if config.auth is not None and config.auth.replay_store == "memory":
        memory.append('[auth] replay_store = "redis" (with redis_url)')
    if config.limits is not None and config.limits.store == "memory":
        memory.append('[limits] store = "redis" (with [limits.redis] url)')
    if memory:
        raise ConfigError(
            f"--workers {workers} needs shared state, but the config keeps it in each "
            "process's memory; set " + " and ".join(memory)
        )


def _socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # One socket per worker in one SO_REUSEPORT group: the kernel spreads connections
    # across them by hash (a shared socket lets whichever worker wakes first take most).
    # Linux admits to the group only sockets of the same effective user.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc}") from None
    return sock


def _run_worker(config: GatewayConfig, reserved: socket.socket) -> int:  # pragma: no cover - child
    from wardgate.edge.serve import serve

    # The supervisor's handlers do not belong here: serve installs the worker's own.
    for sig in _SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    try:
        sock = _socket(config.server.host, reserved.getsockname()[1])
        reserved.close()
        sock.listen(2048)
        return serve(config, None, sockets=[sock])
    except Exception:
        log.exception("worker %d failed", os.getpid())
        return 1


def _fork(config: GatewayConfig, reserved: socket.socket) -> int:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            code = _run_worker(config, reserved)
        finally:
            logging.shutdown()
            os._exit(code)
    return pid


def serve_workers(config: GatewayConfig, workers: int, banner: str | None = None) -> int:
    """Serve ``config`` with ``workers`` processes on one socket until SIGTERM/SIGINT.

    Raises:
        ConfigError: :func:`check_workers` refuses, or the address cannot be bound.
    """
    check_workers(config, workers)
    # Bound, never listening: holds the port (port 0 included) for the workers' group
    # and receives no connection itself.
    sock = _socket(config.server.host, config.server.port)
    stopping = False
    children: dict[int, float] = {}

    def forward(sig: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    # Handlers before the forks: a signal between two forks still reaches every worker
    # (each child resets them to the default before serve installs its own).
    previous = {sig: signal.signal(sig, forward) for sig in _SIGNALS}
    failed = False
    try:
        for _ in range(workers):
            children[_fork(config, sock)] = time.monotonic()
        if banner:
            print(banner, flush=True)
        log.info(
            "serving with %d workers on %s:%d",
            workers,
            config.server.host,
            sock.getsockname()[1],
        )
        while children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            except InterruptedError:  # pragma: no cover - PEP 475 retries
                continue
            started = children.pop(pid, None)
            if started is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            if stopping:
                failed = failed or code != 0
                continue
            if time.monotonic() - started < _CRASH_WINDOW:
                log.error("worker %d exited %d at start-up: stopping", pid, code)
                failed = True
                forward(signal.SIGTERM, None)
                continue
            log.error("worker %d exited %d: starting another", pid, code)
            children[_fork(config, sock)] = time.monotonic()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
    return 1 if failed else 0
