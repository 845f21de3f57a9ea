"""Optional application-layer encryption of JSON-RPC bodies (JWE, RFC 7516 / RFC 7518).

Off by default. When a deployment turns it on, a client POSTs ``Content-Type:
application/jose`` with a compact JWE of the JSON-RPC message, encrypted with ``ECDH-ES``
(direct key agreement) and ``A256GCM`` to the gateway's long-lived key. The gateway answers
with a nested JWS-in-JWE: the response is signed by the gateway's signing key and bound to
the request (``jwe_signing``), then encrypted the same way to the *client's* ephemeral key,
the ``epk`` of the request, so the gateway keeps no per-client state and an intermediary
that saw the ``epk`` cannot forge a response. See ``docs/jwe.md``.

Everything the gateway refuses raises one error::

    ProtocolError                      wardgate.protocol        -32600  400
    └── JweError                       wardgate.jwe             -32600  400

Key loading raises ``ConfigError`` naming the file. The JOSE work is joserfc's; the client
helper (``jwe_client.ClientJwe``) does its own key agreement, and the tests check both
sides agree.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, EllipticCurvePrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from joserfc import jwe
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OKPKey

from wardgate.edge.jwe_signing import (
    ResponseSigner,
)
from wardgate.errors import ConfigError, ProtocolError

__all__ = [
    "ALG",
    "CONTENT_TYPE",
    "CTY",
    "DEFAULT_MAX_BYTES",
    "ENC",
    "NESTED_CTY",
    "Curve",
    "CurveKey",
    "DecryptedRequest",
    "GatewayJweKey",
    "JweError",
    "ReplyKey",
    "ResponseSigner",
    "decrypt_request",
    "encrypt_response",
]

#: Media type of a JWE-encrypted body, request or response.
CONTENT_TYPE: Final = "application/jose"
ALG: Final = "ECDH-ES"
ENC: Final = "A256GCM"
#: ``cty`` of every request: the plaintext is UTF-8 JSON-RPC.
CTY: Final = "application/json"
#: ``cty`` of every response: the plaintext is the gateway's compact JWS (RFC 7515 §9.2).
NESTED_CTY: Final = "JOSE"
#: Same as ``[server] max_body_bytes``' default.
DEFAULT_MAX_BYTES: Final = 4 * 1024 * 1024

Curve = Literal["P-256", "X25519"]
#: A joserfc key on one of the supported curves.
CurveKey = ECKey | OKPKey

_KTY: Final[dict[str, str]] = {"P-256": "EC", "X25519": "OKP"}
# Header members we accept. Anything else (``zip``, ``crit``, ``jku``, ``x5u``…) is refused.
_REQUEST_HEADER: Final = frozenset({"alg", "enc", "cty", "kid", "epk", "apu", "apv"})
_RESPONSE_HEADER: Final = frozenset({"alg", "enc", "cty", "epk", "apu", "apv"})
_B64URL: Final = re.compile(r"[A-Za-z0-9_-]*")
_IV_BYTES: Final = 12
_TAG_BYTES: Final = 16


class JweError(ProtocolError):
    """An encrypted body was malformed, used a refused algorithm, or failed to decrypt."""

    code = "wardgate.jwe"
    http_status = 400
    public_message = "Invalid encrypted message"


class GatewayJweKey:
    """The gateway's long-lived private key agreement key (P-256 or X25519), and the
    key that signs its responses (configured, or derived from this one).

    Its ``repr`` shows the ``kid`` only, never key material.
    """

    __slots__ = ("_key", "curve", "kid", "signer")

    def __init__(self, key: CurveKey, signer: ResponseSigner | None = None) -> None:
        """Wrap a private joserfc key; ``signer`` defaults to one derived from it.

        Raises:
            ConfigError: the key is public only or on an unsupported curve.
        """
        if not key.is_private:
            raise ConfigError("JWE gateway key: a private key is required")
        curve = key.curve_name
        if _KTY.get(curve) != key.key_type:
            raise ConfigError(f"JWE gateway key: unsupported curve {curve!r} (P-256 or X25519)")
        self._key = key
        self.curve: str = curve
        #: RFC 7638 thumbprint; clients put it in the request's ``kid``.
        self.kid: str = key.thumbprint()
        #: Signs every response before it is encrypted.
        self.signer: ResponseSigner = signer or ResponseSigner.derive(key)

    @classmethod
    def generate(cls, curve: Curve = "P-256") -> GatewayJweKey:
        """Generate a fresh key pair on ``curve``."""
        return cls(_generate(curve))

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        signing_key_file: str | os.PathLike[str] | None = None,
    ) -> GatewayJweKey:
        """Load an unencrypted PEM (PKCS#8 or SEC1) private key from ``path``, and the
        response signing key (EC P-256 or Ed25519) from ``signing_key_file`` if given.

        Raises:
            ConfigError: a file is unreadable, not a PEM private key, encrypted,
                or not a key of the right kind. The detail names the file.
        """
        signer = ResponseSigner.load(signing_key_file) if signing_key_file else None
        try:
            pem = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read JWE key: {exc.strerror}") from exc
        try:
            private = load_pem_private_key(pem, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise ConfigError(f"{path}: not an unencrypted PEM private key") from exc
        if isinstance(private, EllipticCurvePrivateKey) and isinstance(private.curve, SECP256R1):
            return cls(ECKey.import_key(private), signer)
        if isinstance(private, X25519PrivateKey):
            return cls(OKPKey.import_key(private), signer)
        raise ConfigError(f"{path}: JWE key must be EC P-256 or X25519")

    def public_jwk(self) -> dict[str, Any]:
        """The public encryption key as a JWK with ``use``, ``alg`` and ``kid``."""
        return _public_members(self._key) | {"use": "enc", "alg": ALG, "kid": self.kid}

    def public_jwks(self) -> dict[str, Any]:
        """The encryption and the signing key as a JWK Set, ready to publish."""
        return {"keys": [self.public_jwk(), self.signer.public_jwk()]}

    def __repr__(self) -> str:
        return f"GatewayJweKey(curve={self.curve!r}, kid={self.kid!r})"


@dataclass(frozen=True)
class ReplyKey:
    """The client's ephemeral public key from a request's ``epk``; responses go to it,
    signed by ``signer`` and bound to this key."""

    key: CurveKey = field(repr=False)
    signer: ResponseSigner = field(repr=False)


@dataclass(frozen=True)
class DecryptedRequest:
    """A decrypted request body and the key its response must be encrypted to."""

    plaintext: bytes = field(repr=False)
    reply_key: ReplyKey


def decrypt_request(
    body: bytes, key: GatewayJweKey, *, max_bytes: int = DEFAULT_MAX_BYTES
) -> DecryptedRequest:
    """Decrypt a compact JWE request body addressed to ``key``.

    Only ``alg`` ECDH-ES, ``enc`` A256GCM, ``cty`` application/json, ``kid`` equal to the
    key's thumbprint and an ``epk`` on the key's curve are accepted.

    Raises:
        JweError: the body is too large, malformed, uses anything else, or fails to decrypt.
    """
    if len(body) > max_bytes:
        raise JweError(f"JWE body of {len(body)} bytes exceeds the {max_bytes}-byte limit")
    with _jose_errors():
        header = _parse_compact(body)
        _check_header(header, _REQUEST_HEADER, key.curve)
        if header.get("kid") != key.kid:
            raise JweError("JWE kid does not name the gateway key")
        epk = _import_epk(header["epk"], key.curve)
        result = jwe.decrypt_compact(body, key._key, registry=_registry(max_bytes))
    if result.plaintext is None:  # joserfc always sets it on success
        raise JweError("JWE decrypted to nothing")
    return DecryptedRequest(plaintext=result.plaintext, reply_key=ReplyKey(epk, key.signer))


def encrypt_response(plaintext: bytes, reply_key: ReplyKey) -> str:
    """Sign a response body (or one SSE event's data) with the gateway's key, bound to
    the request's ephemeral key, then encrypt that JWS to the same key.

    ECDH-ES makes a fresh gateway-side ephemeral key for every call; the signature is
    what tells the client the gateway, not whoever saw the request, wrote it.
    """
    signed = reply_key.signer.sign(plaintext, reply_key.key.thumbprint())
    protected = {"alg": ALG, "enc": ENC, "cty": NESTED_CTY}
    return jwe.encrypt_compact(
        protected, signed.encode("ascii"), reply_key.key, registry=_registry(None)
    )


@contextmanager
def _jose_errors() -> Iterator[None]:
    """The one boundary where joserfc, cryptography and parsing errors become JweError."""
    try:
        yield
    except (JoseError, ValueError, TypeError, KeyError, InvalidTag) as exc:
        raise JweError(f"JWE refused: {type(exc).__name__}: {exc}") from exc


def _parse_compact(body: bytes) -> dict[str, Any]:
    """Split a compact JWE, check its shape, and return its protected header."""
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError as exc:
        raise JweError("JWE is not ASCII") from exc
    parts = text.split(".")
    if len(parts) != 5 or not all(_B64URL.fullmatch(part) for part in parts):
        raise JweError("JWE is not five base64url segments")
    header_b64, encrypted_key, iv, _ciphertext, tag = parts
    if encrypted_key:
        raise JweError("JWE has an encrypted key; ECDH-ES direct agreement has none")
    if len(_unb64(iv)) != _IV_BYTES or len(_unb64(tag)) != _TAG_BYTES:
        raise JweError("JWE IV or tag has the wrong length for A256GCM")
    header = json.loads(_unb64(header_b64), object_pairs_hook=_no_duplicates)
    if not isinstance(header, dict):
        raise JweError("JWE protected header is not a JSON object")
    return header


def _check_header(
    header: Mapping[str, Any], allowed: frozenset[str], curve: str, *, cty: str = CTY
) -> None:
    if "zip" in header:
        raise JweError("JWE compression (zip) is refused")
    extra = sorted(set(header) - allowed)
    if extra:
        raise JweError(f"JWE header has refused members {extra}")
    if header.get("alg") != ALG or header.get("enc") != ENC:
        raise JweError(f"JWE alg/enc must be {ALG}/{ENC}")
    if header.get("cty") != cty:
        raise JweError(f"JWE cty must be {cty}")
    epk = header.get("epk")
    if not isinstance(epk, dict) or epk.get("kty") != _KTY[curve] or epk.get("crv") != curve:
        raise JweError(f"JWE epk must be a {curve} public key")


def _import_epk(jwk: Mapping[str, Any], curve: str) -> CurveKey:
    """Import the public members only; cryptography refuses points not on the curve."""
    if jwk.get("kty") != _KTY[curve] or jwk.get("crv") != curve:
        raise JweError(f"key must be on {curve}")
    if curve == "X25519":
        if len(_unb64(str(jwk["x"]))) != 32:
            raise JweError("X25519 public key must be 32 bytes")
        return OKPKey.import_key({"kty": "OKP", "crv": curve, "x": jwk["x"]})
    return ECKey.import_key({"kty": "EC", "crv": curve, "x": jwk["x"], "y": jwk["y"]})


def _generate(curve: str) -> CurveKey:
    if curve == "X25519":
        return OKPKey.generate_key("X25519")
    if curve == "P-256":
        return ECKey.generate_key("P-256")
    raise ConfigError(f"unsupported JWE curve {curve!r} (P-256 or X25519)")


def _public_members(key: CurveKey) -> dict[str, Any]:
    """The RFC 7638 required members only: no ``kid`` or other extras."""
    names = ("kty", "crv", "x") if isinstance(key, OKPKey) else ("kty", "crv", "x", "y")
    public = key.as_dict(private=False)
    return {name: public[name] for name in names}


def _registry(max_bytes: int | None) -> jwe.JWERegistry:
    registry = jwe.JWERegistry(algorithms=[ALG, ENC])
    if max_bytes is not None:
        registry.max_ciphertext_length = max_bytes
    else:
        # Responses (tool output) may be large; the transport bounds them.
        registry.max_ciphertext_length = 1 << 62
    return registry


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [name for name, _ in pairs]
    if len(keys) != len(set(keys)):
        raise JweError("JWE header repeats a member")
    return dict(pairs)


def _unb64(segment: str) -> bytes:
    if len(segment) % 4 == 1:
        raise JweError("JWE segment is not base64url")
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
