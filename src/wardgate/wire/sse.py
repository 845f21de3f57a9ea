"""Server-Sent Events: an incremental decoder and an encoder, per the WHATWG rules."""

from __future__ import annotations

from dataclasses import dataclass

from wardgate.errors import PayloadTooLarge

__all__ = ["SseDecoder", "SseEvent", "encode_event"]


@dataclass(frozen=True, slots=True)
class SseEvent:
    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None


class SseDecoder:
    """Feed it lines (without the line terminator); it returns whole events.

    ``max_event_chars`` bounds what one event may accumulate across its ``data`` lines,
    so an event that never ends cannot grow without bound.
    """

    __slots__ = ("_data", "_event", "_id", "_max", "_retry", "_size")

    def __init__(self, max_event_chars: int | None = None) -> None:
        self._max = max_event_chars
        self._size = 0
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self._retry: int | None = None

    def feed_line(self, line: str) -> SseEvent | None:
        """Take one line; returns the event it completes, if any.

        Raises:
            PayloadTooLarge: the current event's data exceeds ``max_event_chars``.
        """
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._size += len(value) + 1
            if self._max is not None and self._size > self._max:
                self._data = []
                self._size = 0
                raise PayloadTooLarge("SSE event exceeds the size limit")
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> SseEvent | None:
        if not self._data and self._id is None and self._retry is None:
            self._event = ""
            return None
        event = SseEvent(
            data="\n".join(self._data),
            event=self._event or "message",
            id=self._id,
            retry=self._retry,
        )
        self._data = []
        self._size = 0
        self._event = ""
        self._retry = None
        # The last event id persists across events per the spec; we report it only
        # on the event that set it, which is what a relay needs.
        self._id = None
        return event


def _clean(value: str) -> str:
    # A CR or LF inside a field would let a value smuggle in new SSE fields.
    return value.replace("\r", " ").replace("\n", " ")


def encode_event(
    data: bytes | None,
    *,
    event: str | None = None,
    event_id: str | None = None,
    retry: int | None = None,
) -> bytes:
    """One SSE event. ``data`` must hold no newline (compact JSON never does)."""
    parts: list[bytes] = []
    if event is not None:
        parts.append(b"event: " + _clean(event).encode() + b"\n")
    if event_id is not None:
        parts.append(b"id: " + _clean(event_id).encode() + b"\n")
    if retry is not None:
        parts.append(b"retry: %d\n" % retry)
    if data is not None:
        for line in data.split(b"\n"):
            parts.append(b"data: " + line + b"\n")
    else:
        parts.append(b"data: \n")
    parts.append(b"\n")
    return b"".join(parts)
