"""The SecretSource seam: the encrypted file and the environment; a missing or
undecryptable secret fails start-up by name, never by value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from wardgate.errors import ConfigError
from wardgate.secrets import EncryptedFileSource, EnvSource, SecretSource, resolve_secrets


def test_encrypted_file_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = Fernet.generate_key()
    path = tmp_path / "secrets.enc"
    path.write_bytes(Fernet(key).encrypt(json.dumps({"db": "pw-1"}).encode()))
    monkeypatch.setenv("SERVICE_TOKEN", "tok-2")
    sources: dict[str, SecretSource] = {"file": EncryptedFileSource(path, key), "env": EnvSource()}
    values = resolve_secrets({"DB": "file:db", "TOKEN": "env:SERVICE_TOKEN"}, sources, "u")
    assert values == {"DB": b"pw-1", "TOKEN": b"tok-2"}
    with pytest.raises(ConfigError) as missing:
        resolve_secrets({"X": "env:NOT_SET_ANYWHERE_42"}, sources, "u")
    assert "u.secrets.X" in str(missing.value)
    with pytest.raises(ConfigError):
        resolve_secrets({"X": "vault:a"}, sources, "u")  # no such source yet
    with pytest.raises(ConfigError) as wrong_key:
        EncryptedFileSource(path, Fernet.generate_key())
    assert "pw-1" not in str(wrong_key.value)
