"""The one entry point the edge calls: credentials in, a :class:`Principal` out.

Accepted credentials, in order:

* ``Authorization: DPoP <jwt>`` plus a ``DPoP`` proof  -> method ``dpop``
* ``Authorization: Bearer <jwt>``; with ``cnf.x5t#S256`` the TLS client
  certificate must match (RFC 8705)                   -> method ``mtls`` (else ``jwt``)
* ``Authorization: Bearer|DPoP <opaque>`` when introspection is configured: the
  authorization server's answer (RFC 7662) stands in for the JWT's claims and the
  bindings are checked the same way               -> ``dpop``, ``mtls`` or ``introspection``
* no ``Authorization`` but a SPIFFE X.509-SVID        -> method ``spiffe``

A token shaped as a JWS (three base64url segments) only ever goes to the JWT verifier,
any other token only to introspection. A DPoP-bound token presented as a plain bearer
token is refused (RFC 9449 §7.1).
Every failure is :class:`AuthenticationFailed`; its ``detail`` is for the log only.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol

from wardgate.errors import AuthenticationFailed, ConfigError
from wardgate.identity.dpop import DpopVerifier
from wardgate.identity.introspection import IntrospectedToken, IntrospectionVerifier
from wardgate.identity.jwt import JwtVerifier, VerifiedToken
from wardgate.identity.mtls import SpiffeVerifier, certificate_thumbprint
from wardgate.identity.principal import AuthMethod, Principal

__all__ = ["AuthRequest", "Authenticator", "AuthenticatorLike"]

log = logging.getLogger(__name__)

_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_JWS_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """What the edge knows about one HTTP request, for authentication.

    Attributes:
        method: the HTTP method, as sent (``POST``).
        url: the full external request URL the client used (scheme, host, path).
        authorization: the ``Authorization`` header value, or None.
        dpop: the ``DPoP`` header value, or None (several headers joined by ``,``).
        peer_certificate: the TLS client certificate in DER, already verified by
            the TLS layer, or None.
        alternate_urls: other spellings of ``url`` a DPoP ``htu`` may name (the
            loopback names of a loopback listener); never taken from the request.
    """

    method: str
    url: str
    authorization: str | None = None
    dpop: str | None = None
    peer_certificate: bytes | None = None
    alternate_urls: tuple[str, ...] = ()


class AuthenticatorLike(Protocol):
    """The seam the edge depends on."""

    async def authenticate(self, request: AuthRequest) -> Principal:
        """Prove who is calling.

        Raises:
            AuthenticationFailed: the request does not prove an acceptable identity.
        """
        ...


class Authenticator:
    """Combines the JWT, introspection, DPoP and SPIFFE checks into one decision."""

    def __init__(
        self,
        *,
        jwt: JwtVerifier | None = None,
        dpop: DpopVerifier | None = None,
        spiffe: SpiffeVerifier | None = None,
        require_bound_tokens: bool = False,
        spiffe_tenants: Mapping[str, str] | None = None,
        introspection: IntrospectionVerifier | None = None,
    ) -> None:
        """Wire the verifiers; the caller owns their lifecycle.

        ``require_bound_tokens`` refuses plain bearer tokens (only DPoP- or
        certificate-bound ones pass). ``spiffe_tenants`` maps trust domains to tenants.

        Raises:
            ConfigError: no verifier at all, or bound tokens required without any
                way to check a binding.
        """
        if jwt is None and spiffe is None and introspection is None:
            raise ConfigError(
                "identity: configure issuers, introspection and/or SPIFFE trust bundles"
            )
        if require_bound_tokens and (jwt or introspection) is not None and dpop is None:
            log.info("bound tokens required without DPoP: only certificate-bound tokens pass")
        self._jwt = jwt
        self._introspection = introspection
        self._dpop = dpop
        self._spiffe = spiffe
        self._require_bound = require_bound_tokens
        self._spiffe_tenants = dict(spiffe_tenants or {})

    async def authenticate(self, request: AuthRequest) -> Principal:
        """Authenticate one request.

        Raises:
            AuthenticationFailed: for every failure, including an unreachable state
                store or key server (fail closed); ``detail`` says why.
        """
        try:
            if request.authorization is not None:
                return await self._from_token(request, request.authorization)
            if request.dpop is not None:
                raise AuthenticationFailed("dpop: proof without an access token")
            if request.peer_certificate is not None and self._spiffe is not None:
                return self._from_svid(request.peer_certificate)
            raise AuthenticationFailed("no credentials")
        except AuthenticationFailed:
            raise
        except Exception as exc:  # fail closed on anything unexpected
            raise AuthenticationFailed(
                f"authentication error: {type(exc).__name__}: {getattr(exc, 'detail', exc)}"
            ) from exc

    async def _from_token(self, request: AuthRequest, authorization: str) -> Principal:
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        scheme = scheme.lower()
        if scheme not in ("bearer", "dpop"):
            raise AuthenticationFailed(f"unsupported authorization scheme {scheme[:20]!r}")
        if not _TOKEN68.fullmatch(token):
            raise AuthenticationFailed("malformed access token")
        verified: VerifiedToken | IntrospectedToken
        method: AuthMethod
        if self._introspection is not None and not _JWS_SHAPE.fullmatch(token):
            verified = await self._introspection.verify(token)
            method = "introspection"
        elif self._jwt is not None:
            verified = await self._jwt.verify(token)
            method = "jwt"
        else:
            raise AuthenticationFailed("access tokens are not accepted here")
        method = await self._check_binding(request, token, scheme, verified.cnf, method)
        return self._principal(verified, method)

    async def _check_binding(
        self,
        request: AuthRequest,
        token: str,
        scheme: str,
        cnf: Mapping[str, str],
        unbound: AuthMethod,
    ) -> AuthMethod:
        """The one place DPoP and certificate bindings are enforced, for every token kind."""
        method = unbound
        jkt = cnf.get("jkt")
        if scheme == "dpop":
            if jkt is None:
                raise AuthenticationFailed("dpop: token is not DPoP-bound (no cnf.jkt)")
            await self._check_dpop(request, token, jkt)
            method = "dpop"
        elif jkt is not None:
            raise AuthenticationFailed("dpop: DPoP-bound token presented as a bearer token")

        x5t = cnf.get("x5t#S256")
        if x5t is not None:
            if request.peer_certificate is None:
                raise AuthenticationFailed("mtls: certificate-bound token without a client cert")
            if not hmac.compare_digest(certificate_thumbprint(request.peer_certificate), x5t):
                raise AuthenticationFailed("mtls: client certificate does not match cnf.x5t#S256")
            if method == unbound:
                method = "mtls"
        if method == unbound and self._require_bound:
            raise AuthenticationFailed(f"{unbound}: unbound bearer tokens are not accepted")
        return method

    async def _check_dpop(self, request: AuthRequest, token: str, jkt: str) -> None:
        if self._dpop is None:
            raise AuthenticationFailed("dpop: DPoP is not enabled")
        proof = request.dpop
        if proof is None or not proof.strip():
            raise AuthenticationFailed("dpop: missing DPoP proof header")
        if "," in proof:
            raise AuthenticationFailed("dpop: more than one DPoP header")
        proof_jkt = await self._dpop.verify(
            proof.strip(),
            method=request.method,
            url=(request.url, *request.alternate_urls),
            access_token=token,
        )
        if not hmac.compare_digest(proof_jkt, jkt):
            raise AuthenticationFailed("dpop: proof key does not match cnf.jkt")

    @staticmethod
    def _principal(verified: VerifiedToken | IntrospectedToken, method: AuthMethod) -> Principal:
        issuer = verified.issuer
        return Principal(
            subject=verified.subject,
            method=method,
            tenant=verified.tenant,
            client_id=verified.client_id,
            issuer=issuer if isinstance(issuer, str) else issuer.issuer,
            scopes=verified.scopes,
            cnf=verified.cnf,
            claims=verified.claims,
            expires_at=verified.expires_at,
        )

    def _from_svid(self, cert: bytes) -> Principal:
        assert self._spiffe is not None
        spiffe_id = self._spiffe.verify(cert)
        return Principal(
            subject=str(spiffe_id),
            method="spiffe",
            tenant=self._spiffe_tenants.get(spiffe_id.trust_domain),
            client_id=str(spiffe_id),
            issuer=f"spiffe://{spiffe_id.trust_domain}",
            cnf=MappingProxyType({"x5t#S256": certificate_thumbprint(cert)}),
        )
