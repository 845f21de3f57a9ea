"""What of a call's context travels to the upstream: trace context and decision id.

Off by default (an upstream is outside the gateway's trust boundary). HTTP upstreams get
headers (``traceparent``, ``tracestate``, ``wardgate-decision-id``); upstreams reached
over a message channel (stdio, legacy SSE) get the same values in the request's
``params._meta`` (``traceparent``, ``tracestate``, ``io.wardgate/decisionId``).

The trace context sent is the call's ``trace_out`` (the gateway's upstream span, when
tracing is on) or else the one the client sent, unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from wardgate.wire.jsonrpc import JsonObject

if TYPE_CHECKING:
    from wardgate.core.call import Call

__all__ = ["DECISION_HEADER", "DECISION_META", "Propagation"]

DECISION_HEADER = "wardgate-decision-id"
DECISION_META = "io.wardgate/decisionId"


@dataclass(frozen=True, slots=True)
class Propagation:
    trace: bool = False
    decision_id: bool = False
    #: Carry the values in ``params._meta`` instead of HTTP headers.
    via_meta: bool = False

    def __bool__(self) -> bool:
        return self.trace or self.decision_id

    def _values(self, call: Call, trace_keys: tuple[str, str, str]) -> dict[str, str]:
        values: dict[str, str] = {}
        trace = call.trace_out if call.trace_out is not None else call.ctx.trace
        if self.trace and trace is not None:
            values[trace_keys[0]] = trace.traceparent
            if trace.tracestate:
                values[trace_keys[1]] = trace.tracestate
        if self.decision_id:
            values[trace_keys[2]] = call.ctx.decision_id
        return values

    def apply(self, call: Call, raw: JsonObject, headers: dict[str, str]) -> JsonObject:
        """The message to send for ``call`` (maybe with ``_meta`` added); ``headers`` is
        updated."""
        if not self.via_meta:
            headers.update(self._values(call, ("traceparent", "tracestate", DECISION_HEADER)))
            return raw
        params = raw.get("params")
        if "method" not in raw or not (params is None or isinstance(params, dict)):
            return raw
        values = self._values(call, ("traceparent", "tracestate", DECISION_META))
        if not values:
            return raw
        params = dict(params or {})
        meta = params.get("_meta")
        params["_meta"] = {**(meta if isinstance(meta, dict) else {}), **values}
        return {**raw, "params": params}
