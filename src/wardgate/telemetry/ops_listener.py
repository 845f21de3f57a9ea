"""The operations listener: ``/metrics``, ``/healthz`` and ``/readyz`` on a port of its own.

It is separate from the MCP listener so that it can stay on a private address: the
readiness reasons (which dependency is down, and why) are shown here and nowhere else.
``/readyz`` runs every registered check concurrently, each bounded by a timeout; any
failure (or timeout) makes it 503.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import orjson
from aiohttp import web

if TYPE_CHECKING:
    # The ``metrics`` extra: imported only where a registry is served.
    from prometheus_client import CollectorRegistry

__all__ = ["Check", "OpsListener"]

log = logging.getLogger("wardgate.telemetry")

#: A readiness check: returns ``None`` when ready, else a short reason; may raise.
Check = Callable[[], Awaitable[str | None]]


class OpsListener:
    """Serves the operations endpoints; ``start()`` binds, ``aclose()`` stops."""

    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry | None,
        *,
        check_timeout: float = 2.0,
    ) -> None:
        self.host = host
        self.port = port
        self._registry = registry
        self._checks: dict[str, Check] = {}
        self._timeout = check_timeout
        self._runner: web.AppRunner | None = None

    def add_check(self, name: str, check: Check) -> None:
        self._checks[name] = check

    async def ready(self) -> dict[str, str | None]:
        """Every check's reason (``None``: ready)."""
        names = list(self._checks)
        results = await asyncio.gather(*(self._run(self._checks[n]) for n in names))
        return dict(zip(names, results, strict=True))

    async def _run(self, check: Check) -> str | None:
        try:
            return await asyncio.wait_for(check(), self._timeout)
        except TimeoutError:
            return "timed out"
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"[:200]

    async def _metrics(self, request: web.Request) -> web.Response:
        if self._registry is None:
            raise web.HTTPNotFound()
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        body = generate_latest(self._registry)
        return web.Response(body=body, headers={"content-type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(body=b'{"status":"ok"}', content_type="application/json")

    async def _readyz(self, request: web.Request) -> web.Response:
        results = await self.ready()
        ok = all(reason is None for reason in results.values())
        body = {
            "status": "ready" if ok else "not ready",
            "checks": {n: (r or "ok") for n, r in results.items()},
        }
        return web.Response(
            body=orjson.dumps(body), status=200 if ok else 503, content_type="application/json"
        )

    async def start(self) -> None:
        """Bind and serve.

        Raises:
            OSError: the port cannot be bound.
        """
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            server = site._server  # the port the OS chose (tests bind port 0)
            sockets = getattr(server, "sockets", None) or ()
            for sock in sockets:
                self.port = sock.getsockname()[1]
                break

    async def aclose(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
