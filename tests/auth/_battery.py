"""The attack battery: every way a request can fail to authenticate, as raw HTTP calls
against a running gateway, next to the legitimate calls that must still pass."""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from idp.provider import RunningIdp
from joserfc import jws
from joserfc.jwk import ECKey, Key

from support.servers import run_gateway
from wardgate.gateway import Gateway

from ._support import (
    OTHER_RESOURCE,
    RESOURCE,
    Answer,
    JwksServer,
    LocalIssuer,
    Pki,
    alg_none,
    b64url_json,
    dpop_proof,
    exchange,
    jwks_server,
    modern_call,
    tls_url,
)

ROUTE = "demo"


@dataclass
class Env:
    base: str
    gateway: Gateway
    jwks: JwksServer
    a: LocalIssuer
    b: LocalIssuer
    evil: LocalIssuer
    bearer: str
    dpop_token: str
    dpop_key: Key
    mtls_token: str
    other_aud_token: str
    tls: bool
    floor_ms: float
    _sessions: dict[str | None, aiohttp.ClientSession] = field(default_factory=dict)
    pki: Pki | None = None

    @property
    def url(self) -> str:
        return f"{self.base}/mcp/{ROUTE}"

    async def session(self, cert: str | None) -> aiohttp.ClientSession:
        if cert not in self._sessions:
            if self.tls:
                assert self.pki is not None
                connector = aiohttp.TCPConnector(ssl=self.pki.client_context(cert))
            else:
                assert cert is None, "client certificates need the TLS gateway"
                connector = aiohttp.TCPConnector()
            s = aiohttp.ClientSession(connector=connector)
            await exchange(s, "GET", f"{self.base}/healthz")  # handshake outside the timing
            self._sessions[cert] = s
        return self._sessions[cert]

    async def call(
        self,
        authorization: str | None = None,
        *,
        dpop: str | None = None,
        cert: str | None = None,
        method: str = "POST",
        path: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> Answer:
        body, headers = modern_call("add", {"a": 2, "b": 3})
        if authorization is not None:
            headers["authorization"] = authorization
        if dpop is not None:
            headers["dpop"] = dpop
        headers.update(extra or {})
        url = self.url if path is None else f"{self.base}{path}"
        return await exchange(
            await self.session(cert),
            method,
            url,
            body=body if method == "POST" else None,
            headers=headers,
        )

    def proof(
        self,
        key: Key | None = None,
        *,
        method: str = "POST",
        url: str | None = None,
        iat: float | None = None,
        token: str | None = None,
    ) -> str:
        return dpop_proof(
            key or self.dpop_key,
            method,
            url or self.url,
            access_token=token or self.dpop_token,
            iat=iat,
        )

    async def aclose(self) -> None:
        for s in self._sessions.values():
            await s.close()


def gateway_config(
    env_issuers: list[dict[str, Any]],
    upstream_url: str,
    *,
    failure_status: int = 421,
    floor_ms: float = 100,
    tls: dict[str, Any] | None = None,
    spiffe: dict[str, Any] | None = None,
    scopes_supported: list[str] | None = None,
) -> dict[str, Any]:
    auth: dict[str, Any] = {
        "resource": RESOURCE,
        "issuers": env_issuers,
        "failure_status": failure_status,
        "failure_floor_ms": floor_ms,
        "allow_loopback_jwks": True,
    }
    if spiffe is not None:
        auth["spiffe"] = spiffe
    if scopes_supported:
        auth["scopes_supported"] = scopes_supported
    config: dict[str, Any] = {
        "auth": auth,
        "upstreams": {"demo": {"transport": "http", "url": upstream_url}},
        "routes": {ROUTE: {"upstreams": ["demo"]}},
    }
    if tls is not None:
        config["server"] = {"tls": tls}
    return config


@contextlib.asynccontextmanager
async def battery_env(
    idp: RunningIdp,
    upstream_url: str,
    pki: Pki,
    *,
    tls: bool,
    failure_status: int = 421,
    floor_ms: float = 100,
    scopes_supported: list[str] | None = None,
) -> AsyncIterator[Env]:
    a = LocalIssuer.create("https://idp-a.example", "a")
    b = LocalIssuer.create("https://idp-b.example", "b")
    evil = LocalIssuer.create("https://evil.example", "evil")
    routes = {"/a/jwks": a.jwks, "/b/jwks": b.jwks, "/evil/jwks": evil.jwks}
    async with jwks_server(routes) as jwks:
        issuers = [
            {"issuer": idp.issuer, "tenant_claim": "tenant", "algorithms": ["ES256"]},
            {
                "issuer": a.name,
                "jwks_uri": f"{jwks.base}/a/jwks",
                "tenant_claim": "tenant",
                "allowed_tenants": ["tenant-a"],
            },
            {"issuer": b.name, "jwks_uri": f"{jwks.base}/b/jwks", "tenant": "tenant-b"},
        ]
        config = gateway_config(
            issuers,
            upstream_url,
            failure_status=failure_status,
            floor_ms=floor_ms,
            tls=pki.tls_config("optional", pki.client_bundle_file) if tls else None,
            spiffe={
                "trust_bundles": {
                    "example.org": str(pki.client_ca_file),
                    "partner.example": str(pki.partner_ca_file),
                },
                "tenants": {"example.org": "tenant-w"},
            }
            if tls
            else None,
            scopes_supported=scopes_supported,
        )
        dpop_key = ECKey.generate_key("P-256")
        bearer = (await idp.token("agent"))["access_token"]
        dpop_token = (await idp.token("agent-dpop", dpop_key=dpop_key))["access_token"]
        mtls_token = (await idp.token("agent-mtls", client_cert_pem=pki.certs["agent"].pem))[
            "access_token"
        ]
        async with run_gateway(config) as (base, gateway):
            env = Env(
                base=tls_url(base) if tls else base,
                gateway=gateway,
                jwks=jwks,
                a=a,
                b=b,
                evil=evil,
                bearer=bearer,
                dpop_token=dpop_token,
                dpop_key=dpop_key,
                mtls_token=mtls_token,
                other_aud_token=(await idp.token("agent", resource=OTHER_RESOURCE))["access_token"],
                tls=tls,
                floor_ms=floor_ms,
                pki=pki,
            )
            try:
                yield env
            finally:
                await env.aclose()


# --------------------------------------------------------------------------- cases

Case = Callable[[Env], Awaitable[Answer]]
REFUSALS: dict[str, Case] = {}
#: What the gateway logs as the reason (the client never sees it): proves each case
#: was refused for the cause it stands for, not for some earlier accident.
REASONS: dict[str, str] = {}
TLS_REFUSALS: set[str] = set()
LEGIT: dict[str, Case] = {}
TLS_LEGIT: set[str] = set()


def refusal(name: str, reason: str, *, tls: bool = False) -> Callable[[Case], Case]:
    def register(fn: Case) -> Case:
        REFUSALS[name] = fn
        REASONS[name] = reason
        if tls:
            TLS_REFUSALS.add(name)
        return fn

    return register


def legit(name: str, *, tls: bool = False) -> Callable[[Case], Case]:
    def register(fn: Case) -> Case:
        LEGIT[name] = fn
        if tls:
            TLS_LEGIT.add(name)
        return fn

    return register


@refusal("no_token", "no credentials")
async def _no_token(env: Env) -> Answer:
    return await env.call()


@refusal("garbage_token", "not a compact JWS")
async def _garbage(env: Env) -> Answer:
    return await env.call("Bearer not-a-jwt-at-all")


@refusal("garbage_three_segments", "not base64url strict JSON")
async def _garbage3(env: Env) -> Answer:
    return await env.call("Bearer aaaa.bbbb.cccc")


@refusal("empty_bearer", "malformed access token")
async def _empty_bearer(env: Env) -> Answer:
    return await env.call("Bearer ")


@refusal("basic_scheme", "unsupported authorization scheme")
async def _basic(env: Env) -> Answer:
    return await env.call("Basic YWdlbnQ6YWdlbnQtc2VjcmV0")


@refusal("alg_none", "alg 'none' not allowed")
async def _alg_none(env: Env) -> Answer:
    return await env.call(f"Bearer {alg_none(env.bearer)}")


@refusal("tampered_payload", "signature rejected")
async def _tampered(env: Env) -> Answer:
    head, body, sig = env.bearer.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["scope"] = "tools:read tools:call admin"
    return await env.call(f"Bearer {head}.{b64url_json(payload)}.{sig}")


@refusal("hs256_with_rsa_public_key", "alg 'HS256' not allowed")
async def _hs256(env: Env) -> Answer:
    return await env.call(f"Bearer {env.a.hs256_with_public_key()}")


@refusal("kid_path_traversal", "no RSA key for kid='../")
async def _kid_path(env: Env) -> Answer:
    token = env.a.mint(env.evil.rsa, header={"kid": "../../../../../../etc/passwd"})
    return await env.call(f"Bearer {token}")


@refusal("kid_sql_injection", "no RSA key for kid=\"x' UNION")
async def _kid_sql(env: Env) -> Answer:
    token = env.a.mint(env.evil.rsa, header={"kid": "x' UNION SELECT 'secret' -- "})
    return await env.call(f"Bearer {token}")


@refusal("jku_elsewhere", "no RSA key for kid='evil-rsa'")
async def _jku(env: Env) -> Answer:
    header = {"jku": f"{env.jwks.base}/evil/jwks", "kid": env.evil.rsa.kid}
    return await env.call(f"Bearer {env.a.mint(env.evil.rsa, header=header)}")


@refusal("x5u_elsewhere", "no RSA key for kid='evil-rsa'")
async def _x5u(env: Env) -> Answer:
    header = {"x5u": f"{env.jwks.base}/evil/x5u", "kid": env.evil.rsa.kid}
    return await env.call(f"Bearer {env.a.mint(env.evil.rsa, header=header)}")


@refusal("embedded_jwk", "signature rejected")
async def _jwk(env: Env) -> Answer:
    header = {"jwk": env.evil.rsa.as_dict(private=False), "kid": None}
    return await env.call(f"Bearer {env.a.mint(env.evil.rsa, header=header)}")


@refusal("embedded_jwk_with_real_kid", "signature rejected")
async def _jwk_kid(env: Env) -> Answer:
    header = {"jwk": env.evil.rsa.as_dict(private=False), "kid": env.a.rsa.kid}
    return await env.call(f"Bearer {env.a.mint(env.evil.rsa, header=header)}")


@refusal("expired", "expired at")
async def _expired(env: Env) -> Answer:
    now = int(time.time())
    return await env.call(f"Bearer {env.a.mint(iat=now - 7200, exp=now - 3600)}")


@refusal("not_yet_valid", "not valid before")
async def _nbf(env: Env) -> Answer:
    return await env.call(f"Bearer {env.a.mint(nbf=int(time.time()) + 3600)}")


@refusal("id_token_typ", "is not an access token")
async def _id_token_typ(env: Env) -> Answer:
    return await env.call(f"Bearer {env.a.mint(header={'typ': 'id_token+jwt'})}")


@refusal("id_token_claims", "an ID token")
async def _id_token_claims(env: Env) -> Answer:
    return await env.call(f"Bearer {env.a.mint(nonce='n-0S6', at_hash='77QmUPtjPfzWtF2AnpK9RQ')}")


@refusal("nan_nbf", "strict JSON")
async def _nan_nbf(env: Env) -> Answer:
    # A NaN nbf compares false with everything: "not valid before" would never fire.
    claims = json.dumps(env.a.claims())[:-1] + ', "nbf": NaN}'
    header = {"alg": "RS256", "typ": "at+jwt", "kid": env.a.rsa.kid}
    token = jws.serialize_compact(header, claims.encode(), env.a.rsa, algorithms=["RS256"])
    return await env.call(f"Bearer {token}")


@refusal("userinfo_aud", "does not contain")
async def _userinfo_aud(env: Env) -> Answer:
    aud = RESOURCE.replace("https://", "https://user@")
    return await env.call(f"Bearer {env.a.mint(aud=aud)}")


@refusal("issued_in_the_future", "issued in the future")
async def _iat_future(env: Env) -> Answer:
    now = int(time.time())
    return await env.call(f"Bearer {env.a.mint(iat=now + 3600, exp=now + 7200)}")


@refusal("wrong_aud_local", "does not contain")
async def _aud_local(env: Env) -> Answer:
    return await env.call(f"Bearer {env.a.mint(aud=OTHER_RESOURCE)}")


@refusal("wrong_aud_real_idp", "does not contain")
async def _aud_real(env: Env) -> Answer:
    return await env.call(f"Bearer {env.other_aud_token}")


@refusal("wrong_iss", "untrusted issuer")
async def _wrong_iss(env: Env) -> Answer:
    return await env.call(f"Bearer {env.evil.mint()}")


@refusal("iss_of_b_signed_by_a", "at issuer 'https://idp-b.example'")
async def _iss_confusion(env: Env) -> Answer:
    return await env.call(f"Bearer {env.a.mint(iss=env.b.name)}")


@refusal("tenant_not_allowed_for_issuer", "tenant 'tenant-b' not allowed")
async def _tenant(env: Env) -> Answer:
    return await env.call(f"Bearer {env.a.mint(tenant='tenant-b')}")


@refusal("dpop_replayed", "replayed")
async def _dpop_replay(env: Env) -> Answer:
    proof = env.proof()
    first = await env.call(f"DPoP {env.dpop_token}", dpop=proof)
    assert first.status == 200, first.raw
    return await env.call(f"DPoP {env.dpop_token}", dpop=proof)


@refusal("dpop_other_url", "/mcp/other' does not match")
async def _dpop_url(env: Env) -> Answer:
    proof = env.proof(url=f"{env.base}/mcp/other")
    return await env.call(f"DPoP {env.dpop_token}", dpop=proof)


@refusal("dpop_other_host", "htu 'https://evil.example")
async def _dpop_host(env: Env) -> Answer:
    proof = env.proof(url="https://evil.example/mcp/demo")
    return await env.call(f"DPoP {env.dpop_token}", dpop=proof)


@refusal("dpop_other_method", "htm 'GET'")
async def _dpop_method(env: Env) -> Answer:
    return await env.call(f"DPoP {env.dpop_token}", dpop=env.proof(method="GET"))


@refusal("dpop_stale", "is stale")
async def _dpop_stale(env: Env) -> Answer:
    proof = env.proof(iat=time.time() - 3600)
    return await env.call(f"DPoP {env.dpop_token}", dpop=proof)


@refusal("dpop_key_not_cnf_jkt", "does not match cnf.jkt")
async def _dpop_thief(env: Env) -> Answer:
    proof = env.proof(ECKey.generate_key("P-256"))
    return await env.call(f"DPoP {env.dpop_token}", dpop=proof)


@refusal("dpop_proof_for_other_token", "ath does not match")
async def _dpop_ath(env: Env) -> Answer:
    return await env.call(f"DPoP {env.dpop_token}", dpop=env.proof(token=env.bearer))


@refusal("dpop_bound_token_as_bearer", "presented as a bearer token")
async def _dpop_as_bearer(env: Env) -> Answer:
    return await env.call(f"Bearer {env.dpop_token}")


@refusal("dpop_scheme_without_proof", "missing DPoP proof")
async def _dpop_no_proof(env: Env) -> Answer:
    return await env.call(f"DPoP {env.dpop_token}")


@refusal("dpop_proof_without_token", "proof without an access token")
async def _dpop_only(env: Env) -> Answer:
    return await env.call(dpop=env.proof())


@refusal("dpop_two_proofs", "more than one DPoP header")
async def _dpop_two(env: Env) -> Answer:
    return await env.call(f"DPoP {env.dpop_token}", dpop=f"{env.proof()}, {env.proof()}")


@refusal("cert_bound_token_without_cert", "certificate-bound token without a client cert")
async def _mtls_nocert(env: Env) -> Answer:
    return await env.call(f"Bearer {env.mtls_token}")


@refusal("cert_bound_token_other_cert", "does not match cnf.x5t#S256", tls=True)
async def _mtls_other(env: Env) -> Answer:
    return await env.call(f"Bearer {env.mtls_token}", cert="other")


@refusal("svid_from_another_ca", "does not verify", tls=True)
async def _svid_other_ca(env: Env) -> Answer:
    return await env.call(cert="cross-domain")


@refusal("client_cert_without_spiffe_id", "0 URI SANs", tls=True)
async def _svid_none(env: Env) -> Answer:
    return await env.call(cert="no-spiffe")


@refusal("unknown_route", "no route at")
async def _unknown_route(env: Env) -> Answer:
    return await env.call(path="/mcp/nosuchroute")


@refusal("get_stream_without_token", "no credentials")
async def _get(env: Env) -> Answer:
    return await env.call(method="GET", extra={"accept": "text/event-stream"})


@refusal("delete_without_token", "no credentials")
async def _delete(env: Env) -> Answer:
    return await env.call(method="DELETE", extra={"mcp-session-id": "abc"})


# -------------------------------------------------------------------- legitimate


@legit("real_idp_bearer")
async def _ok_bearer(env: Env) -> Answer:
    return await env.call(f"Bearer {env.bearer}")


@legit("real_idp_dpop")
async def _ok_dpop(env: Env) -> Answer:
    return await env.call(f"DPoP {env.dpop_token}", dpop=env.proof())


@legit("real_idp_cert_bound", tls=True)
async def _ok_mtls(env: Env) -> Answer:
    return await env.call(f"Bearer {env.mtls_token}", cert="agent")


@legit("spiffe_svid", tls=True)
async def _ok_svid(env: Env) -> Answer:
    return await env.call(cert="agent")


@legit("local_issuer_a")
async def _ok_a(env: Env) -> Answer:
    return await env.call(f"Bearer {env.a.mint()}")


@legit("local_issuer_b")
async def _ok_b(env: Env) -> Answer:
    return await env.call(f"Bearer {env.b.mint(tenant='tenant-a')}")
