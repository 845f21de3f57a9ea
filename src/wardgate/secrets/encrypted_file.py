"""The encrypted secrets file (``[secrets] file``): opening it at start-up, with the
checks an operator needs to hear about by name, and writing it (``wardgate secrets``).

The file is one Fernet token whose plaintext is a JSON object of name -> string. It
and a key file must be readable by the gateway's user only (no group or other bits).
Messages name the file, the key's source and the secret, never a value or the key.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from wardgate.config.secret_store import DEFAULT_KEY_ENV, SecretsSettings
from wardgate.errors import ConfigError
from wardgate.secrets import EncryptedFileSource

__all__ = [
    "check_private",
    "load_key",
    "new_key_file",
    "open_file_source",
    "read_values",
    "write_secret",
]


def check_private(path: Path, what: str) -> None:
    """Refuse ``path`` unless it is a regular file no group or other user may access.

    Raises:
        ConfigError: missing, not a file, or mode too open.
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"{what} {path}: does not exist") from None
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{what} {path}: not a regular file")
    if info.st_mode & 0o077:
        raise ConfigError(
            f"{what} {path}: mode {stat.S_IMODE(info.st_mode):04o} is too open "
            "(group or others may access it); chmod 0400 or 0600"
        )


def load_key(settings: SecretsSettings) -> bytes:
    """The Fernet key of ``settings``.

    Raises:
        ConfigError: the key variable is unset, the key file missing or too open, or
            what they hold is not a Fernet key.
    """
    from cryptography.fernet import Fernet

    if settings.key_file is not None:
        path = Path(settings.key_file)
        check_private(path, "secrets key file")
        key = path.read_bytes().strip()
    else:
        name = settings.key_env or DEFAULT_KEY_ENV
        raw = os.environb.get(name.encode())
        if not raw:
            raise ConfigError(
                f"secrets file {settings.file}: the key's environment variable {name} is not set"
            )
        key = raw.strip()
    try:
        Fernet(key)
    except ValueError:
        raise ConfigError(
            f"secrets file {settings.file}: the {settings.key_source} does not hold a "
            "Fernet key (32 url-safe base64-encoded bytes)"
        ) from None
    return key


def open_file_source(settings: SecretsSettings) -> EncryptedFileSource:
    """The ``file:`` source of ``[secrets]``, opened and decrypted at start-up.

    Raises:
        ConfigError: no file configured, the file is missing or too open, the key is
            missing or wrong.
    """
    if settings.file is None:
        raise ConfigError("secrets: no [secrets] file is configured")
    path = Path(settings.file)
    check_private(path, "secrets file")
    key = load_key(settings)
    try:
        return EncryptedFileSource(path, key)
    except ConfigError:
        raise ConfigError(
            f"secrets file {path}: cannot decrypt it with the {settings.key_source} "
            "(wrong key, or not a file written by 'wardgate secrets set')"
        ) from None


def read_values(path: Path, key: bytes) -> dict[str, str]:
    """Every name -> value of the file (for the writer; nothing prints values).

    Raises:
        ConfigError: it cannot be decrypted with ``key``.
    """
    from cryptography.fernet import Fernet, InvalidToken

    try:
        data = json.loads(Fernet(key).decrypt(path.read_bytes()))
    except (InvalidToken, ValueError):
        raise ConfigError(f"secrets file {path}: cannot decrypt it with this key") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ConfigError(f"secrets file {path}: not an object of strings")
    return data


def write_secret(path: Path, key: bytes, name: str, value: str | None) -> None:
    """Set ``name`` to ``value`` (``None``: remove it) in the file, creating it if there
    is none; written to a 0600 temporary file beside it, then renamed over it.

    Raises:
        ConfigError: the existing file is too open or cannot be decrypted with ``key``.
    """
    from cryptography.fernet import Fernet

    values: dict[str, str] = {}
    if path.exists():
        check_private(path, "secrets file")
        values = read_values(path, key)
    if value is None:
        values.pop(name, None)
    else:
        values[name] = value
    token = Fernet(key).encrypt(json.dumps(values, sort_keys=True).encode())
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, token)
        os.fsync(fd)
    finally:
        os.close(fd)
    temp.replace(path)


def new_key_file(path: Path) -> bytes:
    """Make a new key file (mode 0400; refuses to replace one); returns the key.

    Raises:
        ConfigError: the file already exists.
    """
    from cryptography.fernet import Fernet

    key = Fernet.generate_key()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o400)
    except FileExistsError:
        raise ConfigError(f"secrets key file {path}: already exists") from None
    try:
        os.write(fd, key + b"\n")
    finally:
        os.close(fd)
    return key
