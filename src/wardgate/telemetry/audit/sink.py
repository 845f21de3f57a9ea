"""The audit sink: security decisions to a hash-chained, sealed JSON-lines file.

``emit`` runs on the call path, so it only turns the event into a dict and puts it on
a bounded queue (no I/O, no hashing); a writer thread of its own chains, writes and
seals. A full queue drops the event and counts it, and the writer then records a
``gap`` record with the count, so that the trail itself says it is incomplete.

Files: the live file is ``path``; rotation renames it to ``path.000001``, ``…02`` and so
on (oldest first) after sealing it, and the new file opens with a ``start`` record
linked to the last hash of the one before, so the chain runs across files.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from wardgate.telemetry.audit.chain import GENESIS, Chainer
from wardgate.telemetry.events import GatewayEvent
from wardgate.telemetry.sinks import event_fields

__all__ = ["DEFAULT_KINDS", "AuditSink"]

log = logging.getLogger("wardgate.audit")

#: The security decisions: the access log (every call's outcome), guard and policy
#: decisions, failed authentication, sessions, and behaviour alerts.
DEFAULT_KINDS = frozenset(
    {
        "call.ended",
        "guard.decision",
        "policy.decision",
        "auth.failed",
        "session.opened",
        "session.closed",
        "ueba.alert",
    }
)

_STOP = object()


class AuditSink:
    """An :class:`~wardgate.telemetry.events.EventSink` writing the audit trail.

    ``start()`` opens the file (continuing the chain of one already there) and starts
    the writer; ``close()`` seals and stops it. ``dropped`` counts events lost to a full
    queue, ``failed`` write errors.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        signer: Ed25519PrivateKey,
        *,
        kinds: Collection[str] = DEFAULT_KINDS,
        queue_size: int = 65_536,
        seal_every: int = 1000,
        seal_seconds: float = 10.0,
        max_bytes: int = 64 * 1024 * 1024,
        fsync: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self._signer = signer
        self._kinds = frozenset(kinds)
        self._queue: queue.Queue[object] = queue.Queue(queue_size)
        self._seal_every = seal_every
        self._seal_seconds = seal_seconds
        self._max_bytes = max_bytes
        self._fsync = fsync
        self._clock = clock
        self._thread: threading.Thread | None = None
        self._fh: Any = None
        self._chain: Chainer | None = None
        self._size = 0
        self.dropped = 0
        self._dropped_noted = 0
        self.failed = 0
        self.written = 0

    # -- the call path --------------------------------------------------------------

    def emit(self, event: GatewayEvent) -> None:
        if event.kind not in self._kinds:
            return
        fields = event_fields(event)
        fields["ts"] = self._clock()
        try:
            self._queue.put_nowait(fields)
        except queue.Full:
            self.dropped += 1

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Open the trail and start the writer thread.

        Raises:
            OSError: the file cannot be opened or read.
        """
        if self._thread is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        seq, prev, damaged = _resume(self.path)
        if damaged:
            # A cut last line (a crash mid-write): keep the damaged file as it is, for
            # verify to report, and continue the chain in a new one.
            self._rotate_name()
        self._chain = Chainer(self._signer, seq, prev)
        self._open(reason="damaged" if damaged else ("restart" if seq else "new"))
        self._thread = threading.Thread(target=self._run, name="wardgate-audit", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        """Whether the writer thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def close(self, timeout: float = 10.0) -> None:
        """Drain the queue, seal, and stop the writer (waits at most ``timeout``)."""
        thread = self._thread
        if thread is None:
            return
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            log.error("audit writer is stuck; %d events not written", self._queue.qsize())
        thread.join(timeout)
        self._thread = None

    # -- the writer thread --------------------------------------------------------------

    def _open(self, reason: str) -> None:
        assert self._chain is not None
        self._fh = self.path.open("ab")
        self._size = self._fh.tell()
        self._write(self._chain.link({"type": "start", "ts": self._clock(), "reason": reason}))

    def _write(self, line: bytes) -> None:
        try:
            self._fh.write(line)
            self._size += len(line)
        except OSError:
            self.failed += 1
            log.exception("audit write failed")

    def _sync(self) -> None:
        try:
            self._fh.flush()
            if self._fsync:
                os.fsync(self._fh.fileno())
        except OSError:
            self.failed += 1
            log.exception("audit flush failed")

    def _seal(self) -> None:
        assert self._chain is not None
        self._write(self._chain.seal(self._clock()))
        self._last_seal = time.monotonic()

    def _run(self) -> None:
        chain = self._chain
        assert chain is not None
        self._last_seal = time.monotonic()
        stop = False
        while not stop:
            wait = max(0.0, self._last_seal + self._seal_seconds - time.monotonic())
            try:
                item = self._queue.get(timeout=wait if chain.since_seal else None)
            except queue.Empty:
                self._seal()
                self._sync()
                continue
            batch = [item]
            # Take what is already queued in one go: one flush per batch, not per record.
            while len(batch) < 4096:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            for entry in batch:
                if entry is _STOP:
                    stop = True
                    continue
                self._note_drops()
                assert isinstance(entry, dict)
                record = {"type": "event", "ts": entry.pop("ts"), "event": entry}
                self._write(chain.link(record))
                self.written += 1
                if chain.since_seal >= self._seal_every:
                    self._seal()
                if self._size >= self._max_bytes:
                    self._rollover()
            self._note_drops()
            due = stop or time.monotonic() - self._last_seal >= self._seal_seconds
            if due and chain.since_seal:
                self._seal()
            self._sync()
            for _ in batch:
                self._queue.task_done()
        self._fh.close()

    def _note_drops(self) -> None:
        dropped = self.dropped
        if dropped != self._dropped_noted:
            assert self._chain is not None
            gap = {"type": "gap", "ts": self._clock(), "dropped": dropped - self._dropped_noted}
            self._write(self._chain.link(gap))
            self._dropped_noted = dropped

    def _rollover(self) -> None:
        self._seal()
        self._sync()
        self._fh.close()
        self._rotate_name()
        self._open(reason="rotated")

    def _rotate_name(self) -> None:
        if not self.path.exists():
            return
        pattern = re.compile(re.escape(self.path.name) + r"\.(\d{6})$")
        taken = [int(m[1]) for p in self.path.parent.iterdir() if (m := pattern.match(p.name))]
        self.path.rename(self.path.with_name(f"{self.path.name}.{max(taken, default=0) + 1:06d}"))


def _resume(path: Path) -> tuple[int, str, bool]:
    """Where the chain stands in an existing file: (next seq, last hash, tail damaged)."""
    if not path.exists() or path.stat().st_size == 0:
        return 0, GENESIS, False
    with path.open("rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        block = 64 * 1024
        fh.seek(max(0, size - block))
        tail = fh.read()
    damaged = not tail.endswith(b"\n")
    lines = [ln for ln in tail.split(b"\n") if ln]
    if damaged and lines:
        lines.pop()
    for raw in reversed(lines):
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("seq"), int):
            return record["seq"] + 1, str(record.get("hash")), damaged
    return 0, GENESIS, damaged
