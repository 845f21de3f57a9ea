"""Opaque access tokens: what an introspection answer must say to be believed (RFC 7662),
what is cached, and that every failure of the endpoint refuses the token."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import pytest
import trustme
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc.jwk import ECKey
from pydantic import ValidationError

from wardgate.config.identity import AuthConfig, IntrospectionEntry
from wardgate.edge.auth import EdgeAuth
from wardgate.errors import AuthenticationFailed, ConfigError
from wardgate.identity import (
    Authenticator,
    AuthRequest,
    DpopVerifier,
    IntrospectionConfig,
    IntrospectionVerifier,
    IssuerConfig,
    JwtVerifier,
    Secret,
    certificate_thumbprint,
)
from wardgate.identity.introspection import NEGATIVE_CACHE_SECONDS
from wardgate.net.fetch import FetchPolicy, FetchRefused, SafeFetcher
from wardgate.state import MemoryStateStore

from ._certs import issue
from .conftest import NOW, RESOURCE, FakeClock, LocalIssuer
from .test_dpop import proof

ISSUER = "https://as.example"
CLIENT_ID = "wardgate-rs"
SECRET = "s3cr3t: never+log/me"
OPAQUE = "2YotnFZFEjr1zMsicMWpAA"
URL = "https://mcp.example.com/mcp"


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def active(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "active": True,
        "iss": ISSUER,
        "aud": RESOURCE,
        "sub": "user-1",
        "client_id": "agent-1",
        "scope": "tools:read tools:call",
        "tenant": "tenant-a",
        "exp": int(NOW) + 300,
        "iat": int(NOW) - 10,
        "token_type": "Bearer",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


@dataclass
class Endpoint:
    """A loopback introspection endpoint; ``answer`` makes each response."""

    url: str
    answer: Callable[[], web.StreamResponse | dict[str, Any]]
    calls: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
async def endpoint() -> AsyncIterator[Endpoint]:
    ep = Endpoint("", lambda: active())

    async def handler(request: web.Request) -> web.StreamResponse:
        form = await request.post()
        ep.calls.append(
            {
                "authorization": request.headers.get("Authorization"),
                "content_type": request.content_type,
                "form": {k: str(v) for k, v in form.items()},
            }
        )
        value = ep.answer()
        if isinstance(value, web.StreamResponse):
            return value
        return web.json_response(value)

    app = web.Application()
    app.router.add_post("/introspect", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    ep.url = f"http://127.0.0.1:{runner.addresses[0][1]}/introspect"
    yield ep
    await runner.cleanup()


def make_config(url: str, **overrides: Any) -> IntrospectionConfig:
    values: dict[str, Any] = {
        "endpoint": url,
        "client_id": CLIENT_ID,
        "client_secret": Secret(SECRET),
        "issuer": ISSUER,
        "audience": RESOURCE,
        "tenant_claim": "tenant",
        "timeout_seconds": 2.0,
    }
    values.update(overrides)
    return IntrospectionConfig(**values)


@pytest.fixture
async def make(
    endpoint: Endpoint, clock: FakeClock
) -> AsyncIterator[Callable[..., IntrospectionVerifier]]:
    made: list[IntrospectionVerifier] = []

    def build(**overrides: Any) -> IntrospectionVerifier:
        v = IntrospectionVerifier(
            make_config(endpoint.url, **overrides),
            allow_loopback=True,
            clock=clock,
            max_clock_skew=30,
        )
        made.append(v)
        return v

    yield build
    for v in made:
        await v.aclose()


@pytest.fixture
def verifier(make: Callable[..., IntrospectionVerifier]) -> IntrospectionVerifier:
    return make()


async def refused(v: IntrospectionVerifier, token: str = OPAQUE) -> str:
    with pytest.raises(AuthenticationFailed) as info:
        await v.verify(token)
    assert info.value.code == "wardgate.unauthenticated"
    return info.value.detail


# ------------------------------------------------------------------ the exchange


async def test_an_active_token_is_mapped_from_the_answer(
    verifier: IntrospectionVerifier, endpoint: Endpoint
) -> None:
    t = await verifier.verify(OPAQUE)
    assert (t.issuer, t.subject, t.tenant, t.client_id) == (
        ISSUER,
        "user-1",
        "tenant-a",
        "agent-1",
    )
    assert t.scopes == {"tools:read", "tools:call"}
    assert t.cnf == {} and t.expires_at == NOW + 300


async def test_the_request_is_a_form_post_with_client_secret_basic(
    verifier: IntrospectionVerifier, endpoint: Endpoint
) -> None:
    await verifier.verify(OPAQUE)
    [call] = endpoint.calls
    assert call["content_type"] == "application/x-www-form-urlencoded"
    assert call["form"] == {"token": OPAQUE, "token_type_hint": "access_token"}
    scheme, _, encoded = call["authorization"].partition(" ")
    user, _, password = base64.b64decode(encoded).decode().partition(":")
    assert (scheme, unquote(user), unquote(password)) == ("Basic", CLIENT_ID, SECRET)


async def test_a_client_credentials_answer_without_sub_is_the_client(
    verifier: IntrospectionVerifier, endpoint: Endpoint
) -> None:
    endpoint.answer = lambda: active(sub=None)
    t = await verifier.verify(OPAQUE)
    assert (t.subject, t.client_id) == ("agent-1", "agent-1")


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ({"active": False}, "not active"),
        (active(active=None), "not active"),
        (active(active="true"), "not active"),
        (active(aud="https://other-mcp.example.com/mcp"), "does not contain"),
        (active(aud=["https://other-mcp.example.com/mcp"]), "does not contain"),
        (active(aud=[]), "aud malformed"),
        (active(aud=None), "aud missing"),
        (active(iss="https://evil.example"), "iss"),
        (active(exp=int(NOW) - 31), "expired"),
        (active(exp=None), "missing exp"),
        (active(exp="soon"), "exp is not a number"),
        (active(nbf=int(NOW) + 31), "not valid before"),
        (active(token_type="refresh_token"), "not an access token"),
        (active(token_type="DPoP"), "without cnf.jkt"),
        (active(cnf={"x5t": "abc"}), "unsupported cnf"),
        (active(cnf="jkt"), "cnf is not an object"),
        (active(sub=None, client_id=None), "neither"),
        (active(sub=7), "sub malformed"),
        (active(tenant=None), "tenant claim"),
        (active(scope=7), "scope claim"),
    ],
)
async def test_an_unacceptable_answer_is_refused(
    verifier: IntrospectionVerifier, endpoint: Endpoint, answer: dict[str, Any], reason: str
) -> None:
    endpoint.answer = lambda: answer
    assert reason in await refused(verifier)


@pytest.mark.parametrize(
    "answer",
    [
        active(aud=[RESOURCE, "https://other-mcp.example.com/mcp"]),
        active(aud="HTTPS://MCP.example.com:443/mcp/"),
        active(iss=None),
        active(nbf=int(NOW) - 5, token_type="bearer"),
        active(token_type=None),
    ],
)
async def test_an_acceptable_answer_passes(
    verifier: IntrospectionVerifier, endpoint: Endpoint, answer: dict[str, Any]
) -> None:
    endpoint.answer = lambda: answer
    assert (await verifier.verify(OPAQUE)).subject == "user-1"


async def test_a_missing_aud_passes_only_when_explicitly_allowed(
    make: Callable[..., IntrospectionVerifier], endpoint: Endpoint
) -> None:
    endpoint.answer = lambda: active(aud=None)
    assert "aud missing" in await refused(make())
    assert (await make(require_audience=False).verify(OPAQUE)).subject == "user-1"
    endpoint.answer = lambda: active(aud="https://other-mcp.example.com/mcp")
    assert "does not contain" in await refused(make(require_audience=False))


async def test_a_missing_exp_passes_only_when_allowed_and_is_cached_briefly(
    make: Callable[..., IntrospectionVerifier], endpoint: Endpoint, clock: FakeClock
) -> None:
    endpoint.answer = lambda: active(exp=None)
    v = make(require_exp=False, cache_max_seconds=10)
    assert (await v.verify(OPAQUE)).expires_at is None
    clock.now += 9
    await v.verify(OPAQUE)
    assert len(endpoint.calls) == 1
    clock.now += 1
    await v.verify(OPAQUE)
    assert len(endpoint.calls) == 2


# --------------------------------------------------------------- fail closed


async def test_an_endpoint_that_is_down_refuses(make: Callable[..., IntrospectionVerifier]) -> None:
    v = make(endpoint=f"http://127.0.0.1:{closed_port()}/introspect")
    assert "endpoint unavailable" in await refused(v)


@pytest.mark.parametrize(
    "response",
    [
        lambda: web.Response(status=500, text="boom"),
        lambda: web.Response(status=401, text='{"error":"invalid_client"}'),
        lambda: web.Response(status=302, headers={"Location": "http://127.0.0.1:1/"}),
        lambda: web.Response(text="{not json", content_type="application/json"),
        lambda: web.Response(text='[{"active": true}]', content_type="application/json"),
        lambda: web.Response(text="", content_type="application/json"),
        lambda: web.json_response(active(padding="x" * 70_000)),
    ],
    ids=["500", "401", "redirect", "garbage", "array", "empty", "oversized"],
)
async def test_a_broken_answer_refuses(
    verifier: IntrospectionVerifier,
    endpoint: Endpoint,
    response: Callable[[], web.StreamResponse],
) -> None:
    endpoint.answer = response
    assert "endpoint unavailable" in await refused(verifier)
    assert len(endpoint.calls) == 1


async def test_a_slow_endpoint_refuses_after_the_timeout(
    make: Callable[..., IntrospectionVerifier], endpoint: Endpoint
) -> None:
    never = asyncio.Event()

    async def hang(request: web.Request) -> web.StreamResponse:
        await never.wait()
        raise AssertionError("unreachable")

    app = web.Application()
    app.router.add_post("/introspect", hang)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        v = make(
            endpoint=f"http://127.0.0.1:{runner.addresses[0][1]}/introspect", timeout_seconds=0.2
        )
        assert "TimeoutError" in await refused(v)
    finally:
        never.set()
        await runner.cleanup()


async def test_an_unexpected_error_in_the_fetcher_refuses(
    endpoint: Endpoint, clock: FakeClock
) -> None:
    class Exploding(SafeFetcher):
        async def post_form_json(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
            raise RuntimeError("surprise")

    v = IntrospectionVerifier(
        make_config(endpoint.url), fetcher=Exploding(FetchPolicy(allow_loopback=True)), clock=clock
    )
    auth = Authenticator(introspection=v)
    with pytest.raises(AuthenticationFailed) as info:
        await auth.authenticate(AuthRequest("POST", URL, authorization=f"Bearer {OPAQUE}"))
    assert "RuntimeError" in info.value.detail


async def test_start_refuses_plain_http_to_a_remote_endpoint(clock: FakeClock) -> None:
    v = IntrospectionVerifier(make_config("http://as.example/introspect"), allow_loopback=True)
    with pytest.raises(ConfigError):
        await v.start()
    await v.aclose()
    strict = IntrospectionVerifier(make_config("http://127.0.0.1:9/introspect"))
    with pytest.raises(ConfigError):
        await strict.start()
    await strict.aclose()


# --------------------------------------------------------------------- cache


async def test_a_positive_answer_is_cached_by_token(
    verifier: IntrospectionVerifier, endpoint: Endpoint
) -> None:
    first = await verifier.verify(OPAQUE)
    for _ in range(5):
        assert await verifier.verify(OPAQUE) == first
    assert len(endpoint.calls) == 1
    await verifier.verify(OPAQUE + "x")
    assert len(endpoint.calls) == 2


async def test_the_cache_lasts_at_most_cache_max_seconds_and_never_past_exp(
    make: Callable[..., IntrospectionVerifier], endpoint: Endpoint, clock: FakeClock
) -> None:
    v = make(cache_max_seconds=60)
    await v.verify(OPAQUE)
    clock.now += 59
    await v.verify(OPAQUE)
    assert len(endpoint.calls) == 1
    clock.now += 1
    await v.verify(OPAQUE)
    assert len(endpoint.calls) == 2

    endpoint.answer = lambda: active(exp=int(clock.now) + 5)
    await v.verify("short-lived")
    clock.now += 5
    endpoint.answer = lambda: {"active": False}
    await refused(v, "short-lived")
    assert len(endpoint.calls) == 4


async def test_a_negative_answer_is_remembered_only_briefly(
    verifier: IntrospectionVerifier, endpoint: Endpoint, clock: FakeClock
) -> None:
    """Made-up tokens replayed in a flood cost the authorization server one call each
    per NEGATIVE_CACHE_SECONDS, not one per request; a token later activated works."""
    endpoint.answer = lambda: {"active": False}
    await refused(verifier)
    await refused(verifier)
    assert len(endpoint.calls) == 1
    endpoint.answer = lambda: active()
    clock.now += NEGATIVE_CACHE_SECONDS
    assert (await verifier.verify(OPAQUE)).subject == "user-1"
    assert len(endpoint.calls) == 2


async def test_cache_max_seconds_zero_asks_every_time(
    make: Callable[..., IntrospectionVerifier], endpoint: Endpoint
) -> None:
    v = make(cache_max_seconds=0)
    await v.verify(OPAQUE)
    await v.verify(OPAQUE)
    assert len(endpoint.calls) == 2


async def test_the_cache_is_bounded(
    make: Callable[..., IntrospectionVerifier], endpoint: Endpoint
) -> None:
    v = make(cache_size=2)
    for token in ("t1", "t2", "t3"):
        await v.verify(token)
    await v.verify("t3")
    await v.verify("t2")
    assert len(endpoint.calls) == 3
    await v.verify("t1")  # evicted, the oldest
    assert len(endpoint.calls) == 4


# ------------------------------------------------------------------- secrets


async def test_the_secret_never_reaches_a_log_a_repr_or_an_error(
    make: Callable[..., IntrospectionVerifier],
    endpoint: Endpoint,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    details: list[str] = []
    v = make()
    await v.verify(OPAQUE)
    for response in (
        lambda: {"active": False},
        lambda: web.Response(status=500),
        lambda: web.Response(text="nope"),
    ):
        endpoint.answer = response
        details.append(await refused(v, "other"))
    down = make(endpoint=f"http://127.0.0.1:{closed_port()}/introspect")
    details.append(await refused(down))
    texts = [caplog.text, repr(v), repr(v.config), str(v.config), *details]
    assert all(SECRET not in t and "s3cr3t" not in t for t in texts)
    assert "**" in repr(v.config.client_secret) and v.config.client_secret.reveal() == SECRET


def test_the_config_file_names_the_secrets_variable_never_the_secret() -> None:
    base = {
        "endpoint": "https://as.example/introspect",
        "client_id": CLIENT_ID,
        "issuer": ISSUER,
    }
    with pytest.raises(ValidationError, match="client_secret_env"):
        IntrospectionEntry.model_validate(base | {"client_secret": SECRET})
    with pytest.raises(ValidationError):
        IntrospectionEntry.model_validate(base | {"client_secret_env": "not a name"})
    entry = IntrospectionEntry.model_validate(base | {"client_secret_env": "WG_SECRET"})
    with pytest.raises(ConfigError, match="WG_SECRET"):
        entry.introspection_config(RESOURCE, {})
    cfg = entry.introspection_config(RESOURCE, {"WG_SECRET": SECRET})
    assert cfg.client_secret.reveal() == SECRET and cfg.audience == RESOURCE
    assert SECRET not in repr(entry) + repr(cfg)


async def test_the_edge_builds_introspection_from_config_and_the_environment() -> None:
    config = AuthConfig.model_validate(
        {
            "resource": RESOURCE,
            "introspection": {
                "endpoint": "https://as.example/introspect",
                "client_id": CLIENT_ID,
                "client_secret_env": "WG_SECRET",
                "issuer": ISSUER,
            },
        }
    )
    with pytest.raises(ConfigError):
        EdgeAuth(config, environ={})
    edge = EdgeAuth(config, environ={"WG_SECRET": SECRET})
    assert edge.metadata()["authorization_servers"] == [ISSUER]


# ----------------------------------------------------- routing and bindings


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def auth(
    verifier: IntrospectionVerifier, clock: FakeClock, jwt_verifier: JwtVerifier
) -> Authenticator:
    return Authenticator(
        jwt=jwt_verifier,
        introspection=verifier,
        dpop=DpopVerifier(MemoryStateStore(clock=clock), clock=clock),
    )


@pytest.fixture
async def jwt_verifier(
    issuer_a: LocalIssuer, clock: FakeClock, endpoint: Endpoint
) -> AsyncIterator[JwtVerifier]:
    # The JWKS is handed over in-process: this verifier never needs the network.
    class Jwks(SafeFetcher):
        async def get_json(self, url: str) -> dict[str, Any]:
            return issuer_a.jwks()

    v = JwtVerifier(
        [IssuerConfig(issuer_a.name, RESOURCE, jwks_uri="https://idp-a.example/jwks")],
        fetcher=Jwks(FetchPolicy()),
        clock=clock,
    )
    await v.start()
    yield v
    await v.aclose()


def request(authorization: str, **kw: Any) -> AuthRequest:
    return AuthRequest("POST", URL, authorization=authorization, **kw)


async def test_an_opaque_token_goes_to_introspection_only(
    auth: Authenticator, endpoint: Endpoint
) -> None:
    p = await auth.authenticate(request(f"Bearer {OPAQUE}"))
    assert (p.method, p.subject, p.issuer, p.tenant) == (
        "introspection",
        "user-1",
        ISSUER,
        "tenant-a",
    )
    assert p.scopes == {"tools:read", "tools:call"} and p.claims["aud"] == RESOURCE
    assert len(endpoint.calls) == 1


async def test_a_jwt_goes_to_the_jwt_verifier_only(
    auth: Authenticator, endpoint: Endpoint, issuer_a: LocalIssuer
) -> None:
    p = await auth.authenticate(request(f"Bearer {issuer_a.mint()}"))
    assert p.method == "jwt"
    forged = issuer_a.mint(key=ECKey.generate_key("P-256"), alg="ES256")
    with pytest.raises(AuthenticationFailed, match="jwt"):
        await auth.authenticate(request(f"Bearer {forged}"))
    assert endpoint.calls == []  # never introspected, not even when the JWT fails


async def test_without_introspection_an_opaque_token_is_refused_as_before(
    jwt_verifier: JwtVerifier, endpoint: Endpoint
) -> None:
    with pytest.raises(AuthenticationFailed):
        await Authenticator(jwt=jwt_verifier).authenticate(request(f"Bearer {OPAQUE}"))
    assert endpoint.calls == []


async def test_introspection_alone_refuses_jwts(
    verifier: IntrospectionVerifier, issuer_a: LocalIssuer, endpoint: Endpoint
) -> None:
    with pytest.raises(AuthenticationFailed, match="not accepted"):
        await Authenticator(introspection=verifier).authenticate(
            request(f"Bearer {issuer_a.mint()}")
        )
    assert endpoint.calls == []


async def test_a_dpop_bound_opaque_token_needs_its_proof(
    auth: Authenticator, endpoint: Endpoint
) -> None:
    key = ECKey.generate_key("P-256")
    endpoint.answer = lambda: active(token_type="DPoP", cnf={"jkt": key.thumbprint()})
    p = await auth.authenticate(request(f"DPoP {OPAQUE}", dpop=proof(key, token=OPAQUE)))
    assert (p.method, p.cnf) == ("dpop", {"jkt": key.thumbprint()})
    with pytest.raises(AuthenticationFailed, match="as a bearer token"):
        await auth.authenticate(request(f"Bearer {OPAQUE}"))
    with pytest.raises(AuthenticationFailed, match="does not match"):
        other = ECKey.generate_key("P-256")
        await auth.authenticate(request(f"DPoP {OPAQUE}", dpop=proof(other, token=OPAQUE)))
    with pytest.raises(AuthenticationFailed, match="ath"):
        await auth.authenticate(request(f"DPoP {OPAQUE}", dpop=proof(key, token="another")))
    endpoint.answer = lambda: active()
    with pytest.raises(AuthenticationFailed, match="not DPoP-bound"):
        await auth.authenticate(request("DPoP unbound", dpop=proof(key, token="unbound")))


async def test_a_certificate_bound_opaque_token_needs_its_certificate(
    auth: Authenticator, endpoint: Endpoint, ca: trustme.CA
) -> None:
    mine = issue(ca, "spiffe://example.org/agent")
    theirs = issue(ca, "spiffe://example.org/other")
    endpoint.answer = lambda: active(cnf={"x5t#S256": certificate_thumbprint(mine)})
    p = await auth.authenticate(request(f"Bearer {OPAQUE}", peer_certificate=mine))
    assert p.method == "mtls"
    with pytest.raises(AuthenticationFailed, match="without a client cert"):
        await auth.authenticate(request(f"Bearer {OPAQUE}"))
    with pytest.raises(AuthenticationFailed, match="does not match"):
        await auth.authenticate(request(f"Bearer {OPAQUE}", peer_certificate=theirs))


async def test_bound_tokens_required_refuses_a_plain_opaque_token(
    verifier: IntrospectionVerifier,
) -> None:
    auth = Authenticator(introspection=verifier, require_bound_tokens=True)
    with pytest.raises(AuthenticationFailed, match="unbound"):
        await auth.authenticate(request(f"Bearer {OPAQUE}"))


# ------------------------------------------------------------------ property


class _Answering(SafeFetcher):
    def __init__(self, answer: dict[str, Any]) -> None:
        super().__init__(FetchPolicy())
        self.answer = answer

    async def post_form_json(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if not isinstance(self.answer, dict):
            raise FetchRefused("not an object")
        return self.answer


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)
_MEMBERS = st.sampled_from(
    [
        "active",
        "iss",
        "aud",
        "exp",
        "nbf",
        "sub",
        "client_id",
        "scope",
        "tenant",
        "cnf",
        "token_type",
    ]
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_MEMBERS, _JSON, max_size=8), st.dictionaries(_MEMBERS, _JSON, max_size=3))
def test_any_answer_either_passes_every_check_or_is_refused(
    base_changes: dict[str, Any], more: dict[str, Any]
) -> None:
    answer = active() | base_changes | more
    v = IntrospectionVerifier(
        make_config("https://as.example/introspect"),
        fetcher=_Answering(answer),
        clock=FakeClock(),
        max_clock_skew=0,
    )
    try:
        t = asyncio.run(v.verify(OPAQUE))
    except AuthenticationFailed:
        return
    assert answer["active"] is True
    assert answer.get("iss") in (None, ISSUER)
    assert isinstance(answer["exp"], int | float) and answer["exp"] > NOW
    assert answer["aud"] == RESOURCE or RESOURCE in answer["aud"]
    assert t.subject in (answer.get("sub"), answer.get("client_id"))


async def test_the_post_obeys_the_same_fetch_policy_as_the_get(endpoint: Endpoint) -> None:
    strict = SafeFetcher(FetchPolicy(timeout_seconds=1.0))
    with pytest.raises(FetchRefused):
        await strict.post_form_json(endpoint.url, {"token": OPAQUE})
    await strict.aclose()
    assert endpoint.calls == []


#: Not JSON (NaN, infinities), overflowing, or not a plausible time (see test_hostile_json).
HOSTILE = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1" + "0" * 400, "1e20"]


# ---------------------------------------------------------- introspection answers


@pytest.mark.parametrize(
    ("member", "value"),
    [(m, v) for m in ("exp", "nbf", "iat") for v in HOSTILE] + [("other", v) for v in HOSTILE[:5]],
)
async def test_an_introspection_answer_with_nan_or_infinity_is_refused(
    make: Callable[..., IntrospectionVerifier], endpoint: Endpoint, member: str, value: str
) -> None:
    good = active()
    members = [f"{json.dumps(k)}:{json.dumps(v)}" for k, v in good.items() if k != member]
    text = "{" + ",".join([*members, f'"{member}":{value}']) + "}"
    endpoint.answer = lambda: web.Response(text=text, content_type="application/json")
    verifier = make()
    with pytest.raises(AuthenticationFailed) as info:
        await verifier.verify(OPAQUE)
    detail = info.value.detail
    assert "JSON" in detail or "range" in detail or "expired" in detail, detail
    endpoint.answer = lambda: active()
    assert (await verifier.verify("another-token")).subject == "user-1"
