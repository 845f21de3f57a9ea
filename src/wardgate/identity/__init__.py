"""Identity at the edge: who is calling, proven by JWT, introspection, DPoP, mTLS or SPIFFE.

The edge builds an :class:`AuthRequest` and calls :meth:`Authenticator.authenticate`;
it gets a :class:`~wardgate.identity.principal.Principal` or :class:`AuthenticationFailed`.
"""

from __future__ import annotations

from wardgate.identity.authenticator import Authenticator, AuthenticatorLike, AuthRequest
from wardgate.identity.dpop import (
    DpopConfig,
    DpopNonceRequired,
    DpopNonces,
    DpopVerifier,
    normalize_htu,
)
from wardgate.identity.introspection import (
    IntrospectedToken,
    IntrospectionConfig,
    IntrospectionVerifier,
    Secret,
)
from wardgate.identity.issuer import DEFAULT_ALGORITHMS, IssuerConfig, canonical_resource
from wardgate.identity.jwks import JwksCache
from wardgate.identity.jwt import JwtVerifier, VerifiedToken
from wardgate.identity.mtls import (
    PeerCertificate,
    SpiffeId,
    SpiffeVerifier,
    certificate_thumbprint,
    parse_spiffe_id,
    spiffe_id_from_certificate,
)
from wardgate.net.fetch import FetchPolicy

__all__ = [
    "DEFAULT_ALGORITHMS",
    "AuthRequest",
    "Authenticator",
    "AuthenticatorLike",
    "DpopConfig",
    "DpopNonceRequired",
    "DpopNonces",
    "DpopVerifier",
    "FetchPolicy",
    "IntrospectedToken",
    "IntrospectionConfig",
    "IntrospectionVerifier",
    "IssuerConfig",
    "JwksCache",
    "JwtVerifier",
    "PeerCertificate",
    "Secret",
    "SpiffeId",
    "SpiffeVerifier",
    "VerifiedToken",
    "canonical_resource",
    "certificate_thumbprint",
    "normalize_htu",
    "parse_spiffe_id",
    "spiffe_id_from_certificate",
]
