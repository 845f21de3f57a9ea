"""The one place an error becomes what the client sees, for every transport.

A client gets the error class's generic message, its stable code and the decision id
(``error.data``); never the detail, which is logged. HTTP transports also get a status
and, for some errors, headers. An error about a request is answered in-band when the
class says so (HTTP 200: a guard's denial, an unknown tool), so SDK clients surface it
as an error of that call; an error about a notification or a response has no call to
answer, so it gets the nearest HTTP error status instead.
"""

from __future__ import annotations

import math

from wardgate.errors import Denied, PayloadTooLarge, WardgateError
from wardgate.wire.jsonrpc import JsonObject, Message, wardgate_error_response

__all__ = ["Answer", "error_answer"]

Answer = tuple[int, JsonObject, list[tuple[bytes, bytes]]]


def error_answer(exc: WardgateError, request: Message | None, decision_id: str) -> Answer:
    """HTTP status, JSON-RPC error body and extra headers for ``exc``."""
    request_id = request.id if request is not None and request.kind == "request" else None
    is_request = request_id is not None
    status = exc.http_status
    if status == 200 and not is_request:
        status = 403 if isinstance(exc, Denied) else 400
    headers: list[tuple[bytes, bytes]] = []
    if isinstance(exc, PayloadTooLarge):
        # The rest of an oversized body is never read: the connection cannot be reused.
        headers.append((b"connection", b"close"))
    retry_after = getattr(exc, "retry_after", None)
    if isinstance(retry_after, int | float) and math.isfinite(retry_after) and retry_after >= 0:
        headers.append((b"retry-after", str(math.ceil(retry_after)).encode()))
    body = wardgate_error_response(request_id, exc, decision_id)
    return status, body, headers
