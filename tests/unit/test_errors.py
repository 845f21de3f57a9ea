"""The error tree in wardgate.errors' docstring is the truth the code keeps."""

from __future__ import annotations

import re

import wardgate.errors as errors


def test_every_error_class_matches_its_line_in_the_documented_tree() -> None:
    doc = errors.__doc__ or ""
    rows = re.findall(r"(\w+)\s+(wardgate\.\w+)\s+(-?\d+)\s+(\d+)", doc)
    assert len(rows) >= 12
    for name, code, jsonrpc_code, http_status in rows:
        cls = getattr(errors, name)
        assert (cls.code, cls.jsonrpc_code, cls.http_status) == (
            code,
            int(jsonrpc_code),
            int(http_status),
        ), name


def test_no_denial_uses_a_code_the_sdks_read_as_a_timeout_or_a_closed_connection() -> None:
    for cls in (errors.Denied, errors.AuthenticationFailed):
        assert cls.jsonrpc_code not in (-32000, -32001)
