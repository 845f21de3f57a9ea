"""Errors the content guards raise, leaves of :mod:`wardgate.errors`::

    WardgateError
    ├── ProtocolError
    │   └── InvalidParams
    │       └── ArgumentsInvalid     wardgate.arguments_invalid    -32602  200
    │           └── ArgumentsTooLarge wardgate.arguments_too_large -32602  200
    └── Denied
        ├── SuspiciousContent       wardgate.content_suspicious    -32003  200
        ├── ToolHeld                wardgate.tool_held             -32003  200
        └── ResultRefused           wardgate.result_refused        -32003  200

All are answered in-band (HTTP 200) so SDK clients show them as tool-call errors. An
:class:`ArgumentsInvalid` carries the JSON path of the offending field in ``data.path``
(the client's own input, safe to show); never the value, the rule or the score.
"""

from __future__ import annotations

from wardgate.errors import Denied, InvalidParams

__all__ = [
    "ArgumentsInvalid",
    "ArgumentsTooLarge",
    "ResultRefused",
    "SuspiciousContent",
    "ToolHeld",
    "json_pointer",
]


def json_pointer(path: tuple[str | int, ...] | list[str | int]) -> str:
    """RFC 6901 pointer for a path (``("a", 0, "b~c")`` -> ``/a/0/b~0c``)."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


class ArgumentsInvalid(InvalidParams):
    """Tool arguments do not fit the tool's (closed) input schema."""

    code = "wardgate.arguments_invalid"
    http_status = 200
    public_message = "Invalid arguments"

    def __init__(self, detail: str, *, path: str) -> None:
        super().__init__(detail, data={"path": path})
        self.path = path


class ArgumentsTooLarge(ArgumentsInvalid):
    """A string, array, depth or total size over the hard limits."""

    code = "wardgate.arguments_too_large"
    public_message = "Arguments too large"


class SuspiciousContent(Denied):
    """Invisible or bidirectional characters, or an injection score over the threshold."""

    code = "wardgate.content_suspicious"


class ToolHeld(Denied):
    """A tool held back: its schema does not compile, or its descriptor changed unapproved."""

    code = "wardgate.tool_held"


class ResultRefused(Denied):
    """A result over the flood caps, when the operator chose refusal over truncation."""

    code = "wardgate.result_refused"
