"""The default profile, proven against a real uvicorn server: only TLS 1.3 +
TLS_AES_256_GCM_SHA384 + X25519, with SNI naming a configured server name."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest

from wardgate.tls import _openssl

from .conftest import RunningServer
from .helpers import SERVER_NAME, Pki, Refused, SClient, client_context, https_get, leaf_der

Serve = Callable[..., RunningServer]
SClientRun = Callable[..., SClient]


@pytest.fixture
def server(serve: Serve, pki: Pki) -> RunningServer:
    return serve(pki.settings())


def test_accepted_handshake_negotiates_exactly_the_profile(
    server: RunningServer, pki: Pki, s_client: SClientRun
) -> None:
    result = s_client(server.port)
    assert result.got_http_response, result.output
    assert "New, TLSv1.3, Cipher is TLS_AES_256_GCM_SHA384" in result.output
    assert (
        "Server Temp Key: X25519" in result.output
        or "Negotiated TLS1.3 group: X25519" in result.output
    ), result.output
    assert "Verification: OK" in result.output

    response = https_get(server.port, client_context(pki))
    assert response.status == 200
    assert (response.version, response.cipher) == ("TLSv1.3", "TLS_AES_256_GCM_SHA384")
    assert response.server_cert_der == leaf_der(pki.server)
    # The app sees the session parameters through the ASGI TLS extension.
    tls = response.body["tls"]
    assert tls["tls_version"] == 0x0304
    assert tls["cipher_suite"] == 0x1302
    assert tls["client_cert_chain"] == []
    assert response.body["peer_der_hex"] is None


def test_server_picks_x25519_after_hello_retry(server: RunningServer, s_client: SClientRun) -> None:
    # The client's first key share is P-256; the server must ask for X25519 instead.
    result = s_client(server.port, "-groups", "P-256:X25519")
    assert result.got_http_response, result.output
    assert "Server Temp Key: X25519" in result.output or "group: X25519" in result.output


def test_tls12_is_refused(server: RunningServer, pki: Pki, s_client: SClientRun) -> None:
    def tls12_only(ctx: ssl.SSLContext) -> None:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2

    with pytest.raises(Refused):
        https_get(server.port, client_context(pki, configure=tls12_only))
    result = s_client(server.port, "-tls1_2")
    assert result.handshake_failed and not result.got_http_response, result.output


def test_tls13_with_other_ciphersuite_is_refused(
    server: RunningServer, pki: Pki, s_client: SClientRun
) -> None:
    for suite in ("TLS_AES_128_GCM_SHA256", "TLS_CHACHA20_POLY1305_SHA256"):
        result = s_client(server.port, "-tls1_3", "-ciphersuites", suite)
        assert result.handshake_failed and not result.got_http_response, result.output

    def aes128_only(ctx: ssl.SSLContext) -> None:
        _openssl.set_ciphersuites(ctx, ("TLS_AES_128_GCM_SHA256",))

    with pytest.raises(Refused):
        https_get(server.port, client_context(pki, configure=aes128_only))


def test_other_groups_are_refused(server: RunningServer, pki: Pki, s_client: SClientRun) -> None:
    for group in ("P-256", "P-384", "X448"):
        result = s_client(server.port, "-groups", group)
        assert result.handshake_failed and not result.got_http_response, result.output

    def p256_only(ctx: ssl.SSLContext) -> None:
        _openssl.set_groups(ctx, ("P-256",))

    with pytest.raises(Refused):
        https_get(server.port, client_context(pki, configure=p256_only))


@pytest.mark.parametrize("sni", ["evil.test", "other.test", None])
def test_wrong_or_missing_sni_is_refused(
    server: RunningServer,
    pki: Pki,
    s_client: SClientRun,
    sni: str | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # other.test is on the certificate, but it is not a configured server name.
    caplog.set_level(logging.INFO, logger="wardgate.tls")
    with pytest.raises(Refused):
        https_get(server.port, client_context(pki, check_hostname=False), server_hostname=sni)
    result = s_client(server.port, servername=sni)
    assert result.handshake_failed and not result.got_http_response, result.output
    refusals = [r for r in caplog.records if "not a server name" in r.getMessage()]
    assert len(refusals) == 2
    assert all(repr(sni) in r.getMessage() for r in refusals)


def test_sni_is_case_insensitive(server: RunningServer, pki: Pki, s_client: SClientRun) -> None:
    result = s_client(server.port, servername=SERVER_NAME.upper())
    assert result.got_http_response, result.output


def test_sni_is_enforced_on_session_resumption(
    server: RunningServer, s_client: SClientRun, tmp_path: Path
) -> None:
    session = tmp_path / "session.pem"
    assert s_client(server.port, "-sess_out", str(session)).got_http_response
    resumed = s_client(server.port, "-sess_in", str(session))
    assert resumed.got_http_response and "Reused, TLSv1.3" in resumed.output, resumed.output
    for sni in ("evil.test", None):
        result = s_client(server.port, "-sess_in", str(session), servername=sni)
        assert not result.got_http_response, result.output
