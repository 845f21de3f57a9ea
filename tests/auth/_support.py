"""Shared pieces of the edge-authentication tests: PKI, a local token issuer with its
JWKS server, raw HTTP calls and the comparison of refusals."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Generator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx2
import orjson
import trustme
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from identity._certs import build_leaf
from joserfc import jwt
from joserfc.jwk import ECKey, Key, RSAKey

RESOURCE = "https://mcp.example.com/mcp"
OTHER_RESOURCE = "https://other-mcp.example.com/mcp"
SERVER_NAME = "localhost"  # /etc/hosts: 127.0.0.1 only; SNI needs a DNS name
AGENT_SPIFFE = "spiffe://example.org/ns/prod/sa/agent"
WAIT = 15.0  # upper bound for each HTTP exchange in these tests
ACCEPT = "application/json, text/event-stream"
MODERN = "2026-07-28"
LEGACY = "2025-11-25"


# ------------------------------------------------------------------------------ PKI


@dataclass(frozen=True)
class ClientCert:
    cert_file: Path
    key_file: Path
    pem: bytes

    @property
    def der(self) -> bytes:
        return x509.load_pem_x509_certificate(self.pem).public_bytes(serialization.Encoding.DER)


def issue_client_cert(
    ca: trustme.CA,
    directory: Path,
    name: str,
    *,
    uris: tuple[str, ...] = (),
    dns: tuple[str, ...] = (),
    expired: bool = False,
) -> ClientCert:
    """A client certificate (clientAuth) with URI / DNS SANs, written as PEM files."""
    now = datetime.datetime.now(datetime.UTC)
    if expired:
        not_before, not_after = now - datetime.timedelta(days=10), now - datetime.timedelta(days=1)
    else:
        not_before, not_after = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=1)
    key, cert = build_leaf(
        ca, *uris, dns=dns, not_before=not_before, not_after=not_after, common_name=name
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    cert_file, key_file = directory / f"{name}.crt", directory / f"{name}.key"
    cert_file.write_bytes(pem)
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ClientCert(cert_file, key_file, pem)


@dataclass
class Pki:
    dir: Path
    server_ca: trustme.CA
    client_ca: trustme.CA  # trust domain example.org
    partner_ca: trustme.CA  # trust domain partner.example (trusted by TLS, not for example.org)
    stranger_ca: trustme.CA  # trusted by nobody
    certs: dict[str, ClientCert] = field(default_factory=dict)

    @classmethod
    def create(cls, directory: Path) -> Pki:
        pki = cls(directory, trustme.CA(), trustme.CA(), trustme.CA(), trustme.CA())
        server = pki.server_ca.issue_cert(SERVER_NAME)
        server.private_key_pem.write_to_path(str(pki.server_key))
        pki.server_cert.write_bytes(b"".join(p.bytes() for p in server.cert_chain_pems))
        pki.server_ca.cert_pem.write_to_path(str(pki.server_ca_file))
        pki.client_ca.cert_pem.write_to_path(str(pki.client_ca_file))
        pki.partner_ca.cert_pem.write_to_path(str(pki.partner_ca_file))
        pki.client_bundle_file.write_bytes(
            pki.client_ca.cert_pem.bytes() + pki.partner_ca.cert_pem.bytes()
        )
        d = directory
        pki.certs = {
            "agent": issue_client_cert(pki.client_ca, d, "agent", uris=(AGENT_SPIFFE,)),
            "other": issue_client_cert(
                pki.client_ca, d, "other", uris=("spiffe://example.org/ns/prod/sa/other",)
            ),
            "no-spiffe": issue_client_cert(pki.client_ca, d, "no-spiffe", dns=("agent.test",)),
            "cross-domain": issue_client_cert(pki.partner_ca, d, "cross", uris=(AGENT_SPIFFE,)),
            "expired": issue_client_cert(
                pki.client_ca, d, "expired", uris=(AGENT_SPIFFE,), expired=True
            ),
            "stranger": issue_client_cert(pki.stranger_ca, d, "stranger", uris=(AGENT_SPIFFE,)),
        }
        return pki

    @property
    def server_cert(self) -> Path:
        return self.dir / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.dir / "server.key"

    @property
    def server_ca_file(self) -> Path:
        return self.dir / "server-ca.pem"

    @property
    def client_ca_file(self) -> Path:
        return self.dir / "client-ca.pem"

    @property
    def partner_ca_file(self) -> Path:
        return self.dir / "partner-ca.pem"

    @property
    def client_bundle_file(self) -> Path:
        return self.dir / "client-bundle.pem"

    def tls_config(self, client_cert: str, client_ca_file: Path | None = None) -> dict[str, Any]:
        return {
            "cert_file": str(self.server_cert),
            "key_file": str(self.server_key),
            "server_names": [SERVER_NAME],
            "client_ca_file": str(client_ca_file or self.client_ca_file),
            "client_cert": client_cert,
        }

    def client_context(self, cert: str | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.server_ca_file))
        if cert is not None:
            c = self.certs[cert]
            ctx.load_cert_chain(str(c.cert_file), str(c.key_file))
        return ctx


def tls_url(base: str) -> str:
    """run_gateway yields https://127.0.0.1:PORT; the SNI name must be a DNS name."""
    return base.replace("://127.0.0.1:", f"://{SERVER_NAME}:")


