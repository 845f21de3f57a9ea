"""Errors of the abuse controls: leaves of :class:`wardgate.errors.Denied`.

::

    Denied
    ├── RateLimited           wardgate.rate_limited         -32029  429  Retry-After
    ├── ConcurrencyLimited    wardgate.concurrency_limited  -32029  429  Retry-After
    ├── BudgetExhausted       wardgate.budget_exhausted     -32030  429  Retry-After
    ├── ArgumentRefused       wardgate.argument_refused     -32602  200
    └── ToolDisabled          wardgate.tool_disabled        -32031  503  Retry-After

Unlike other denials (answered in-band with HTTP 200, because the SDK clients turn a
non-2xx answer into a transport error), these carry the HTTP status the issue asks for:
a 429 or 503 with ``Retry-After`` is what HTTP clients, proxies and load balancers know
how to back off from. The JSON-RPC body is the same either way and carries
``data.retryAfterSeconds`` so that agents can back off without parsing text.
"""

from __future__ import annotations

import math
from typing import Any

from wardgate.errors import Denied

__all__ = [
    "ArgumentRefused",
    "BudgetExhausted",
    "ConcurrencyLimited",
    "LimitError",
    "RateLimited",
    "ToolDisabled",
]


class LimitError(Denied):
    """A limit refused the call; ``retry_after`` (seconds) becomes ``Retry-After``."""

    def __init__(self, detail: str = "", *, retry_after: float | None = None) -> None:
        data: dict[str, Any] | None = None
        if retry_after is not None:
            retry_after = max(0.0, retry_after)
            data = {"retryAfterSeconds": math.ceil(retry_after)}
        super().__init__(detail, data=data)
        self.retry_after = retry_after


class RateLimited(LimitError):
    code = "wardgate.rate_limited"
    jsonrpc_code = -32029
    http_status = 429
    public_message = "Rate limit exceeded"


class ConcurrencyLimited(LimitError):
    code = "wardgate.concurrency_limited"
    jsonrpc_code = -32029
    http_status = 429
    public_message = "Too many calls in flight"


class BudgetExhausted(LimitError):
    code = "wardgate.budget_exhausted"
    jsonrpc_code = -32030
    http_status = 429
    public_message = "Budget exhausted"


class ArgumentRefused(LimitError):
    """A costly tool was called without a required bound, or above it."""

    code = "wardgate.argument_refused"
    jsonrpc_code = -32602
    http_status = 200
    public_message = "Argument missing or out of bounds"


class ToolDisabled(LimitError):
    code = "wardgate.tool_disabled"
    jsonrpc_code = -32031
    http_status = 503
    public_message = "Tool temporarily disabled"
