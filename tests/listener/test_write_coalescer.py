"""The head-coalescing transport: a response head leaves in one write with its body,
a lone head at the end of its loop step, and nothing is reordered or written after an
abort. A recording transport stands in for the socket (this is our logic only; the
listener tests run it under the real ``wardgate serve``)."""

from __future__ import annotations

import asyncio
from typing import Any

from wardgate.edge.write_coalescer import HeadCoalescingTransport

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


class Recording(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False
        self.eof = False

    def write(self, data: Any) -> None:
        assert not self.closed, "written after close"
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = self.aborted = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def get_write_buffer_size(self) -> int:
        return 0


async def test_head_and_body_leave_in_one_write() -> None:
    raw = Recording()
    t = HeadCoalescingTransport(raw, asyncio.get_running_loop())
    t.write(HEAD)
    assert raw.writes == [] and t.get_write_buffer_size() == len(HEAD)
    t.write(b"{}")
    assert raw.writes == [HEAD + b"{}"]
    await asyncio.sleep(0)  # the scheduled flush finds nothing held
    assert raw.writes == [HEAD + b"{}"]


async def test_a_lone_head_goes_at_the_end_of_its_step_then_events_pass_straight() -> None:
    raw = Recording()
    t = HeadCoalescingTransport(raw, asyncio.get_running_loop())
    t.write(HEAD.replace(b"content-length: 2", b"content-type: text/event-stream"))
    await asyncio.sleep(0)
    assert len(raw.writes) == 1 and raw.writes[0].startswith(b"HTTP/1.1 200")
    t.write(b"data: 1\r\n\r\n")
    t.write(b"data: 2\r\n\r\n")
    assert raw.writes[1:] == [b"data: 1\r\n\r\n", b"data: 2\r\n\r\n"]


async def test_body_bytes_that_look_like_a_head_keep_their_order() -> None:
    raw = Recording()
    t = HeadCoalescingTransport(raw, asyncio.get_running_loop())
    t.write(b"first")
    t.write(HEAD)  # held: looks like a head
    t.write(b"last")
    assert b"".join(raw.writes) == b"first" + HEAD + b"last"


async def test_close_and_eof_write_a_held_head_first_abort_drops_it() -> None:
    loop = asyncio.get_running_loop()
    raw = Recording()
    t = HeadCoalescingTransport(raw, loop)
    t.write(HEAD)
    t.close()
    assert raw.writes == [HEAD] and raw.closed
    raw = Recording()
    t = HeadCoalescingTransport(raw, loop)
    t.write(HEAD)
    t.write_eof()
    assert raw.writes == [HEAD] and raw.eof
    raw = Recording()
    t = HeadCoalescingTransport(raw, loop)
    t.write(HEAD)
    t.abort()
    await asyncio.sleep(0)  # the scheduled flush must not write to an aborted socket
    assert raw.writes == [] and raw.aborted
