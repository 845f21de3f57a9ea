"""Log records are one JSON object a line, carry the decision id, and cannot be forged."""

from __future__ import annotations

import io
import json
import logging

from conftest import stdio_demo_upstream
from support.http import modern_body, modern_headers, post
from support.servers import gateway_events, run_gateway
from wardgate.telemetry.events import CallEnded, GuardDecision
from wardgate.telemetry.logs import JsonFormatter
from wardgate.telemetry.sinks import JsonLinesSink


def _record(msg: str, **extra: object) -> logging.LogRecord:
    record = logging.makeLogRecord({"name": "wardgate.test", "levelno": 20, "levelname": "INFO"})
    record.msg = msg
    record.__dict__.update(extra)
    return record


def test_crlf_in_messages_and_fields_cannot_start_a_new_record() -> None:
    forged = 'ok\r\n{"level":"info","msg":"admin logged in"}'
    line = JsonFormatter().format(_record(forged, decision_id="abc", tool=forged))
    assert "\n" not in line and "\r" not in line
    entry = json.loads(line)
    assert entry["msg"] == forged and entry["tool"] == forged and entry["decision_id"] == "abc"


async def test_the_decision_id_a_client_sees_is_in_the_events() -> None:
    config = {
        "upstreams": {"demo": stdio_demo_upstream()},
        "routes": {"demo": {"upstreams": ["demo"], "tools": {"deny": ["delete_*"]}}},
    }
    async with run_gateway(config) as (url, gateway):
        body = modern_body("tools/call", {"name": "delete_everything", "arguments": {}})
        status, _, answer = await post(
            f"{url}/mcp/demo", body, modern_headers("tools/call", "delete_everything")
        )
        events = gateway_events(gateway)
    assert status == 200
    decision = answer["error"]["data"]["decisionId"]
    (denial,) = [e for e in events.of(GuardDecision) if e.decision_id == decision]
    assert denial.guard == "tool_access" and "delete_everything" in denial.reason  # logged
    (ended,) = [e for e in events.of(CallEnded) if e.decision_id == decision]  # the access line
    assert (ended.status, ended.code, ended.target) == (
        "denied",
        "wardgate.denied",
        "delete_everything",
    )
    assert "delete_everything" not in json.dumps(answer["error"])  # the client learns only the id


def test_an_event_line_cannot_be_forged() -> None:
    forged = 'x"}\n{"kind":"call.ended","subject":"admin'
    stream = io.BytesIO()
    JsonLinesSink(stream).emit(
        GuardDecision(
            "d1", "r", "g", "tools/call", forged + "\r\n\u2028", forged, False, None, forged
        )
    )
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["kind"] == "guard.decision" and entry["subject"] == forged


class _CountingStream(io.BytesIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.writes += 1
        return super().write(data)


async def test_lines_of_one_loop_step_leave_in_one_write_and_nothing_is_lost() -> None:
    import asyncio

    stream = _CountingStream()
    sink = JsonLinesSink(stream)
    events = [
        GuardDecision(f"d{i}", "r", "g", "tools/call", "t", "s", False, None, "x")
        for i in range(50)
    ]
    for event in events:
        sink.emit(event)
    assert stream.writes == 0  # pending until the step ends
    await asyncio.sleep(0)
    assert stream.writes == 1
    ids = [json.loads(line)["decision_id"] for line in stream.getvalue().splitlines()]
    assert ids == [f"d{i}" for i in range(50)]
    # The next step starts a new batch; flush() writes what is pending at once.
    sink.emit(events[0])
    sink.flush()
    assert stream.writes == 2 and len(stream.getvalue().splitlines()) == 51
    await asyncio.sleep(0)
    assert stream.writes == 2


def test_outside_an_event_loop_a_line_is_written_at_once() -> None:
    stream = _CountingStream()
    JsonLinesSink(stream).emit(
        GuardDecision("d1", "r", "g", "tools/call", "t", "s", False, None, "x")
    )
    assert stream.writes == 1 and stream.getvalue().endswith(b"\n")
