"""Where secret values come from: the :class:`SecretSource` seam.

A reference is ``env:NAME`` (the gateway's environment) or ``file:KEY`` (a local file
encrypted with Fernet, one JSON object of key -> value, its key in the gateway's
environment variable ``WARDGATE_SECRETS_KEY``). Vault arrives in a later issue.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Protocol

from wardgate.errors import ConfigError

__all__ = ["EncryptedFileSource", "EnvSource", "SecretSource", "resolve_secrets"]


class SecretSource(Protocol):
    def get(self, ref: str) -> bytes:
        """The value of ``ref``.

        Raises:
            KeyError: no such secret.
        """
        ...


class EnvSource:
    """Secrets from the gateway's own environment."""

    def get(self, ref: str) -> bytes:
        """Raises:
        KeyError: the variable is not set.
        """
        value: bytes = os.environb[ref.encode()]
        return value


class EncryptedFileSource:
    """Secrets from a Fernet-encrypted JSON file."""

    def __init__(self, path: str | Path, key: bytes) -> None:
        """Raises:
        ConfigError: the file cannot be read or decrypted.
        """
        from cryptography.fernet import Fernet, InvalidToken

        try:
            plain = Fernet(key).decrypt(Path(path).read_bytes())
            data = json.loads(plain)
        except (OSError, InvalidToken, ValueError) as exc:
            raise ConfigError(
                f"secrets file {path}: cannot decrypt ({type(exc).__name__})"
            ) from None
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise ConfigError(f"secrets file {path}: not an object of strings")
        self._values: dict[str, bytes] = {k: v.encode() for k, v in data.items()}

    def get(self, ref: str) -> bytes:
        """Raises:
        KeyError: no such key in the file.
        """
        return self._values[ref]


def resolve_secrets(
    refs: dict[str, str], sources: dict[str, SecretSource], where: str
) -> dict[str, bytes]:
    """Values of ``refs`` (NAME -> ``scheme:ref``).

    Raises:
        ConfigError: unknown scheme or missing secret (the name, never the value).
    """
    values = {}
    for name, ref in refs.items():
        scheme, _, key = ref.partition(":")
        source = sources.get(scheme)
        if source is None:
            raise ConfigError(f"{where}.secrets.{name}: unknown source {scheme!r}")
        try:
            values[name] = source.get(key)
        except KeyError:
            raise ConfigError(f"{where}.secrets.{name}: {ref!r} not found") from None
    return values
