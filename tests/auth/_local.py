"""A gateway trusting one local issuer (keys held by the test, JWKS served on loopback)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from support.servers import run_gateway
from wardgate.gateway import Gateway

from ._support import RESOURCE, LocalIssuer, jwks_server


@dataclass
class LocalGateway:
    base: str
    gateway: Gateway
    issuer: LocalIssuer

    def url(self, route: str) -> str:
        return f"{self.base}/mcp/{route}"

    def bearer(self, **claims: Any) -> dict[str, str]:
        return {"authorization": f"Bearer {self.issuer.mint(**claims)}"}


@asynccontextmanager
async def local_gateway(
    upstreams: dict[str, Any],
    routes: dict[str, Any],
    *,
    issuer_options: dict[str, Any] | None = None,
    **auth: Any,
) -> AsyncIterator[LocalGateway]:
    issuer = LocalIssuer.create("https://idp-local.example", "local")
    async with jwks_server({"/jwks": issuer.jwks}) as jwks:
        config = {
            "auth": {
                "resource": RESOURCE,
                "issuers": [
                    {
                        "issuer": issuer.name,
                        "jwks_uri": f"{jwks.base}/jwks",
                        **(issuer_options or {}),
                    }
                ],
                "allow_loopback_jwks": True,
                "failure_floor_ms": 10,
                **auth,
            },
            "upstreams": upstreams,
            "routes": routes,
        }
        async with run_gateway(config) as (base, gateway):
            yield LocalGateway(base, gateway, issuer)
