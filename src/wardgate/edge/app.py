"""The ASGI application: routing, DNS-rebinding checks and the last-resort error net."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from wardgate.edge.asgi import Receive, Scope, Send, header_map, send_json
from wardgate.edge.legacy_sse import LegacySseEndpoint
from wardgate.edge.origin import OriginPolicy
from wardgate.edge.streamable import StreamableHttpEndpoint
from wardgate.errors import WardgateError
from wardgate.jsonrpc import error_response
from wardgate.pipeline import CallContext, new_decision_id

__all__ = ["EdgeApp"]

log = logging.getLogger("wardgate.edge")


class EdgeApp:
    """Serves ``/mcp/{route}`` (and ``/mcp`` when there is one route), ``/sse/{route}``,
    ``/messages/{route}`` and ``/healthz``."""

    def __init__(
        self,
        endpoints: Mapping[str, StreamableHttpEndpoint],
        legacy: Mapping[str, LegacySseEndpoint],
        origins: OriginPolicy,
    ) -> None:
        self._mcp = dict(endpoints)
        self._legacy = dict(legacy)
        self._origins = origins
        self._only = next(iter(self._mcp.values())) if len(self._mcp) == 1 else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        decision_id = new_decision_id()
        try:
            await self._dispatch(scope, receive, send, decision_id)
        except Exception:
            # Never a stack trace to the client: log it under the decision id.
            log.exception("unhandled error", extra={"decision_id": decision_id})
            try:
                body = error_response(None, -32603, "Internal error", {"decisionId": decision_id})
                await send_json(send, 500, body)
            except Exception:  # noqa: S110 - the response had already started; nothing left to tell
                pass

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send, decision_id: str) -> None:
        headers = header_map(scope)
        path: str = scope["path"]
        if path == "/healthz" and scope["method"] == "GET":
            await send_json(send, 200, {"status": "ok"})
            return
        if not self._origins.host_ok(headers.get("host")):
            await self._refuse(send, 421, "Invalid Host header", decision_id)
            return
        if not self._origins.origin_ok(headers.get("origin")):
            await self._refuse(send, 403, "Invalid Origin header", decision_id)
            return
        kind, _, name = path.strip("/").partition("/")
        if "/" in name:
            name = ""
        if kind == "mcp":
            endpoint = self._mcp.get(name) if name else self._only
            if endpoint is not None:
                ctx = CallContext(route=endpoint.route.name, decision_id=decision_id)
                await endpoint(scope, receive, send, headers, ctx)
                return
        elif kind in ("sse", "messages") and name in self._legacy:
            ctx = CallContext(route=name, decision_id=decision_id, transport="sse")
            await self._legacy[name](scope, receive, send, headers, ctx, kind)
            return
        await self._refuse(send, 404, "Not found", decision_id)

    async def _refuse(self, send: Send, status: int, message: str, decision_id: str) -> None:
        log.info("refused with %d: %s", status, message, extra={"decision_id": decision_id})
        await send_json(
            send, status, error_response(None, -32600, message, {"decisionId": decision_id})
        )


def error_status(exc: WardgateError) -> int:
    return exc.http_status
