"""Stdio upstreams: an MCP server run as a child process behind the sandbox seam.

A handshake-era client session gets a process of its own (one sandbox per session:
no state leaks between clients); stateless requests share one pooled process. Request
ids are remapped so that clients can never collide with one another, and a process
that dies is restarted: the calls in flight get an error, a dedicated session replays
its ``initialize`` handshake into the new process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence

import orjson

from wardgate.errors import UpstreamError
from wardgate.upstream.channel import ChannelSession
from wardgate.upstream.sandbox import Sandbox
from wardgate.wire.jsonrpc import Message

__all__ = ["StdioSession", "StdioUpstream"]

log = logging.getLogger("wardgate.upstream.stdio")

_STOP_GRACE = 2.0


class StdioUpstream:
    """A configured stdio server: how to start it and how long a request may take."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        sandbox: Sandbox,
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        request_timeout: float = 300.0,
    ) -> None:
        self.name = name
        self.argv = tuple(argv)
        self.env = dict(env or {})
        self.cwd = cwd
        self.sandbox = sandbox
        self.request_timeout = request_timeout
        self._shared: StdioSession | None = None
        self._sessions: set[StdioSession] = set()

    async def start(self) -> None:
        self._shared = StdioSession(self)

    async def aclose(self) -> None:
        sessions = list(self._sessions)
        if self._shared is not None:
            sessions.append(self._shared)
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
        self._sessions.clear()

    async def open_session(self) -> StdioSession:
        session = StdioSession(self)
        self._sessions.add(session)
        return session

    def shared_session(self, key: str = "") -> StdioSession:
        if self._shared is None:
            raise UpstreamError(f"upstream {self.name} is not started")
        return self._shared

    def forget(self, session: StdioSession) -> None:
        self._sessions.discard(session)


class StdioSession(ChannelSession):
    """One child process behind the sandbox seam."""

    def __init__(self, upstream: StdioUpstream) -> None:
        super().__init__(upstream.name, upstream.request_timeout)
        self._up = upstream
        self._proc: asyncio.subprocess.Process | None = None
        self._tasks: list[asyncio.Task[None]] = []
        #: Set when stdout closes: the process is gone even before it is reaped.
        self._eof = True

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None and not self._eof

    async def _connect(self) -> None:
        try:
            self._proc = await self._up.sandbox.spawn(self._up.argv, self._up.env, self._up.cwd)
        except OSError as exc:
            raise UpstreamError(f"cannot start upstream {self._up.name}: {exc}") from None
        proc = self._proc
        self._eof = False
        self._tasks = [
            asyncio.create_task(self._read_stdout(proc)),
            asyncio.create_task(self._read_stderr(proc)),
        ]

    async def _send(self, data: bytes) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None or proc.returncode is not None:
            raise UpstreamError(f"upstream {self._up.name} is not running")
        try:
            proc.stdin.write(data + b"\n")
            await proc.stdin.drain()
        except (ConnectionError, RuntimeError) as exc:
            raise UpstreamError(f"upstream {self._up.name} stdin closed: {exc!r}") from None

    async def _read_stdout(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        try:
            while True:
                try:
                    line = await proc.stdout.readline()
                except ValueError:
                    log.error("upstream %s wrote an over-long line; stopping it", self._up.name)
                    proc.kill()
                    break
                if not line:
                    break
                line = line.strip()
                if not line:
                    continue
                try:
                    message = Message.from_raw(orjson.loads(line))
                except Exception:
                    # The spec forbids non-MCP output on stdout; drop it, never relay it.
                    log.warning("upstream %s wrote a non-JSON-RPC line to stdout", self._up.name)
                    continue
                self._dispatch(message)
        finally:
            self._eof = True
            self._fail_pending()

    async def _read_stderr(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        with contextlib.suppress(ValueError, ConnectionError):
            async for line in proc.stderr:
                text = line[:2000].decode("utf-8", "replace").rstrip()
                log.debug(
                    "upstream %s stderr: %s", self._up.name, text.encode("unicode_escape").decode()
                )

    async def close(self) -> None:
        self._mark_closed()
        self._up.forget(self)
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        # Spec shutdown order: close stdin, wait, SIGTERM, wait, SIGKILL.
        if proc.stdin is not None:
            with contextlib.suppress(Exception):
                proc.stdin.close()
        for signal_step in (None, proc.terminate, proc.kill):
            if signal_step is not None:
                with contextlib.suppress(ProcessLookupError):
                    signal_step()
            try:
                await asyncio.wait_for(proc.wait(), _STOP_GRACE)
                break
            except TimeoutError:
                continue
        for task in self._tasks:
            task.cancel()
