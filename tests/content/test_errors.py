"""The content errors' documented tree matches the classes, and every one answers in-band."""

from __future__ import annotations

import re

import wardgate.content.generic_errors as errors


def test_every_content_error_matches_its_line_in_the_documented_tree() -> None:
    rows = re.findall(r"(\w+)\s+(wardgate\.\w+)\s+(-?\d+)\s+(\d+)", errors.__doc__ or "")
    assert {name for name, *_ in rows} == set(errors.__all__) - {"json_pointer"}
    for name, code, jsonrpc_code, http_status in rows:
        cls = getattr(errors, name)
        assert (cls.code, cls.jsonrpc_code, cls.http_status) == (
            code,
            int(jsonrpc_code),
            int(http_status),
        ), name
        assert cls.jsonrpc_code not in (-32000, -32001)