# --------------------------------------------------------------------- local issuer


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_json(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


@dataclass
class LocalIssuer:
    """An issuer whose signing keys live in the test (for claims a real IdP won't set)."""

    name: str
    rsa: RSAKey
    ec: ECKey

    @classmethod
    def create(cls, name: str, prefix: str) -> LocalIssuer:
        rsa = RSAKey.generate_key(2048, parameters={"kid": f"{prefix}-rsa", "use": "sig"})
        ec_key = ECKey.generate_key("P-256", parameters={"kid": f"{prefix}-ec", "use": "sig"})
        return cls(name, rsa, ec_key)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [k.as_dict(private=False) for k in (self.rsa, self.ec)]}

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        base: dict[str, Any] = {
            "iss": self.name,
            "sub": "user-1",
            "aud": RESOURCE,
            "iat": now - 5,
            "exp": now + 300,
            "client_id": "local-agent",
            "tenant": "tenant-a",
            "scope": "tools:read tools:call",
            "jti": uuid.uuid4().hex,
        }
        base.update(overrides)
        return {k: v for k, v in base.items() if v is not None}

    def mint(
        self,
        key: Key | None = None,
        alg: str = "RS256",
        header: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        key = key or self.rsa
        h: dict[str, Any] = {"alg": alg, "typ": "at+jwt", "kid": key.kid}
        h.update(header or {})
        h = {k: v for k, v in h.items() if v is not None}
        return jwt.encode(h, self.claims(**claims), key, algorithms=[alg])

    def hs256_with_public_key(self, **claims: Any) -> str:
        """The classic confusion: HMAC-SHA256 keyed with the issuer's RSA *public* key."""
        secret = self.rsa.as_pem(private=False)
        head = b64url_json({"alg": "HS256", "typ": "at+jwt", "kid": self.rsa.kid})
        body = b64url_json(self.claims(**claims))
        sig = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
        return f"{head}.{body}.{b64url(sig)}"


def alg_none(token: str) -> str:
    """``token``'s claims under ``alg: none`` with an empty signature."""
    _, payload, _ = token.split(".")
    return f"{b64url_json({'alg': 'none', 'typ': 'at+jwt'})}.{payload}."


def dpop_proof(
    key: Key,
    method: str,
    url: str,
    *,
    access_token: str | None = None,
    iat: float | None = None,
    jti: str | None = None,
) -> str:
    claims: dict[str, Any] = {
        "jti": jti or uuid.uuid4().hex,
        "htm": method,
        "htu": url,
        "iat": int(time.time() if iat is None else iat),
    }
    if access_token is not None:
        claims["ath"] = b64url(hashlib.sha256(access_token.encode("ascii")).digest())
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": key.as_dict(private=False)}
    return jwt.encode(header, claims, key, algorithms=["ES256"])


class DpopAuth(httpx2.Auth):
    """``Authorization: DPoP`` plus a fresh proof for every request (RFC 9449 §7.1)."""

    def __init__(self, token: str, key: Key) -> None:
        self.token = token
        self.key = key
        self.proofs: list[str] = []

    def auth_flow(
        self, request: httpx2.Request
    ) -> Generator[httpx2.Request, httpx2.Response, None]:
        proof = dpop_proof(self.key, request.method, str(request.url), access_token=self.token)
        self.proofs.append(proof)
        request.headers["Authorization"] = f"DPoP {self.token}"
        request.headers["DPoP"] = proof
        yield request


@dataclass
class JwksServer:
    base: str
    routes: dict[str, Any]
    hits: list[str]


@asynccontextmanager
async def jwks_server(routes: dict[str, Any]) -> AsyncIterator[JwksServer]:
    """A loopback HTTP server answering GET with the JSON in ``routes``; records every hit."""
    hits: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        hits.append(request.path_qs)
        make = routes.get(request.path)
        if make is None:
            return web.Response(status=404)
        return web.json_response(make() if callable(make) else make)

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield JwksServer(f"http://127.0.0.1:{port}", routes, hits)
    finally:
        await runner.cleanup()


# ------------------------------------------------------------------------- raw HTTP


def modern_call(
    tool: str, arguments: dict[str, Any], request_id: int = 1
) -> tuple[bytes, dict[str, str]]:
    body = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {
            "name": tool,
            "arguments": arguments,
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": MODERN,
                "io.modelcontextprotocol/clientCapabilities": {},
            },
        },
    }
    headers = {
        "content-type": "application/json",
        "accept": ACCEPT,
        "mcp-protocol-version": MODERN,
        "mcp-method": "tools/call",
        "mcp-name": tool,
    }
    return orjson.dumps(body), headers


