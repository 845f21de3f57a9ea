"""The embedded event sinks: JSON lines on a stream, and an in-memory list for tests."""

from __future__ import annotations

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
    or forge a record. Write errors are counted, never raised into a call.
    """

    def __init__(self, stream: IO[bytes] | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr.buffer
        self.failed = 0
        self._second = -1
        self._stamp = ""

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
            body = orjson.dumps(event, default=str)
            self._stream.write(head + body[1:] + b"\n")
            self._stream.flush()
        except (OSError, ValueError, TypeError):
            self.failed += 1


class MemorySink:
    """Keeps the last ``maxlen`` events; for tests and for ``/debug`` style inspection."""

    def __init__(self, maxlen: int = 10_000) -> None:
        self.events: deque[GatewayEvent] = deque(maxlen=maxlen)

    def emit(self, event: GatewayEvent) -> None:
        self.events.append(event)

    def of(self, kind: type[GatewayEvent]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]
