"""SSE decoding holds at most one bounded event in memory, however the stream goes on."""

from __future__ import annotations

import tracemalloc
from collections.abc import AsyncIterator

import pytest

from wardgate.errors import PayloadTooLarge, UpstreamError
from wardgate.upstream.http import iter_sse
from wardgate.wire.sse import SseDecoder


def test_an_event_is_bounded_across_its_lines() -> None:
    decoder = SseDecoder(max_event_chars=100)
    for _ in range(9):
        assert decoder.feed_line("data: " + "x" * 10) is None
    with pytest.raises(PayloadTooLarge):
        decoder.feed_line("data: " + "x" * 10)
    # The decoder dropped what it held and decodes the next event normally.
    assert decoder.feed_line("") is None
    decoder.feed_line('data: {"a":1}')
    event = decoder.feed_line("")
    assert event is not None and event.data == '{"a":1}'


def test_events_within_the_bound_keep_coming() -> None:
    decoder = SseDecoder(max_event_chars=100)
    for _ in range(1000):  # 1000 events of 60 characters: the bound is per event
        decoder.feed_line("data: " + "y" * 60)
        assert decoder.feed_line("") is not None


class Source:
    """An upstream body that never ends; counts what was pulled from it."""

    def __init__(self, piece: bytes) -> None:
        self.piece = piece
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            self.pulled += len(self.piece)
            yield self.piece


async def _drain(source: Source, limit: int) -> None:
    async for _ in iter_sse(source.__aiter__(), limit):
        pass


async def test_an_endless_event_stops_the_reading_at_the_bound() -> None:
    source = Source(b"data: " + b"z" * 1000 + b"\n")
    with pytest.raises(UpstreamError):
        await _drain(source, 64 * 1024)
    assert source.pulled <= 64 * 1024 + 2 * 1007


async def test_the_bound_is_in_bytes_not_characters() -> None:
    # 4-byte characters: 20,000 of them are 80,000 bytes, over a 64 KiB bound.
    source = Source(("data: " + "\U0001f600" * 1000 + "\n").encode())
    with pytest.raises(UpstreamError):
        await _drain(source, 64 * 1024)
    assert source.pulled <= 64 * 1024 + 2 * 4007


async def test_an_endless_line_stops_the_reading_at_the_bound() -> None:
    source = Source(b"data: " + b"z" * 1000)
    with pytest.raises(UpstreamError):
        await _drain(source, 64 * 1024)
    assert source.pulled <= 64 * 1024 + 2 * 1006


async def test_comments_and_empty_events_hold_no_memory() -> None:
    async def pings() -> AsyncIterator[bytes]:
        for _ in range(20_000):
            yield b": ping\n\ndata: \n\n"

    tracemalloc.start()
    try:
        events = [e async for e in iter_sse(pings(), 1024)]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Nothing is relayed and nothing piles up (it is the call's deadline, not the
    # decoder, that ends such a stream).
    assert events == [] and peak < 64 * 1024
