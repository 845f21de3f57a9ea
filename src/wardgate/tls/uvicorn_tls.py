"""Serving TLS with uvicorn, and the ASGI TLS extension for the application.

uvicorn 0.54 terminates TLS with the ``SSLContext`` its ``Config`` builds (or the one
an ``ssl_context_factory`` returns), but puts nothing about the TLS session into the
ASGI scope: there is no ``scope["extensions"]["tls"]`` and the transport is not
reachable from the app. The smallest fix is an HTTP protocol subclass (uvicorn accepts
a class for ``Config(http=…)``) that, in ``connection_made`` — which asyncio and uvloop
call only after the handshake has completed — reads ``transport.get_extra_info(
"ssl_object")`` once and wraps the per-connection app so each request's scope carries
the `ASGI TLS extension`_:

``scope["extensions"]["tls"]`` = ``{"server_cert": None, "client_cert_chain": [PEM],
"client_cert_name": "CN=…,O=…", "client_cert_error": None, "tls_version": 0x0304,
"cipher_suite": 0x1302}``

``client_cert_chain`` holds only the leaf (Python 3.11 cannot return the chain the
client sent). WebSocket connections upgraded from these protocols do not get the
extension (uvicorn builds the WebSocket protocol from ``config`` itself).

.. _ASGI TLS extension: https://asgi.readthedocs.io/en/latest/specs/tls.html
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, TypedDict, cast

from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from wardgate.tls.settings import TlsSettings
from wardgate.tls.ssl_context import TlsContextReloader

if TYPE_CHECKING:
    import uvicorn
    from uvicorn._types import ASGI3Application, ASGIReceiveCallable, ASGISendCallable, Scope

__all__ = [
    "TlsContextFactory",
    "TlsH11Protocol",
    "TlsHttpToolsProtocol",
    "UvicornTlsKwargs",
    "attach_tls",
    "peer_certificate_der",
    "tls_http_protocol",
    "tls_scope_extension",
    "uvicorn_ssl_kwargs",
]

_TLS_VERSIONS = {"TLSv1.3": 0x0304, "TLSv1.2": 0x0303}

# RFC 4514 attribute types; other attributes use their dotted OID.
_RFC4514_NAMES = {
    "commonName": "CN",
    "localityName": "L",
    "stateOrProvinceName": "ST",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "streetAddress": "STREET",
    "domainComponent": "DC",
    "userId": "UID",
    "emailAddress": "1.2.840.113549.1.9.1",
    "serialNumber": "2.5.4.5",
    "surname": "2.5.4.4",
    "givenName": "2.5.4.42",
    "title": "2.5.4.12",
    "pseudonym": "2.5.4.65",
}


@functools.cache
def _cipher_ids() -> dict[str, int]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    return {c["name"]: c["id"] & 0xFFFF for c in ctx.get_ciphers()}


def _escape_rfc4514(value: str) -> str:
    out = []
    last = len(value) - 1
    for i, ch in enumerate(value):
        if ch in ',+"\\<>;' or (i == 0 and ch in " #") or (i == last and ch == " "):
            out.append("\\" + ch)
        elif ch == "\0":
            out.append("\\00")
        else:
            out.append(ch)
    return "".join(out)


def _rfc4514(subject: Any) -> str | None:
    """RFC 4514 string for a ``getpeercert()["subject"]`` (most specific RDN first)."""
    if not subject:
        return None
    rdns = []
    for rdn in reversed(subject):
        rdns.append(
            "+".join(f"{_RFC4514_NAMES.get(k, k)}={_escape_rfc4514(str(v))}" for k, v in rdn)
        )
    return ",".join(rdns)


def tls_scope_extension(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> dict[str, Any]:
    """The ASGI ``tls`` scope extension for an established TLS connection."""
    der = ssl_object.getpeercert(binary_form=True)
    decoded = ssl_object.getpeercert() if der else None
    cipher = ssl_object.cipher()
    version = ssl_object.version()
    return {
        "server_cert": None,
        "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
        "client_cert_name": _rfc4514(decoded.get("subject")) if decoded else None,
        # Handshakes with a presented but unverifiable certificate are refused.
        "client_cert_error": None,
        "tls_version": _TLS_VERSIONS.get(version) if version else None,
        "cipher_suite": _cipher_ids().get(cipher[0]) if cipher else None,
    }


def peer_certificate_der(scope: Mapping[str, Any]) -> bytes | None:
    """The client certificate (DER) of the connection *scope* came in on, if any."""
    tls = (scope.get("extensions") or {}).get("tls")
    if not tls or not tls.get("client_cert_chain"):
        return None
    return ssl.PEM_cert_to_DER_cert(tls["client_cert_chain"][0])


class _TlsScopeApp:
    """Adds the connection's ``tls`` extension to every http/websocket scope."""

    __slots__ = ("_app", "_tls")

    def __init__(self, app: ASGI3Application, tls: dict[str, Any]) -> None:
        self._app = app
        self._tls = tls

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] in ("http", "websocket"):
            mutable = cast("dict[str, Any]", scope)
            extensions = dict(mutable.get("extensions") or {})
            tls = dict(self._tls)
            tls["client_cert_chain"] = list(tls["client_cert_chain"])
            extensions["tls"] = tls
            mutable["extensions"] = extensions
        await self._app(scope, receive, send)


