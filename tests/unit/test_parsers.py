"""Parsers never fail with anything but a Wardgate error, and round-trip what they encode."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wardgate.errors import ProtocolError, WardgateError
from wardgate.routing.federation import (
    decode_cursor,
    encode_cursor,
    split_name,
    tag_event_id,
    tag_request_id,
    untag_event_id,
    untag_request_id,
)
from wardgate.wire.jsonrpc import parse_message
from wardgate.wire.mcp import decode_header_value, encode_header_value
from wardgate.wire.sse import SseDecoder, encode_event

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(st.binary(max_size=200))
def test_parse_message_only_raises_wardgate_errors_on_bytes(body: bytes) -> None:
    with contextlib.suppress(WardgateError):
        parse_message(body)


@given(json_values)
def test_parse_message_only_raises_wardgate_errors_on_json(value: object) -> None:
    try:
        message = parse_message(json.dumps(value))
    except WardgateError:
        return
    assert message.raw == value


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        ({"jsonrpc": "2.0", "id": 1, "method": "ping"}, "request"),
        ({"jsonrpc": "2.0", "id": "a", "method": "ping"}, "request"),
        ({"jsonrpc": "2.0", "method": "notifications/initialized"}, "notification"),
        ({"jsonrpc": "2.0", "id": 1, "result": {}}, "response"),
        ({"jsonrpc": "2.0", "error": {"code": -32700, "message": "x"}}, "response"),
    ],
)
def test_classification(raw: dict[str, object], kind: str) -> None:
    assert parse_message(json.dumps(raw)).kind == kind


def test_boolean_ids_are_not_integers() -> None:
    with pytest.raises(ProtocolError):
        parse_message(b'{"jsonrpc":"2.0","id":true,"method":"ping"}')


@given(st.text())
def test_header_values_round_trip_and_stay_header_safe(value: str) -> None:
    encoded = encode_header_value(value)
    assert encoded.isascii() and "\r" not in encoded and "\n" not in encoded
    assert decode_header_value(encoded) == value


@given(st.dictionaries(st.integers(0, 9), st.text(max_size=200), min_size=1))
def test_cursors_round_trip(remaining: dict[int, str]) -> None:
    assert decode_cursor(encode_cursor(remaining), 10) == remaining


@pytest.mark.parametrize(
    "cursor",
    ["", "garbage", encode_cursor({5: "x"}), 7, "W1sxXV0", "W10", "W1sxLCJhIl0sWzEsImIiXV0"],
)
def test_foreign_cursors_are_invalid_params(cursor: object) -> None:
    with pytest.raises(WardgateError) as caught:
        decode_cursor(cursor, 3)
    assert caught.value.jsonrpc_code == -32602


@given(st.integers(0, 99), st.one_of(st.integers(), st.text()))
def test_request_ids_round_trip(index: int, request_id: int | str) -> None:
    assert untag_request_id(tag_request_id(index, request_id)) == (index, request_id)


@given(st.integers(0, 99), st.text())
def test_event_ids_round_trip(index: int, event_id: str) -> None:
    assert untag_event_id(tag_event_id(index, event_id)) == (index, event_id)


def test_split_name_with_an_unprefixed_upstream() -> None:
    prefixes = ["", "time", "fs"]
    assert split_name("time__now", prefixes, "__") == (1, "now")
    assert split_name("fs__read", prefixes, "__") == (2, "read")
    assert split_name("echo", prefixes, "__") == (0, "echo")
    assert split_name("time__", prefixes, "__") == (0, "time__")
    assert split_name("echo", ["time", "fs"], "__") is None


@given(
    st.text().filter(lambda s: "\r" not in s),
    st.one_of(
        st.none(), st.text(alphabet=st.characters(codec="ascii", exclude_characters="\r\n\0"))
    ),
)
def test_sse_round_trip(data: str, event_id: str | None) -> None:
    chunk = encode_event(data.encode(), event_id=event_id)
    decoder = SseDecoder()
    events = [e for line in chunk.decode().split("\n") if (e := decoder.feed_line(line))]
    assert len(events) == 1
    assert events[0].data == data
    assert events[0].id == event_id
