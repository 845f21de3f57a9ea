"""Redact obligations reach structured data repeated as JSON text."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from wardgate.policy._textredact import redact_text_content

FIELDS = frozenset({"ssn"})


def test_json_text_is_redacted_and_other_text_left_alone() -> None:
    record = {"name": "Ann", "ssn": "078-05-1120", "kids": [{"ssn": "1"}]}
    result = {
        "content": [
            {"type": "text", "text": json.dumps(record)},
            {"type": "text", "text": "ssn: 078-05-1120 (prose is not parsed)"},
            {"type": "image", "data": "AAAA", "mimeType": "image/png"},
        ],
        "isError": False,
    }
    out = redact_text_content(result, FIELDS)
    assert out is not None and out["isError"] is False
    first = json.loads(out["content"][0]["text"])
    assert first == {"name": "Ann", "ssn": "[REDACTED]", "kids": [{"ssn": "[REDACTED]"}]}
    assert out["content"][1:] == result["content"][1:]
    assert json.loads(result["content"][0]["text"])["ssn"] == "078-05-1120"  # not mutated


def test_resource_contents_too_and_nothing_to_do_is_none() -> None:
    result = {"contents": [{"uri": "crm://a/1", "text": '{"ssn": "x"}'}]}
    out = redact_text_content(result, FIELDS)
    assert out is not None and json.loads(out["contents"][0]["text"]) == {"ssn": "[REDACTED]"}
    assert redact_text_content({"content": [{"type": "text", "text": '{"a": 1}'}]}, FIELDS) is None


def test_deep_nesting_does_not_crash() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    assert redact_text_content({"content": [{"type": "text", "text": deep}]}, FIELDS) is None


json_docs = st.recursive(
    st.none() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=15,
)


@settings(deadline=None)
@given(json_docs, st.integers(min_value=0, max_value=3))
def test_a_value_under_a_redacted_key_never_survives(doc: Any, depth: int) -> None:
    secret = "S3CR3T-VALUE-42"
    wrapped: Any = {"ssn": secret, "other": doc}
    for _ in range(depth):
        wrapped = [wrapped, {"x": wrapped}]
    out = redact_text_content({"content": [{"type": "text", "text": json.dumps(wrapped)}]}, FIELDS)
    assert out is not None
    assert secret not in out["content"][0]["text"]
