"""Optional application-layer encryption of JSON-RPC bodies (JWE, RFC 7516 / RFC 7518).

Off by default. When a deployment turns it on, a client POSTs ``Content-Type:
application/jose`` with a compact JWE of the JSON-RPC message, encrypted with ``ECDH-ES``
(direct key agreement) and ``A256GCM`` to the gateway's long-lived key. The gateway answers
with a compact JWE encrypted the same way to the *client's* ephemeral key, the ``epk`` of the
request, so the gateway keeps no per-client state. See ``docs/jwe.md``.

Everything the gateway refuses raises one error::

    ProtocolError                      wardgate.protocol        -32600  400
    └── JweError                       wardgate.jwe             -32600  400

Key loading raises ``ConfigError`` naming the file. The JOSE work is joserfc's; the one
exception is :meth:`ClientJwe.encrypt_request`, which must keep its ephemeral private key,
and joserfc's public API does not hand that key back. It therefore does the RFC 7518 §4.6
key agreement itself with cryptography's ECDH/X25519, ``ConcatKDFHash`` and ``AESGCM``;
the gateway side decrypts with joserfc, and the tests check both sides agree.
"""

from __future__ import annotations

import base64
import json
import os
import re
import struct
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, EllipticCurvePrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from joserfc import jwe
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OKPKey

from wardgate.errors import ConfigError, ProtocolError

__all__ = [
    "ALG",
    "CONTENT_TYPE",
    "CTY",
    "DEFAULT_MAX_BYTES",
    "ENC",
    "ClientJwe",
    "Curve",
    "CurveKey",
    "DecryptedRequest",
    "GatewayJweKey",
    "JweError",
    "ReplyKey",
    "decrypt_request",
    "encrypt_response",
]

