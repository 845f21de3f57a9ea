"""Log records are one JSON object a line, carry the decision id, and cannot be forged."""

from __future__ import annotations

import json
import logging

import pytest

from conftest import stdio_demo_upstream
from support.http import modern_body, modern_headers, post
from support.servers import run_gateway
from wardgate.telemetry.logs import JsonFormatter


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


async def test_the_decision_id_a_client_sees_is_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = {
        "upstreams": {"demo": stdio_demo_upstream()},
        "routes": {"demo": {"upstreams": ["demo"], "tools": {"deny": ["delete_*"]}}},
    }
    caplog.set_level(logging.INFO, logger="wardgate")
    async with run_gateway(config) as (url, _):
        body = modern_body("tools/call", {"name": "delete_everything", "arguments": {}})
        status, _, answer = await post(
            f"{url}/mcp/demo", body, modern_headers("tools/call", "delete_everything")
        )
    assert status == 200
    decision = answer["error"]["data"]["decisionId"]
    about = [r for r in caplog.records if getattr(r, "decision_id", None) == decision]
    assert any("delete_everything" in r.getMessage() for r in about)  # the real reason, logged
    assert any(r.name == "wardgate.access" for r in about)  # and the access line
    assert "delete_everything" not in json.dumps(answer)  # the client learns only the id
