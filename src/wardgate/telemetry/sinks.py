"""The embedded event sinks: JSON lines on a stream, and an in-memory list for tests."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from collections import deque
from typing import IO, Any

import orjson

from wardgate.telemetry.events import GatewayEvent

__all__ = ["JsonLinesSink", "MemorySink", "event_fields"]

_FIELDS: dict[type[GatewayEvent], tuple[str, ...]] = {}


def event_fields(event: GatewayEvent) -> dict[str, Any]:
    """An event as a flat dict, ``kind`` first (field names cached per class)."""
    cls = type(event)
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls))
    out: dict[str, Any] = {"kind": cls.kind}
    for name in names:
        out[name] = getattr(event, name)
    return out


class JsonLinesSink:
    """One JSON object a line, written straight to a binary stream (no ``logging``).

    orjson escapes every control character, so no field value can end a line early
    or forge a record. Write errors are counted, never raised into a call. On an event
    loop, the lines of one loop step are written together at its end (one system call
    for every call that ended in that step, not one each); elsewhere at once.
    :meth:`flush` writes what is pending (the gateway calls it when it closes).
    """

    def __init__(self, stream: IO[bytes] | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr.buffer
        self.failed = 0
        self._second = -1
        self._stamp = ""
        self._pending: list[bytes] | None = None

    def _timestamp(self, now: float) -> str:
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._stamp}.{int((now - second) * 1000):03d}Z"

    def emit(self, event: GatewayEvent) -> None:
        # orjson writes a dataclass as an object; ``ts`` and ``kind`` go in front of its
        # fields (every event has fields, so the object is never empty).
        head = f'{{"ts":"{self._timestamp(time.time())}","kind":"{event.kind}",'.encode()
        try:
            line = head + orjson.dumps(event, default=str)[1:] + b"\n"
        except TypeError:
            self.failed += 1
            return
        if self._pending is not None:
            self._pending.append(line)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._write(line)
            return
        self._pending = [line]
        loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write the lines still pending."""
        lines, self._pending = self._pending, None
        if lines:
            self._write(lines[0] if len(lines) == 1 else b"".join(lines))

    def _write(self, data: bytes) -> None:
        try:
            self._stream.write(data)
            self._stream.flush()
        except (OSError, ValueError):
            self.failed += 1


class MemorySink:
    """Keeps the last ``maxlen`` events; for tests and for ``/debug`` style inspection."""

    def __init__(self, maxlen: int = 10_000) -> None:
        self.events: deque[GatewayEvent] = deque(maxlen=maxlen)

    def emit(self, event: GatewayEvent) -> None:
        self.events.append(event)

    def of(self, kind: type[GatewayEvent]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]
