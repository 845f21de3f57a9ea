"""The gateway's response signature inside JWE (sign, then encrypt: a nested JWS-in-JWE).

ECDH-ES is anonymous on the sender's side: anyone who sees a request's ``epk`` (an
intermediary terminating TLS, say) can encrypt a forged response to it. So every
response is first signed by the gateway (compact JWS, ``ES256`` or ``EdDSA``) and bound
to the request it answers (``wg_rkt``: the RFC 7638 thumbprint of the request's
``epk``), then encrypted. The client verifies the signature against the gateway's
published signing key and the binding against its own ephemeral key.

The signing key is configured beside the JWE key (``signing_key_file``: EC P-256 or
Ed25519); without one it is derived from the JWE key by HKDF-SHA256 with a label of its
own, so every replica sharing the JWE key signs with the same key and the key agreement
key is never itself used to sign.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OKPKey

from wardgate.errors import ConfigError

__all__ = [
    "BINDING",
    "SIGNING_ALGORITHMS",
    "ResponseSigner",
    "SignatureRejected",
    "verify_response",
]

#: Protected header member binding a signed response to its request's ``epk``.
BINDING: Final = "wg_rkt"
#: Inner JWS ``typ``: only a Wardgate response verifies as one.
TYP: Final = "wardgate-response+jws"
SIGNING_ALGORITHMS: Final = {"EC": "ES256", "OKP": "EdDSA"}
_INNER_HEADER: Final = frozenset({"alg", "kid", "typ", "cty", BINDING})
_HKDF_INFO: Final = b"wardgate jwe response signing key v1"
# The order of P-256: a derived scalar must lie in [1, n - 1].
_P256_ORDER: Final = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551

SigningKey = ECKey | OKPKey


class SignatureRejected(ValueError):
    """The inner JWS is malformed, unsigned by the gateway, or bound to another request."""


class ResponseSigner:
    """The gateway's response signing key. Its ``repr`` shows the ``kid`` only."""

    __slots__ = ("_key", "alg", "kid")

    def __init__(self, key: SigningKey) -> None:
        """Wrap a private EC P-256 or Ed25519 joserfc key.

        Raises:
            ConfigError: a public key, or another curve.
        """
        if not key.is_private:
            raise ConfigError("JWE signing key: a private key is required")
        if (key.key_type, key.curve_name) not in (("EC", "P-256"), ("OKP", "Ed25519")):
            raise ConfigError("JWE signing key must be EC P-256 or Ed25519")
        self._key = key
        self.alg: str = SIGNING_ALGORITHMS[key.key_type]
        self.kid: str = key.thumbprint()

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ResponseSigner:
        """Load an unencrypted PEM EC P-256 or Ed25519 private key.

        Raises:
            ConfigError: unreadable, not such a key; the detail names the file.
        """
        try:
            pem = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read JWE signing key: {exc.strerror}") from exc
        try:
            private = load_pem_private_key(pem, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise ConfigError(f"{path}: not an unencrypted PEM private key") from exc
        if isinstance(private, ec.EllipticCurvePrivateKey) and isinstance(
            private.curve, ec.SECP256R1
        ):
            return cls(ECKey.import_key(private))
        if isinstance(private, Ed25519PrivateKey):
            return cls(OKPKey.import_key(private))
        raise ConfigError(f"{path}: JWE signing key must be EC P-256 or Ed25519")

    @classmethod
    def derive(cls, agreement_key: ECKey | OKPKey) -> ResponseSigner:
        """A P-256 signing key derived from the JWE key agreement key (HKDF-SHA256).

        Raises:
            ConfigError: ``agreement_key`` is not a private P-256 or X25519 key.
        """
        private = agreement_key.private_key
        if isinstance(private, ec.EllipticCurvePrivateKey):
            secret = private.private_numbers().private_value.to_bytes(32, "big")
        elif isinstance(private, X25519PrivateKey):
            secret = private.private_bytes(
                serialization.Encoding.Raw,
                serialization.PrivateFormat.Raw,
                serialization.NoEncryption(),
            )
        else:
            raise ConfigError("JWE key: cannot derive a signing key from it")
        okm = HKDF(hashes.SHA256(), 48, salt=None, info=_HKDF_INFO).derive(secret)
        scalar = int.from_bytes(okm, "big") % (_P256_ORDER - 1) + 1
        return cls(ECKey.import_key(ec.derive_private_key(scalar, ec.SECP256R1())))

    def public_jwk(self) -> dict[str, Any]:
        """The public signing key as a JWK (``use: sig``, ``alg``, ``kid``)."""
        names = ("kty", "crv", "x") if isinstance(self._key, OKPKey) else ("kty", "crv", "x", "y")
        public = self._key.as_dict(private=False)
        return {n: public[n] for n in names} | {"use": "sig", "alg": self.alg, "kid": self.kid}

    def sign(self, payload: bytes, reply_thumbprint: str) -> str:
        """A compact JWS of ``payload`` bound to the request key ``reply_thumbprint``."""
        header = {
            "alg": self.alg,
            "kid": self.kid,
            "typ": TYP,
            "cty": "application/json",
            BINDING: reply_thumbprint,
        }
        return jws.serialize_compact(header, payload, self._key, registry=_registry(self.alg))

    def __repr__(self) -> str:
        return f"ResponseSigner(alg={self.alg!r}, kid={self.kid!r})"


def import_verification_key(jwk: Mapping[str, Any]) -> tuple[SigningKey, str]:
    """The gateway's public signing key from its JWKS entry, and its algorithm.

    Raises:
        SignatureRejected: not a public EC P-256 / Ed25519 signing key.
    """
    kty, crv = jwk.get("kty"), jwk.get("crv")
    if jwk.get("use", "sig") != "sig" or "d" in jwk:
        raise SignatureRejected("not a public signing key")
    try:
        if kty == "EC" and crv == "P-256":
            key: SigningKey = ECKey.import_key(
                {"kty": "EC", "crv": crv, "x": jwk["x"], "y": jwk["y"]}
            )
        elif kty == "OKP" and crv == "Ed25519":
            key = OKPKey.import_key({"kty": "OKP", "crv": crv, "x": jwk["x"]})
        else:
            raise SignatureRejected("signing key must be EC P-256 or Ed25519")
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise SignatureRejected(f"unusable signing key: {exc}") from exc
    alg = SIGNING_ALGORITHMS[kty]
    if jwk.get("alg", alg) != alg:
        raise SignatureRejected(f"signing key alg must be {alg}")
    return key, alg


def verify_response(compact: bytes, key: SigningKey, alg: str, reply_thumbprint: str) -> bytes:
    """Verify the gateway's signature and the binding; return the JSON-RPC payload.

    Raises:
        SignatureRejected: anything but a response the gateway signed for this request.
    """
    try:
        obj = jws.deserialize_compact(compact, key, registry=_registry(alg))
    except (JoseError, ValueError, TypeError) as exc:
        raise SignatureRejected(f"response signature rejected: {exc}") from exc
    header = obj.protected
    extra = set(header) - _INNER_HEADER
    if extra or header.get("alg") != alg or header.get("typ") != TYP:
        raise SignatureRejected("response signature header refused")
    if header.get("kid") != key.thumbprint():
        raise SignatureRejected("response signed by another key")
    if header.get(BINDING) != reply_thumbprint:
        raise SignatureRejected("response is bound to another request")
    return obj.payload


def _registry(alg: str) -> jws.JWSRegistry:
    # Our own header member (the binding) is checked by verify_response, member by member.
    registry = jws.JWSRegistry(algorithms=[alg], strict_check_header=False)
    registry.max_payload_length = 1 << 62  # tool output may be large; the transport bounds it
    return registry
