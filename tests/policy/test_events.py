"""The decision event in the JSON-lines sink: one line, the input redacted."""

from __future__ import annotations

import io
import json

from wardgate.policy.decision import Action, PolicyContext, PolicyInput, Resource, Subject
from wardgate.policy.decision_log import PolicyDecided, redact_input
from wardgate.telemetry.sinks import JsonLinesSink

TOKEN = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl"


def test_a_decision_is_one_json_line_without_the_secret() -> None:
    policy_input = PolicyInput(
        Subject("alice", "acme", groups=frozenset({"staff"})),
        Action("tools/call", "read_record", "tool", "crm"),
        Resource("crm", "crm", "globex", (("api_key", "k-123"), ("note", TOKEN))),
        PolicyContext("10.0.0.5", 0, 10, 1, 3),
    )
    event = PolicyDecided(
        "d1", "crm", "cedar", "r1", "tools/call", "read_record", "alice", "acme",
        False, ("tenant-isolation",), redact_input(policy_input), 0.05,
    )  # fmt: skip
    stream = io.BytesIO()
    JsonLinesSink(stream).emit(event)
    (line,) = stream.getvalue().splitlines()
    record = json.loads(line)
    assert record["kind"] == "policy.decision" and record["decision_id"] == "d1"
    assert record["reasons"] == ["tenant-isolation"] and record["revision"] == "r1"
    assert record["input"]["resource"]["tenant"] == "globex"
    assert record["input"]["resource"]["attributes"] == {
        "api_key": "[REDACTED]",
        "note": "[REDACTED]",
    }
    assert TOKEN.encode() not in line and b"k-123" not in line
