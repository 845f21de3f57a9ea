"""The ASGI application: routing, DNS-rebinding checks and the last-resort error net."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from wardgate.core.context import CallContext, TlsFacts, TraceContext, Transport, new_decision_id
from wardgate.edge.asgi import Receive, Scope, Send, header_map, send_json
from wardgate.edge.auth import EdgeAuth, is_metadata_path
from wardgate.edge.cors import CorsPolicy
from wardgate.edge.jwe import GatewayJweKey
from wardgate.edge.legacy_sse import LegacySseEndpoint
from wardgate.edge.origin import OriginPolicy
from wardgate.edge.streamable import StreamableHttpEndpoint
from wardgate.errors import AuthenticationFailed
from wardgate.identity.principal import ANONYMOUS, Principal
from wardgate.wire.jsonrpc import error_response

__all__ = ["JWE_KEYS_PATH", "EdgeApp"]

#: Where clients find the gateway's public JWE key (a JWKS).
JWE_KEYS_PATH = "/.well-known/wardgate-jwe-keys"

log = logging.getLogger("wardgate.edge")


class EdgeApp:
    """Serves ``/mcp/{route}`` (and ``/mcp`` when there is one route), ``/sse/{route}``,
    ``/messages/{route}`` and ``/healthz``."""

    def __init__(
        self,
        endpoints: Mapping[str, StreamableHttpEndpoint],
        legacy: Mapping[str, LegacySseEndpoint],
        origins: OriginPolicy,
        auth: EdgeAuth | None = None,
        jwe: GatewayJweKey | None = None,
        clock: Callable[[], float] = time.time,
        cors: CorsPolicy | None = None,
    ) -> None:
        self._clock = clock
        self._cors = cors or CorsPolicy(())
        self._auth = auth
        self._jwe = jwe
        self._mcp = dict(endpoints)
        self._legacy = dict(legacy)
        self._origins = origins
        self._only = next(iter(self._mcp.values())) if len(self._mcp) == 1 else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # First thing: a refusal's floor counts from the request's arrival.
        arrived_ns = time.perf_counter_ns()
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        decision_id = new_decision_id()
        try:
            await self._dispatch(scope, receive, send, decision_id, arrived_ns)
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

    async def _dispatch(
        self, scope: Scope, receive: Receive, send: Send, decision_id: str, arrived_ns: int
    ) -> None:
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
        # CORS only for origins the check above let through; preflights carry no credentials.
        send = self._cors.wrap(send, headers)
        if await self._cors.preflight(scope, headers, send):
            return
        if path == JWE_KEYS_PATH and self._jwe is not None and scope["method"] == "GET":
            await send_json(send, 200, self._jwe.public_jwks())
            return
        if (
            self._auth is not None
            and is_metadata_path(path)
            and scope["method"] == "GET"
            and self._auth.metadata_exposure != "off"
        ):
            await self._metadata(send)
            return
        kind, _, name = path.strip("/").partition("/")
        if "/" in name:
            name = ""
        if kind == "mcp":
            endpoint = self._mcp.get(name) if name else self._only
            if endpoint is not None:
                principal = await self._authenticate(
                    scope, send, headers, endpoint.route.name, decision_id, arrived_ns
                )
                if principal is None:
                    return
                ctx = self._context(scope, headers, endpoint.route.name, decision_id, principal)
                await endpoint(scope, receive, send, headers, ctx)
                return
        elif kind in ("sse", "messages") and name in self._legacy:
            principal = await self._authenticate(
                scope, send, headers, name, decision_id, arrived_ns
            )
            if principal is None:
                return
            ctx = self._context(scope, headers, name, decision_id, principal, "sse")
            await self._legacy[name](scope, receive, send, headers, ctx, kind)
            return
        if self._auth is not None:
            # Unknown paths look exactly like failed authentication: nothing to map out.
            failure = AuthenticationFailed(f"no route at {path!r}")
            await self._auth.refuse(send, None, scope, headers, decision_id, arrived_ns, failure)
            return
        await self._refuse(send, 404, "Not found", decision_id)

    def _context(
        self,
        scope: Scope,
        headers: Mapping[str, str],
        route: str,
        decision_id: str,
        principal: Principal,
        transport: Transport = "http",
    ) -> CallContext:
        """Everything the guards will know about the call, read from the request once."""
        client = scope.get("client")
        return CallContext(
            route,
            decision_id,
            principal,
            transport=transport,
            client_addr=client[0] if client else None,
            tls=TlsFacts.from_scope(scope, principal) if scope.get("scheme") == "https" else None,
            received_at=self._clock(),
            trace=TraceContext.from_headers(headers) if "traceparent" in headers else None,
        )

    async def _authenticate(
        self,
        scope: Scope,
        send: Send,
        headers: dict[str, str],
        route: str,
        decision_id: str,
        arrived_ns: int,
    ) -> Principal | None:
        if self._auth is None:
            return ANONYMOUS
        try:
            return await self._auth.authenticate(scope, headers)
        except AuthenticationFailed as failure:
            await self._auth.refuse(send, route, scope, headers, decision_id, arrived_ns, failure)
            return None

    async def _metadata(self, send: Send) -> None:
        # One document for the root and for every path under it, existing route or
        # not: a prober cannot list routes by asking for their metadata.
        assert self._auth is not None
        headers = [(b"cache-control", b"public, max-age=3600")]
        await send_json(send, 200, self._auth.metadata(), headers)

    async def _refuse(self, send: Send, status: int, message: str, decision_id: str) -> None:
        log.info("refused with %d: %s", status, message, extra={"decision_id": decision_id})
        await send_json(
            send, status, error_response(None, -32600, message, {"decisionId": decision_id})
        )
