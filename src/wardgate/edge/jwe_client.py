"""The client side of JWE bodies: encrypt requests to the gateway, decrypt its
responses and verify the gateway's signature on them (``docs/jwe.md``).

For tests and for users. Encryption does the RFC 7518 §4.6 key agreement itself
(cryptography's ECDH/X25519, ``ConcatKDFHash`` and ``AESGCM``): the client must keep its
ephemeral private key to read the answer, and joserfc's public API does not hand it back.
Errors are :class:`~wardgate.edge.jwe.JweError`.
"""

from __future__ import annotations

import base64
import json
import os
import struct
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash
from joserfc import jwe
from joserfc.jwk import ECKey, OKPKey

from wardgate.edge.jwe import (
    _IV_BYTES,
    _KTY,
    _RESPONSE_HEADER,
    _TAG_BYTES,
    ALG,
    CTY,
    ENC,
    NESTED_CTY,
    CurveKey,
    JweError,
    _check_header,
    _generate,
    _import_epk,
    _jose_errors,
    _parse_compact,
    _public_members,
    _registry,
)
from wardgate.edge.jwe_signing import (
    SignatureRejected,
    SigningKey,
    import_verification_key,
    verify_response,
)

__all__ = ["ClientJwe"]


class ClientJwe:
    """The client side, for tests and for users: encrypt requests, decrypt responses
    and verify the gateway's signature on them."""

    __slots__ = ("_gateway", "_signing", "curve", "kid")

    def __init__(
        self,
        gateway_public_jwk: Mapping[str, Any],
        signing_jwk: Mapping[str, Any] | None = None,
    ) -> None:
        """Use the gateway's published keys.

        ``gateway_public_jwk`` is either the whole JWKS published at
        ``/.well-known/wardgate-jwe-keys`` (the encryption and the signing key are
        picked from it by ``use``) or its encryption entry, with ``signing_jwk`` its
        signing entry. Without a signing key responses cannot be verified, and
        :meth:`decrypt_response` refuses them.

        Raises:
            JweError: a key is not a P-256 / X25519 encryption key for ECDH-ES, or not
                an EC P-256 / Ed25519 signing key.
        """
        jwk = dict(gateway_public_jwk)
        if isinstance(jwk.get("keys"), list):
            keys = [k for k in jwk["keys"] if isinstance(k, dict)]
            encryption = [k for k in keys if k.get("use") == "enc"]
            signing = [k for k in keys if k.get("use") == "sig"]
            if len(encryption) != 1 or len(signing) > 1:
                raise JweError("gateway JWKS must hold one encryption and one signing key")
            jwk = encryption[0]
            signing_jwk = signing[0] if signing else signing_jwk
        self._signing: tuple[SigningKey, str] | None = None
        if signing_jwk is not None:
            try:
                self._signing = import_verification_key(signing_jwk)
            except SignatureRejected as exc:
                raise JweError(f"gateway signing key refused: {exc}") from exc
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
        """Decrypt a gateway response with the ephemeral key of the request it answers,
        then verify the gateway's signature and its binding to that request.

        Raises:
            JweError: malformed, refused header, not encrypted to this ephemeral key,
                not signed by the gateway's key, or signed for another request.
        """
        if self._signing is None:
            raise JweError("no gateway signing key: responses cannot be verified")
        body = compact.encode("ascii", "replace") if isinstance(compact, str) else compact
        if max_bytes is not None and len(body) > max_bytes:
            raise JweError(f"JWE body of {len(body)} bytes exceeds the {max_bytes}-byte limit")
        with _jose_errors():
            header = _parse_compact(body)
            _check_header(
                header, _RESPONSE_HEADER, ephemeral_private_key.curve_name, cty=NESTED_CTY
            )
            result = jwe.decrypt_compact(body, ephemeral_private_key, registry=_registry(None))
        if result.plaintext is None:  # joserfc always sets it on success
            raise JweError("JWE decrypted to nothing")
        key, alg = self._signing
        try:
            return verify_response(result.plaintext, key, alg, ephemeral_private_key.thumbprint())
        except SignatureRejected as exc:
            raise JweError(f"JWE response refused: {exc}") from exc


def _concat_kdf(z: bytes, enc: str, key_bits: int, apu: bytes = b"", apv: bytes = b"") -> bytes:
    """RFC 7518 §4.6.2 key derivation for ECDH-ES direct key agreement."""
    other_info = b"".join(
        [_length_prefixed(enc.encode()), _length_prefixed(apu), _length_prefixed(apv)]
    ) + struct.pack(">I", key_bits)
    return ConcatKDFHash(hashes.SHA256(), key_bits // 8, other_info).derive(z)


def _agree(private: CurveKey, public: CurveKey) -> bytes:
    if isinstance(private, ECKey) and isinstance(public, ECKey):
        return private.exchange_derive_key(public)
    if isinstance(private, OKPKey) and isinstance(public, OKPKey):
        return private.exchange_derive_key(public)
    raise JweError("keys are of different types")


def _length_prefixed(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