def attach_tls(protocol: Any, transport: asyncio.BaseTransport) -> None:
    """Wrap ``protocol.app`` so its scopes carry the TLS extension (TLS transports only)."""
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is not None:
        protocol.app = _TlsScopeApp(protocol.app, tls_scope_extension(ssl_object))


class TlsH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, plus ``scope["extensions"]["tls"]``."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        attach_tls(self, transport)


class TlsHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, plus ``scope["extensions"]["tls"]``."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        attach_tls(self, transport)


def tls_http_protocol(
    http: Literal["auto", "h11", "httptools"] = "auto",
) -> type[asyncio.Protocol]:
    """The TLS-extension-aware uvicorn HTTP protocol class (``auto`` = httptools)."""
    return TlsH11Protocol if http == "h11" else TlsHttpToolsProtocol


class TlsContextFactory:
    """A uvicorn ``ssl_context_factory`` serving a :class:`TlsContextReloader`'s context.

    Picklable (only the settings travel), so uvicorn worker processes each build and
    reload their own context.
    """

    def __init__(self, settings: TlsSettings, reloader: TlsContextReloader | None = None) -> None:
        self.settings = settings
        self._reloader = reloader

    @property
    def reloader(self) -> TlsContextReloader:
        if self._reloader is None:
            self._reloader = TlsContextReloader(self.settings)
        return self._reloader

    def __call__(
        self, config: uvicorn.Config, default: Callable[[], ssl.SSLContext]
    ) -> ssl.SSLContext:
        return self.reloader.context

    def __getstate__(self) -> dict[str, Any]:
        return {"settings": self.settings}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.settings = state["settings"]
        self._reloader = None


class UvicornTlsKwargs(TypedDict):
    ssl_context_factory: TlsContextFactory
    http: type[asyncio.Protocol]


def uvicorn_ssl_kwargs(
    settings: TlsSettings, *, http: Literal["auto", "h11", "httptools"] = "auto"
) -> UvicornTlsKwargs:
    """Keyword arguments for ``uvicorn.Config`` that make it serve *settings*' TLS.

    Builds the context now, so bad certificate/key/CA files raise
    :class:`~wardgate.errors.ConfigError` before uvicorn starts::

        config = uvicorn.Config(app, host=host, port=port, **uvicorn_ssl_kwargs(tls))
        await uvicorn.Server(config).serve()
    """
    factory = TlsContextFactory(settings, TlsContextReloader(settings))
    return {"ssl_context_factory": factory, "http": tls_http_protocol(http)}