def modern_list(request_id: int = 1) -> tuple[bytes, dict[str, str]]:
    body = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/list",
        "params": {
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": MODERN,
                "io.modelcontextprotocol/clientCapabilities": {},
            }
        },
    }
    headers = {
        "content-type": "application/json",
        "accept": ACCEPT,
        "mcp-protocol-version": MODERN,
        "mcp-method": "tools/list",
    }
    return orjson.dumps(body), headers


def bearer_headers(token: str, sid: str | None = None) -> dict[str, str]:
    """A handshake-era POST's headers with ``token``; with ``sid``, in that session."""
    headers = {
        "content-type": "application/json",
        "accept": ACCEPT,
        "authorization": f"Bearer {token}",
    }
    if sid is not None:
        headers |= {"mcp-session-id": sid, "mcp-protocol-version": LEGACY}
    return headers


def legacy_message(
    method: str, params: dict[str, Any] | None = None, request_id: int | None = 1
) -> bytes:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        msg["params"] = params
    if request_id is not None:
        msg["id"] = request_id
    return orjson.dumps(msg)


INITIALIZE_PARAMS = {
    "protocolVersion": LEGACY,
    "capabilities": {},
    "clientInfo": {"name": "wardgate-auth-test", "version": "0"},
}


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    raw: bytes
    elapsed: float

    @property
    def json(self) -> Any:
        text = self.raw.decode("utf-8", "replace")
        if text.startswith(("event:", "data:", "id:")):  # one SSE response
            datas = [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]
            return orjson.loads(datas[-1])
        return orjson.loads(self.raw) if self.raw else None

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name.lower():
                return v
        return None


async def exchange(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    read_limit: int | None = None,
) -> Answer:
    """One HTTP exchange, timed on the client from sending to the end of the body."""
    started = time.perf_counter()
    async with session.request(
        method, url, data=body, headers=headers or {}, timeout=aiohttp.ClientTimeout(total=WAIT)
    ) as resp:
        raw = await resp.content.read(read_limit) if read_limit else await resp.read()
        elapsed = time.perf_counter() - started
        return Answer(resp.status, [(k.lower(), v) for k, v in resp.headers.items()], raw, elapsed)


def refusal_shape(answer: Answer) -> tuple[int, tuple[tuple[str, str], ...], dict[str, Any]]:
    """What every authentication failure must share: status, headers (but Date and
    Content-Length) and body (but the decision id, which must be there)."""
    headers = tuple(
        sorted((k, v) for k, v in answer.headers if k not in ("date", "content-length"))
    )
    body = orjson.loads(answer.raw)
    decision = body["error"]["data"].pop("decisionId")
    assert isinstance(decision, str) and decision
    return answer.status, headers, body
