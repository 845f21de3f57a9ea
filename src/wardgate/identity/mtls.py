"""Workload identity from client certificates: SPIFFE X.509-SVIDs and RFC 8705 binding.

The TLS layer has usually verified the peer already; :class:`SpiffeVerifier` checks
the chain again against the bundle of the *claimed* trust domain, so a certificate
from one domain's CA cannot speak for another domain.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from wardgate.errors import AuthenticationFailed, ConfigError
from wardgate.state.store import Clock

__all__ = [
    "PeerCertificate",
    "SpiffeId",
    "SpiffeVerifier",
    "certificate_thumbprint",
    "load_certificate",
    "parse_spiffe_id",
    "spiffe_id_from_certificate",
]

PeerCertificate = bytes | x509.Certificate
"""A peer certificate as DER bytes or a parsed ``cryptography`` object."""

_TRUST_DOMAIN = re.compile(r"[a-z0-9._-]{1,255}")
_SEGMENT = re.compile(r"[A-Za-z0-9._-]+")
MAX_SPIFFE_ID_LENGTH = 2048


def _fail(reason: str) -> AuthenticationFailed:
    return AuthenticationFailed(f"mtls: {reason}")


@dataclass(frozen=True, slots=True)
class SpiffeId:
    """A SPIFFE ID, ``spiffe://<trust_domain><path>``."""

    trust_domain: str
    path: str

    def __str__(self) -> str:
        return f"spiffe://{self.trust_domain}{self.path}"


def parse_spiffe_id(value: str) -> SpiffeId:
    """Parse and validate a SPIFFE ID per the SPIFFE-ID specification §2.

    Raises:
        AuthenticationFailed: not a valid SPIFFE ID (scheme, trust domain charset,
            port / userinfo / query / fragment, empty, ``.`` or ``..`` path segments).
    """
    if len(value) > MAX_SPIFFE_ID_LENGTH:
        raise _fail("SPIFFE ID too long")
    prefix = "spiffe://"
    if not value.startswith(prefix):
        raise _fail(f"not a spiffe:// URI: {value!r}")
    rest = value[len(prefix) :]
    if "?" in rest or "#" in rest:
        raise _fail("SPIFFE ID has a query or fragment")
    domain, slash, path = rest.partition("/")
    if not _TRUST_DOMAIN.fullmatch(domain):
        raise _fail(f"invalid trust domain {domain!r}")
    path = slash + path
    if path:
        segments = path[1:].split("/")
        for seg in segments:
            if not seg or seg in (".", "..") or not _SEGMENT.fullmatch(seg):
                raise _fail(f"invalid SPIFFE ID path segment {seg!r}")
    return SpiffeId(trust_domain=domain, path=path)


def load_certificate(cert: PeerCertificate) -> x509.Certificate:
    """Parse DER bytes (or pass through a parsed certificate).

    Raises:
        AuthenticationFailed: the bytes are not a DER certificate.
    """
    if isinstance(cert, x509.Certificate):
        return cert
    try:
        return x509.load_der_x509_certificate(cert)
    except ValueError as exc:
        raise _fail("peer certificate is not valid DER") from exc


def certificate_thumbprint(cert: PeerCertificate) -> str:
    """RFC 8705 ``x5t#S256``: base64url SHA-256 of the certificate's DER.

    Raises:
        AuthenticationFailed: the bytes are not a DER certificate.
    """
    der = load_certificate(cert).public_bytes(Encoding.DER)
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode("ascii")


def spiffe_id_from_certificate(cert: PeerCertificate) -> SpiffeId:
    """The SPIFFE ID of an X.509-SVID: exactly one URI SAN, and it is a SPIFFE ID.

    Raises:
        AuthenticationFailed: no SAN, zero or several URI SANs, or an invalid ID.
    """
    parsed = load_certificate(cert)
    try:
        san = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound as exc:
        raise _fail("certificate has no subjectAltName") from exc
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    if len(uris) != 1:
        raise _fail(f"certificate has {len(uris)} URI SANs, an SVID has exactly one")
    return parse_spiffe_id(uris[0])


class SpiffeVerifier:
    """Verifies X.509-SVIDs against per-trust-domain CA bundles."""

    def __init__(
        self,
        trust_bundles: Mapping[str, Sequence[x509.Certificate]],
        *,
        clock: Clock = time.time,
    ) -> None:
        """``trust_bundles`` maps each allowed trust domain to its CA certificates.

        Raises:
            ConfigError: an empty mapping, an invalid trust domain or an empty bundle.
        """
        if not trust_bundles:
            raise ConfigError("identity.spiffe.trust_bundles must name at least one domain")
        self._stores: dict[str, Store] = {}
        for domain, cas in trust_bundles.items():
            if not _TRUST_DOMAIN.fullmatch(domain):
                raise ConfigError(f"identity.spiffe: invalid trust domain {domain!r}")
            if not cas:
                raise ConfigError(f"identity.spiffe: empty bundle for {domain!r}")
            self._stores[domain] = Store(list(cas))
        self._clock = clock

    @property
    def trust_domains(self) -> frozenset[str]:
        return frozenset(self._stores)

    def verify(
        self, cert: PeerCertificate, intermediates: Iterable[PeerCertificate] = ()
    ) -> SpiffeId:
        """Verify the chain for the trust domain the certificate claims.

        Raises:
            AuthenticationFailed: no valid SPIFFE ID, a trust domain not allowed, or a
                chain that does not verify (other CA, expired, not for client auth).
        """
        leaf = load_certificate(cert)
        spiffe_id = spiffe_id_from_certificate(leaf)
        store = self._stores.get(spiffe_id.trust_domain)
        if store is None:
            raise _fail(f"trust domain {spiffe_id.trust_domain!r} not allowed")
        now = datetime.datetime.fromtimestamp(self._clock(), tz=datetime.UTC)
        verifier = PolicyBuilder().store(store).time(now).build_client_verifier()
        try:
            verifier.verify(leaf, [load_certificate(c) for c in intermediates])
        except VerificationError as exc:
            raise _fail(f"chain for {spiffe_id} does not verify: {exc}") from exc
        return spiffe_id
