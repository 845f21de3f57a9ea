"""TLS settings for the gateway's own listener."""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import re
from pathlib import Path
from typing import Literal

from wardgate.errors import ConfigError

__all__ = ["ClientCertMode", "TlsSettings", "TlsVersion"]

TlsVersion = Literal["1.2", "1.3"]
ClientCertMode = Literal["none", "optional", "required"]

_NAME_TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def normalize_server_name(name: str) -> str:
    """Lower-case A-label form without a trailing dot, as compared against SNI."""
    try:
        ascii_name = name.strip().rstrip(".").encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ConfigError(f"tls.server_names: {name!r} is not a valid host name ({exc})") from exc
    return ascii_name.lower()


@dataclasses.dataclass(frozen=True, slots=True)
class TlsSettings:
    """How the gateway terminates TLS. The defaults are the required secure profile.

    * ``cert_file`` / ``key_file``: PEM certificate chain (leaf first) and unencrypted
      PEM private key. Both are re-read when they change on disk.
    * ``server_names``: host names accepted in SNI. A handshake without SNI or with any
      other name is refused with an ``unrecognized_name`` alert. Exact matches only
      (case-insensitive, trailing dot ignored); IP addresses cannot appear in SNI.
    * ``min_version``: ``"1.3"`` (default) or ``"1.2"``; the maximum is always 1.3.
    * ``ciphersuites``: TLS 1.3 cipher suites, preference order.
    * ``groups``: key-exchange groups (TLS 1.3 key shares, and ECDHE for 1.2).
    * ``tls12_ciphers``: OpenSSL cipher string, used only when ``min_version="1.2"``.
    * ``client_ca_file``: PEM bundle of CAs that client certificates must chain to.
    * ``client_cert``: ``"none"`` (do not ask), ``"optional"`` (ask; a presented
      certificate must verify) or ``"required"`` (a verified certificate is mandatory).
    * ``reload_interval_seconds``: how often, at most, a new handshake checks the files'
      metadata (inode, size, mtime) for changes; ``0`` checks on every handshake,
      ``None`` disables reloading.
    """

    cert_file: Path
    key_file: Path
    server_names: tuple[str, ...]
    min_version: TlsVersion = "1.3"
    ciphersuites: tuple[str, ...] = ("TLS_AES_256_GCM_SHA384",)
    groups: tuple[str, ...] = ("X25519",)
    tls12_ciphers: str = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!SHA1"
    client_ca_file: Path | None = None
    client_cert: ClientCertMode = "none"
    reload_interval_seconds: float | None = 5.0

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "cert_file", Path(self.cert_file))
        set_(self, "key_file", Path(self.key_file))
        if self.client_ca_file is not None:
            set_(self, "client_ca_file", Path(self.client_ca_file))
        for field in ("server_names", "ciphersuites", "groups"):
            value = getattr(self, field)
            if isinstance(value, str):
                raise ConfigError(f"tls.{field} must be a list of strings, not one string")
            set_(self, field, tuple(value))

        if not self.server_names:
            raise ConfigError("tls.server_names: at least one server name is required (SNI)")
        names = tuple(dict.fromkeys(normalize_server_name(n) for n in self.server_names))
        for name in names:
            if "*" in name:
                raise ConfigError(f"tls.server_names: {name!r}: wildcards are not supported")
            try:
                ipaddress.ip_address(name)
            except ValueError:
                pass
            else:
                raise ConfigError(
                    f"tls.server_names: {name!r} is an IP address; clients never send "
                    "IP addresses in SNI, so list the DNS names they connect to"
                )
            if not name or not all(_LABEL.match(label) for label in name.split(".")):
                raise ConfigError(f"tls.server_names: {name!r} is not a valid host name")
        set_(self, "server_names", names)

        if self.min_version not in ("1.2", "1.3"):
            raise ConfigError(f"tls.min_version: {self.min_version!r} must be '1.2' or '1.3'")
        for field in ("ciphersuites", "groups"):
            value = getattr(self, field)
            if not value:
                raise ConfigError(f"tls.{field}: at least one entry is required")
            for item in value:
                if not isinstance(item, str) or not _NAME_TOKEN.match(item):
                    raise ConfigError(f"tls.{field}: {item!r} is not a valid name")
        if self.client_cert not in ("none", "optional", "required"):
            raise ConfigError(
                f"tls.client_cert: {self.client_cert!r} must be 'none', 'optional' or 'required'"
            )
        if self.client_cert != "none" and self.client_ca_file is None:
            raise ConfigError(f"tls.client_cert={self.client_cert!r} needs tls.client_ca_file")
        if self.client_cert == "none" and self.client_ca_file is not None:
            raise ConfigError(
                "tls.client_ca_file is set but tls.client_cert is 'none'; "
                "set client_cert to 'optional' or 'required', or drop client_ca_file"
            )
        interval = self.reload_interval_seconds
        if interval is not None and (
            isinstance(interval, bool) or not math.isfinite(interval) or interval < 0
        ):
            raise ConfigError(
                f"tls.reload_interval_seconds: {interval!r} must be a number >= 0 or null"
            )

    @property
    def watched_files(self) -> tuple[Path, ...]:
        """Files whose change triggers a reload."""
        files = [self.cert_file, self.key_file]
        if self.client_ca_file is not None:
            files.append(self.client_ca_file)
        return tuple(files)