#: Media type of a JWE-encrypted body, request or response.
CONTENT_TYPE: Final = "application/jose"
ALG: Final = "ECDH-ES"
ENC: Final = "A256GCM"
#: ``cty`` of every message: the plaintext is UTF-8 JSON-RPC.
CTY: Final = "application/json"
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
    """The gateway's long-lived private key agreement key (P-256 or X25519).

    Its ``repr`` shows the ``kid`` only, never key material.
    """

    __slots__ = ("_key", "curve", "kid")

    def __init__(self, key: CurveKey) -> None:
        """Wrap a private joserfc key.

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

    @classmethod
    def generate(cls, curve: Curve = "P-256") -> GatewayJweKey:
        """Generate a fresh key pair on ``curve``."""
        return cls(_generate(curve))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> GatewayJweKey:
        """Load an unencrypted PEM (PKCS#8 or SEC1) private key from ``path``.

        Raises:
            ConfigError: the file is unreadable, not a PEM private key, encrypted,
                or not a P-256 / X25519 key. The detail names the file.
        """
        try:
            pem = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read JWE key: {exc.strerror}") from exc
        try:
            private = load_pem_private_key(pem, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise ConfigError(f"{path}: not an unencrypted PEM private key") from exc
        if isinstance(private, EllipticCurvePrivateKey) and isinstance(private.curve, SECP256R1):
            return cls(ECKey.import_key(private))
        if isinstance(private, X25519PrivateKey):
            return cls(OKPKey.import_key(private))
        raise ConfigError(f"{path}: JWE key must be EC P-256 or X25519")

    def public_jwk(self) -> dict[str, Any]:
        """The public key as a JWK with ``use``, ``alg`` and ``kid``."""
        return _public_members(self._key) | {"use": "enc", "alg": ALG, "kid": self.kid}

    def public_jwks(self) -> dict[str, Any]:
        """The public key as a JWK Set, ready to publish."""
        return {"keys": [self.public_jwk()]}

    def __repr__(self) -> str:
        return f"GatewayJweKey(curve={self.curve!r}, kid={self.kid!r})"


@dataclass(frozen=True)
class ReplyKey:
    """The client's ephemeral public key from a request's ``epk``; responses go to it."""

    key: CurveKey = field(repr=False)


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
    return DecryptedRequest(plaintext=result.plaintext, reply_key=ReplyKey(epk))


def encrypt_response(plaintext: bytes, reply_key: ReplyKey) -> str:
    """Encrypt a response body (or one SSE event's data) to the requester's ephemeral key.

    ECDH-ES makes a fresh gateway-side ephemeral key for every call.
    """
    protected = {"alg": ALG, "enc": ENC, "cty": CTY}
    return jwe.encrypt_compact(protected, plaintext, reply_key.key, registry=_registry(None))


class ClientJwe:
    """The client side, for tests and for users: encrypt requests, decrypt responses."""

    __slots__ = ("_gateway", "curve", "kid")

    def __init__(self, gateway_public_jwk: Mapping[str, Any]) -> None:
        """Use the gateway key ``gateway_public_jwk``, one entry of its published JWKS.

        Raises:
            JweError: the JWK is not a P-256 / X25519 encryption key for ECDH-ES.
        """
        jwk = dict(gateway_public_jwk)
        if jwk.get("use", "enc") != "enc" or jwk.get("alg", ALG) != ALG:
            raise JweError("gateway JWK is not an ECDH-ES encryption key")
        curve = jwk.get("crv")
        if not isinstance(curve, str) or _KTY.get(curve) != jwk.get("kty"):
            raise JweError("gateway JWK must be EC P-256 or OKP X25519")
        with _jose_errors():
            self._gateway = _import_epk(jwk, curve)
        self.curve: str = curve
        self.kid: str = self._gateway.thumbprint()

    def encrypt_request(self, plaintext: bytes) -> tuple[str, CurveKey]:
        """Encrypt ``plaintext`` to the gateway.

        Returns the compact JWE and the ephemeral private key; keep the key until the
        response has been decrypted, then drop it.
        """
        ephemeral = _generate(self.curve)
        epk = _public_members(ephemeral)
        header = {"alg": ALG, "enc": ENC, "cty": CTY, "kid": self.kid, "epk": epk}
        cek = _concat_kdf(_agree(ephemeral, self._gateway), ENC, 256)
        protected = _b64(json.dumps(header, separators=(",", ":")).encode())
        iv = os.urandom(_IV_BYTES)
        sealed = AESGCM(cek).encrypt(iv, plaintext, protected.encode("ascii"))
        ciphertext, tag = sealed[:-_TAG_BYTES], sealed[-_TAG_BYTES:]
        # Direct key agreement: the encrypted-key segment is empty.
        compact = ".".join([protected, "", _b64(iv), _b64(ciphertext), _b64(tag)])
        return compact, ephemeral

    def decrypt_response(
        self,
        compact: str | bytes,
        ephemeral_private_key: CurveKey,
        *,
        max_bytes: int | None = None,
    ) -> bytes:
        """Decrypt a gateway response with the ephemeral key of the request it answers.

        Raises:
            JweError: malformed, refused header, or not encrypted to this ephemeral key.
        """
        body = compact.encode("ascii", "replace") if isinstance(compact, str) else compact
        if max_bytes is not None and len(body) > max_bytes:
            raise JweError(f"JWE body of {len(body)} bytes exceeds the {max_bytes}-byte limit")
        with _jose_errors():
            _check_header(_parse_compact(body), _RESPONSE_HEADER, ephemeral_private_key.curve_name)
            result = jwe.decrypt_compact(body, ephemeral_private_key, registry=_registry(None))
        if result.plaintext is None:  # joserfc always sets it on success
            raise JweError("JWE decrypted to nothing")
        return result.plaintext


def _concat_kdf(z: bytes, enc: str, key_bits: int, apu: bytes = b"", apv: bytes = b"") -> bytes:
    """RFC 7518 §4.6.2 key derivation for ECDH-ES direct key agreement."""
    other_info = b"".join(
        [_length_prefixed(enc.encode()), _length_prefixed(apu), _length_prefixed(apv)]
    ) + struct.pack(">I", key_bits)
    return ConcatKDFHash(hashes.SHA256(), key_bits // 8, other_info).derive(z)


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


def _check_header(header: Mapping[str, Any], allowed: frozenset[str], curve: str) -> None:
    if "zip" in header:
        raise JweError("JWE compression (zip) is refused")
    extra = sorted(set(header) - allowed)
    if extra:
        raise JweError(f"JWE header has refused members {extra}")
    if header.get("alg") != ALG or header.get("enc") != ENC:
        raise JweError(f"JWE alg/enc must be {ALG}/{ENC}")
    if header.get("cty") != CTY:
        raise JweError(f"JWE cty must be {CTY}")
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


def _agree(private: CurveKey, public: CurveKey) -> bytes:
    if isinstance(private, ECKey) and isinstance(public, ECKey):
        return private.exchange_derive_key(public)
    if isinstance(private, OKPKey) and isinstance(public, OKPKey):
        return private.exchange_derive_key(public)
    raise JweError("keys are of different types")


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


def _length_prefixed(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(segment: str) -> bytes:
    if len(segment) % 4 == 1:
        raise JweError("JWE segment is not base64url")
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
