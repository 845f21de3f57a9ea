"""Per-context TLS 1.3 cipher suites and key-exchange groups, set through libssl.

Python 3.11's :mod:`ssl` has no API for either: ``SSLContext.set_ciphers`` only
reaches the TLS <= 1.2 cipher list, and there is no ``set_groups``. Both are plain
per-``SSL_CTX`` settings in OpenSSL, so we call the two OpenSSL functions directly on
the ``SSL_CTX`` that a given :class:`ssl.SSLContext` wraps:

* ``SSL_CTX_set_ciphersuites(ctx, "TLS_AES_256_GCM_SHA384")``
* ``SSL_CTX_set1_groups_list(ctx, "X25519")`` (a macro for ``SSL_CTX_ctrl(ctx, 92, …)``)

Nothing else in the process is touched (unlike an ``OPENSSL_CONF`` file, which would
also restrict every outbound TLS client the gateway opens).

Safety checks, each of which refuses (``ConfigError``) rather than guessing:

* the library is opened through the already-loaded ``_ssl`` extension module, so
  ``dlsym`` resolves the symbols in exactly the libssl that :mod:`ssl` uses, and its
  ``OpenSSL_version_num()`` must equal :data:`ssl.OPENSSL_VERSION_NUMBER`;
* the ``SSL_CTX *`` is read from the CPython object layout (``PySSLContext`` starts
  with ``PyObject_HEAD`` followed by ``SSL_CTX *ctx``, unchanged from 3.7 to 3.14);
  before writing anything we read the options and verify mode back through that
  pointer and compare them with what Python reports for the same context;
* after setting, the cipher suites are read back with ``SSLContext.get_ciphers()``
  (OpenSSL silently ignores unknown suite names, so this check matters), and
  ``SSL_CTX_set1_groups_list`` fails loudly on an unknown group.
"""

from __future__ import annotations

import _ssl
import ctypes
import functools
import ssl
import sys

from wardgate.errors import ConfigError

__all__ = ["set_ciphersuites", "set_groups", "tls13_ciphersuites"]

_SSL_CTRL_SET_GROUPS_LIST = 92  # include/openssl/ssl.h, stable since 1.1.1


@functools.cache
def _libssl() -> ctypes.CDLL:
    if sys.implementation.name != "cpython":
        raise ConfigError(
            "tls: setting TLS 1.3 cipher suites and groups needs CPython "
            f"(running {sys.implementation.name})"
        )
    try:
        lib = ctypes.CDLL(_ssl.__file__)
        lib.OpenSSL_version_num.restype = ctypes.c_ulong
        lib.OpenSSL_version_num.argtypes = []
        lib.SSL_CTX_get_options.restype = ctypes.c_uint64
        lib.SSL_CTX_get_options.argtypes = [ctypes.c_void_p]
        lib.SSL_CTX_get_verify_mode.restype = ctypes.c_int
        lib.SSL_CTX_get_verify_mode.argtypes = [ctypes.c_void_p]
        lib.SSL_CTX_set_ciphersuites.restype = ctypes.c_int
        lib.SSL_CTX_set_ciphersuites.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.SSL_CTX_ctrl.restype = ctypes.c_long
        lib.SSL_CTX_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_char_p]
        lib.ERR_clear_error.restype = None
        lib.ERR_clear_error.argtypes = []
    except (OSError, AttributeError) as exc:
        raise ConfigError(
            f"tls: cannot reach libssl functions through {_ssl.__file__}: {exc}"
        ) from exc
    linked = int(lib.OpenSSL_version_num())
    if linked != ssl.OPENSSL_VERSION_NUMBER:
        raise ConfigError(
            f"tls: libssl found via {_ssl.__file__} reports version {linked:#x}, "
            f"but the ssl module uses {ssl.OPENSSL_VERSION_NUMBER:#x}; refusing to mix them"
        )
    return lib


def _ssl_ctx_pointer(ctx: ssl.SSLContext) -> int:
    lib = _libssl()
    base = _ssl._SSLContext
    offset = object.__basicsize__  # sizeof(PyObject): PyObject_HEAD comes first
    if not isinstance(ctx, base) or base.__basicsize__ < offset + ctypes.sizeof(ctypes.c_void_p):
        raise ConfigError("tls: unexpected ssl.SSLContext layout; cannot configure TLS 1.3")
    pointer = ctypes.c_void_p.from_address(id(ctx) + offset).value
    if not pointer:
        raise ConfigError("tls: ssl.SSLContext has no SSL_CTX; cannot configure TLS 1.3")
    # SSL_VERIFY_NONE=0, PEER=1, PEER|FAIL_IF_NO_PEER_CERT=3; POST_HANDSHAKE=8 is masked
    raw_mode = int(lib.SSL_CTX_get_verify_mode(pointer)) & ~0x08
    mode = {0: ssl.CERT_NONE, 1: ssl.CERT_OPTIONAL, 3: ssl.CERT_REQUIRED}.get(raw_mode)
    if int(lib.SSL_CTX_get_options(pointer)) != int(ctx.options) or mode != ctx.verify_mode:
        raise ConfigError(
            "tls: the SSL_CTX found in ssl.SSLContext does not match it; "
            "cannot configure TLS 1.3 cipher suites and groups on this Python"
        )
    return pointer


def tls13_ciphersuites(ctx: ssl.SSLContext) -> tuple[str, ...]:
    """The TLS 1.3 cipher suites *ctx* currently enables, in preference order."""
    return tuple(c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.3")


def set_ciphersuites(ctx: ssl.SSLContext, suites: tuple[str, ...]) -> None:
    """Restrict the TLS 1.3 cipher suites of *ctx* to *suites* (in that order)."""
    lib = _libssl()
    pointer = _ssl_ctx_pointer(ctx)
    ok = lib.SSL_CTX_set_ciphersuites(pointer, ":".join(suites).encode("ascii"))
    lib.ERR_clear_error()
    got = tls13_ciphersuites(ctx)
    if ok != 1 or got != suites:
        raise ConfigError(
            f"tls.ciphersuites {list(suites)!r}: OpenSSL accepted {list(got)!r}; "
            "use TLS 1.3 suite names such as TLS_AES_256_GCM_SHA384"
        )


def set_groups(ctx: ssl.SSLContext, groups: tuple[str, ...]) -> None:
    """Restrict the key-exchange groups of *ctx* to *groups* (in preference order)."""
    lib = _libssl()
    pointer = _ssl_ctx_pointer(ctx)
    ok = lib.SSL_CTX_ctrl(pointer, _SSL_CTRL_SET_GROUPS_LIST, 0, ":".join(groups).encode("ascii"))
    lib.ERR_clear_error()
    if ok != 1:
        raise ConfigError(
            f"tls.groups {list(groups)!r}: OpenSSL rejected the list "
            "(unknown group name? e.g. X25519, X448, P-256, P-384)"
        )
