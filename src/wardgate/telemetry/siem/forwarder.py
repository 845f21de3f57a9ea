"""A SIEM sink: events to a bounded queue, batches to a transport, a disk spool for outages.

``emit`` (the call path) sanitizes the event's fields and appends them to a bounded
in-memory queue; when it is full the event is dropped and counted. A task of its own
sends batches. A batch that fails (after the transport's own attempt) is written to the
spool directory, and so is everything queued behind it, so an outage fills the disk
spool, not memory; the task then retries with exponential backoff (with jitter) and,
once the endpoint answers, sends the spool oldest first before anything newer, so
nothing is lost and order is kept. The spool is bounded in bytes: past it, batches are
dropped and counted. It survives a restart (files are picked up at start).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, Protocol

import orjson

from wardgate.telemetry.events import GatewayEvent
from wardgate.telemetry.siem.formats import sanitize
from wardgate.telemetry.sinks import event_fields

__all__ = ["Forwarder", "Transport"]

log = logging.getLogger("wardgate.siem")


class Transport(Protocol):
    """Delivers one batch; raises on any failure (the forwarder spools and retries)."""

    async def send(self, records: Sequence[dict[str, Any]]) -> None: ...

    async def aclose(self) -> None: ...


class Forwarder:
    """One SIEM destination; an :class:`~wardgate.telemetry.events.EventSink`."""

    def __init__(
        self,
        name: str,
        transport: Transport,
        *,
        kinds: Collection[str] | None = None,
        queue_size: int = 10_000,
        batch_size: int = 200,
        spool_dir: str | Path | None = None,
        spool_max_bytes: int = 256 * 1024 * 1024,
        backoff_initial: float = 0.2,
        backoff_max: float = 30.0,
        flush_seconds: float = 1.0,
    ) -> None:
        self.name = name
        self._transport = transport
        self._kinds = frozenset(kinds) if kinds is not None else None
        self._queue: deque[dict[str, Any]] = deque()
        self._queue_size = queue_size
        self._batch = batch_size
        self._spool = Path(spool_dir) if spool_dir is not None else None
        self._spool_max = spool_max_bytes
        self._spool_seq = 0
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._flush = flush_seconds
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.dropped = 0
        self.delivered = 0
        self.failures = 0
        self.healthy = True
        self.close_seconds = 5.0

    # -- the call path ------------------------------------------------------------------

    def emit(self, event: GatewayEvent) -> None:
        if self._kinds is not None and event.kind not in self._kinds:
            return
        if len(self._queue) >= self._queue_size:
            self.dropped += 1
            return
        record = sanitize(event_fields(event))
        record["ts"] = time.time()
        self._queue.append(record)
        if len(self._queue) >= self._batch:
            self._wake.set()

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the spool (picking up what a previous run left) and start sending."""
        if self._spool is not None:
            self._spool.mkdir(parents=True, exist_ok=True)
            names = [p.stem for p in self._spool.glob("*.jsonl")]
            self._spool_seq = max((int(n) for n in names if n.isdigit()), default=0)
        self._task = asyncio.create_task(self._run(), name=f"siem-{self.name}")

    async def aclose(self) -> None:
        """Send what is queued (bounded by ``close_seconds``), spool the rest, stop."""
        timeout = self.close_seconds
        self._closing = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
        while self._queue:
            self._to_spool(self._take())
        await self._transport.aclose()

    @property
    def queued(self) -> int:
        """Events waiting in memory."""
        return len(self._queue)

    @property
    def pending(self) -> int:
        """Events queued in memory plus batches in the spool."""
        return len(self._queue) + len(self._spooled())

    # -- the sender -------------------------------------------------------------------------

    def _take(self) -> list[dict[str, Any]]:
        n = min(self._batch, len(self._queue))
        return [self._queue.popleft() for _ in range(n)]

    def _spooled(self) -> list[Path]:
        if self._spool is None or not self._spool.exists():
            return []
        return sorted(self._spool.glob("*.jsonl"))

    def _spool_bytes(self) -> int:
        return sum(p.stat().st_size for p in self._spooled())

    def _to_spool(self, batch: list[dict[str, Any]]) -> None:
        if not batch:
            return
        data = b"".join(orjson.dumps(r, default=str) + b"\n" for r in batch)
        if self._spool is None or self._spool_bytes() + len(data) > self._spool_max:
            self.dropped += len(batch)
            return
        self._spool_seq += 1
        final = self._spool / f"{self._spool_seq:012d}.jsonl"
        part = final.with_suffix(".part")
        part.write_bytes(data)
        part.rename(final)  # a crash never leaves half a batch to replay

    def _spool_queue(self) -> None:
        while self._queue:
            self._to_spool(self._take())

    async def _send(self, batch: Sequence[dict[str, Any]]) -> bool:
        try:
            await self._transport.send(batch)
        except Exception as exc:
            self.failures += 1
            if self.healthy:
                log.warning("SIEM sink %s is failing: %s", self.name, exc)
            self.healthy = False
            return False
        if not self.healthy:
            log.warning("SIEM sink %s delivers again", self.name)
        self.healthy = True
        self.delivered += len(batch)
        return True

    async def _run(self) -> None:
        backoff = self._backoff_initial
        while True:
            if not self._closing:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._flush)
            self._wake.clear()
            progressed = await self._drain()
            if progressed:
                backoff = self._backoff_initial
            elif not self._closing:
                # The endpoint is down: wait, with jitter so replicas do not stampede;
                # what arrives meanwhile goes to the spool a batch at a time.
                loop = asyncio.get_running_loop()
                until = loop.time() + backoff * (0.5 + random.random() / 2)  # noqa: S311
                while (left := until - loop.time()) > 0 and not self._closing:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), left)
                    self._spool_queue()
                backoff = min(backoff * 2, self._backoff_max)
            if self._closing and (not self._queue or not self.healthy):
                return

    async def _drain(self) -> bool:
        """Send the spool, then the queue; ``False`` as soon as the endpoint fails."""
        for path in self._spooled():
            batch = [orjson.loads(line) for line in path.read_bytes().splitlines() if line]
            if not await self._send(batch):
                self._spool_queue()
                return False
            path.unlink()
        while self._queue:
            batch = self._take()
            if not await self._send(batch):
                self._to_spool(batch)
                self._spool_queue()
                return False
        return True
