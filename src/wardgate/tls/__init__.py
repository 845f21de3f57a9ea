"""TLS termination for the gateway's own listener.

See ``docs/tls.md``. The public API::

    settings = TlsSettings(cert_file=..., key_file=..., server_names=("mcp.example.com",))
    ctx = build_server_context(settings)            # plain ssl.SSLContext, or
    config = uvicorn.Config(app, **uvicorn_ssl_kwargs(settings))
"""

from __future__ import annotations

from wardgate.tls.settings import ClientCertMode, TlsSettings, TlsVersion
from wardgate.tls.ssl_context import TlsContextReloader, build_server_context
from wardgate.tls.uvicorn_tls import (
    TlsContextFactory,
    TlsH11Protocol,
    TlsHttpToolsProtocol,
    UvicornTlsKwargs,
    peer_certificate_der,
    tls_http_protocol,
    tls_scope_extension,
    uvicorn_ssl_kwargs,
)

__all__ = [
    "ClientCertMode",
    "TlsContextFactory",
    "TlsContextReloader",
    "TlsH11Protocol",
    "TlsHttpToolsProtocol",
    "TlsSettings",
    "TlsVersion",
    "UvicornTlsKwargs",
    "build_server_context",
    "peer_certificate_der",
    "tls_http_protocol",
    "tls_scope_extension",
    "uvicorn_ssl_kwargs",
]
