"""Server-side :class:`ssl.SSLContext` construction, SNI enforcement and hot reload.

One *front* context is handed to the server (uvicorn / asyncio). Its SNI callback runs
on every handshake, before the certificate is chosen, and

1. refuses the handshake (``unrecognized_name`` alert) unless the client sent SNI
   naming one of ``settings.server_names``;
2. at most every ``reload_interval_seconds`` compares the (device, inode, size, mtime)
   of the certificate, key and client-CA files with the last loaded ones, and if they
   changed builds a complete new context from them;
3. switches the connection to the newest successfully built context
   (``ssl_object.context = …``, i.e. ``SSL_set_SSL_CTX``), so the handshake in
   progress already uses the new certificate (and CA bundle).

A reload that fails (half-written files, key not matching the certificate yet, …) is
logged once per distinct file state and the previous context keeps serving.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

from wardgate.errors import ConfigError
from wardgate.tls import _openssl
from wardgate.tls.settings import TlsSettings

__all__ = ["TlsContextReloader", "build_server_context"]

logger = logging.getLogger("wardgate.tls")

_FileState = tuple[int, int, int, int] | None


def _file_state(path: Path) -> _FileState:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _read_text(path: Path, setting: str) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"tls.{setting} {path}: cannot read: {exc.strerror or exc}") from exc
    try:
        return data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"tls.{setting} {path}: not a PEM file (binary/DER content?)") from exc


def _reason(exc: ssl.SSLError) -> str:
    return str(exc.reason or exc.strerror or exc)


def _no_password() -> str:
    raise ConfigError("encrypted private keys are not supported")


def _load_cert_and_key(ctx: ssl.SSLContext, settings: TlsSettings) -> None:
    cert_path, key_path = settings.cert_file, settings.key_file
    cert_pem = _read_text(cert_path, "cert_file")
    if "-----BEGIN CERTIFICATE-----" not in cert_pem:
        raise ConfigError(f"tls.cert_file {cert_path}: no PEM certificate found")
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        probe.load_verify_locations(cadata=cert_pem)
    except ssl.SSLError as exc:
        raise ConfigError(
            f"tls.cert_file {cert_path}: invalid PEM certificate ({_reason(exc)})"
        ) from exc
    key_pem = _read_text(key_path, "key_file")
    if "PRIVATE KEY-----" not in key_pem:
        raise ConfigError(f"tls.key_file {key_path}: no PEM private key found")
    if "ENCRYPTED" in key_pem:
        raise ConfigError(f"tls.key_file {key_path}: encrypted private keys are not supported")
    try:
        ctx.load_cert_chain(cert_path, key_path, password=_no_password)
    except ConfigError as exc:
        raise ConfigError(f"tls.key_file {key_path}: {exc.detail}") from exc
    except ssl.SSLError as exc:
        reason = _reason(exc)
        if "KEY_VALUES_MISMATCH" in reason.upper():
            raise ConfigError(
                f"tls.key_file {key_path}: private key does not match the certificate "
                f"in tls.cert_file {cert_path}"
            ) from exc
        raise ConfigError(
            f"tls.cert_file {cert_path} / tls.key_file {key_path}: cannot load ({reason})"
        ) from exc
    except OSError as exc:
        raise ConfigError(
            f"tls.cert_file {cert_path} / tls.key_file {key_path}: cannot read ({exc})"
        ) from exc


def _load_client_ca(ctx: ssl.SSLContext, ca_path: Path) -> None:
    ca_pem = _read_text(ca_path, "client_ca_file")
    if "-----BEGIN CERTIFICATE-----" not in ca_pem:
        raise ConfigError(f"tls.client_ca_file {ca_path}: no PEM certificate found")
    try:
        ctx.load_verify_locations(cadata=ca_pem)
    except ssl.SSLError as exc:
        raise ConfigError(
            f"tls.client_ca_file {ca_path}: invalid PEM certificate ({_reason(exc)})"
        ) from exc
    if ctx.cert_store_stats()["x509_ca"] == 0:
        raise ConfigError(
            f"tls.client_ca_file {ca_path}: contains no CA certificate (basicConstraints CA:TRUE)"
        )


def _new_context(settings: TlsSettings) -> ssl.SSLContext:
    """A fully configured context without the SNI callback. Raises ConfigError."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = (
        ssl.TLSVersion.TLSv1_3 if settings.min_version == "1.3" else ssl.TLSVersion.TLSv1_2
    )
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION
    if settings.min_version == "1.2":
        try:
            ctx.set_ciphers(settings.tls12_ciphers)
        except ssl.SSLError as exc:
            raise ConfigError(
                f"tls.tls12_ciphers {settings.tls12_ciphers!r}: {_reason(exc)}"
            ) from exc
    _openssl.set_ciphersuites(ctx, settings.ciphersuites)
    _openssl.set_groups(ctx, settings.groups)
    _load_cert_and_key(ctx, settings)
    if settings.client_ca_file is not None:
        _load_client_ca(ctx, settings.client_ca_file)
    ctx.verify_mode = {
        "none": ssl.CERT_NONE,
        "optional": ssl.CERT_OPTIONAL,
        "required": ssl.CERT_REQUIRED,
    }[settings.client_cert]
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class TlsContextReloader:
    """Owns the server context; enforces SNI and swaps in re-read certificates.

    Construct once at start-up (raises :class:`ConfigError` for bad settings or
    files), then give :attr:`context` to the server. Keep no other reference needed:
    the context's SNI callback keeps this object alive.
    """

    def __init__(
        self, settings: TlsSettings, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._allowed = frozenset(settings.server_names)
        self._lock = threading.Lock()
        states = self._states()
        self._current = _new_context(settings)
        self._loaded_states = states
        self._failed_states: tuple[_FileState, ...] | None = None
        self._next_check = self._schedule(clock())
        self.generation = 0
        self.context: ssl.SSLContext = self._current
        """The context to serve with. Never replaced; connections are switched away
        from it to the newest context during the handshake."""
        self.context.sni_callback = self._on_sni

    @property
    def current_context(self) -> ssl.SSLContext:
        """The newest successfully loaded context (the one handshakes end up using)."""
        return self._current

    def _states(self) -> tuple[_FileState, ...]:
        return tuple(_file_state(p) for p in self.settings.watched_files)

    def _schedule(self, now: float) -> float:
        interval = self.settings.reload_interval_seconds
        return float("inf") if interval is None else now + interval

    def reload(self, *, force: bool = False) -> bool:
        """Re-read the files if they changed (or if *force*). True if a new context is live.

        Never raises for bad files: the failure is logged and the old context stays.
        """
        if not self._lock.acquire(blocking=False):
            return False  # another thread is reloading right now
        try:
            self._next_check = self._schedule(self._clock())
            states = self._states()
            if not force and (states == self._loaded_states or states == self._failed_states):
                return False
            try:
                ctx = _new_context(self.settings)
            except ConfigError as exc:
                self._failed_states = states
                logger.warning("TLS reload failed, keeping the previous certificate: %s", exc)
                return False
            # Files may have changed while we read them; the next check catches that.
            self._current = ctx
            self._loaded_states = states
            self._failed_states = None
            self.generation += 1
            logger.info(
                "TLS certificate reloaded from %s (generation %d)",
                self.settings.cert_file,
                self.generation,
            )
            return True
        finally:
            self._lock.release()

    def server_name_allowed(self, server_name: str | None) -> bool:
        if not server_name:
            return False
        return server_name.rstrip(".").lower() in self._allowed

    def _on_sni(
        self, ssl_object: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext
    ) -> int | None:
        if not self.server_name_allowed(server_name):
            logger.info("TLS handshake refused: SNI %r is not a server name", server_name)
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        try:
            if self._clock() >= self._next_check:
                self.reload()
            current = self._current
            if ssl_object.context is not current:
                ssl_object.context = current
        except Exception:
            # An exception here would abort the handshake anyway; make it explicit.
            logger.exception("TLS SNI callback failed")
            return ssl.ALERT_DESCRIPTION_INTERNAL_ERROR
        return None


def build_server_context(settings: TlsSettings) -> ssl.SSLContext:
    """Build the server context: the secure profile, SNI enforcement and hot reload.

    Raises :class:`ConfigError` naming the file and problem if the certificate, key or
    client-CA files are unusable.
    """
    return TlsContextReloader(settings).context
