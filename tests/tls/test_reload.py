"""Certificates rotated on disk are served to new connections without a restart."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from wardgate.tls import TlsContextReloader

from .conftest import RunningServer
from .helpers import (
    SERVER_NAME,
    Pki,
    client_context,
    https_get,
    leaf_der,
    memory_handshake,
    write_atomically,
)

Serve = Callable[..., RunningServer]


def test_rotated_certificate_is_served_to_the_next_connection(serve: Serve, pki: Pki) -> None:
    server = serve(pki.settings(reload_interval_seconds=0))
    ctx = client_context(pki)
    assert https_get(server.port, ctx).server_cert_der == leaf_der(pki.server)

    rotated = pki.ca.issue_cert(SERVER_NAME)
    pki.install_server_cert(rotated)
    assert https_get(server.port, ctx).server_cert_der == leaf_der(rotated)

    # Overwriting in place (same inode) is noticed as well.
    again = pki.ca.issue_cert(SERVER_NAME)
    pki.key_file.write_bytes(again.private_key_pem.bytes())
    pki.cert_file.write_bytes(again.cert_chain_pems[0].bytes())
    assert https_get(server.port, ctx).server_cert_der == leaf_der(again)


def test_broken_rotation_keeps_serving_the_old_certificate(
    serve: Serve, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wardgate.tls")
    server = serve(pki.settings(reload_interval_seconds=0))
    ctx = client_context(pki)

    # Half-done rotation: new certificate, old key.
    rotated = pki.ca.issue_cert(SERVER_NAME)
    write_atomically(pki.cert_file, rotated.cert_chain_pems[0].bytes())
    for _ in range(3):
        assert https_get(server.port, ctx).server_cert_der == leaf_der(pki.server)
    failures = [r for r in caplog.records if "TLS reload failed" in r.getMessage()]
    assert len(failures) == 1, "the same broken state is reported once"
    assert "does not match" in failures[0].getMessage()

    # The rotation completes: the key arrives.
    write_atomically(pki.key_file, rotated.private_key_pem.bytes())
    assert https_get(server.port, ctx).server_cert_der == leaf_der(rotated)


def test_reload_waits_for_the_interval(serve: Serve, pki: Pki) -> None:
    server = serve(pki.settings(reload_interval_seconds=3600))
    ctx = client_context(pki)
    pki.install_server_cert(pki.ca.issue_cert(SERVER_NAME))
    assert https_get(server.port, ctx).server_cert_der == leaf_der(pki.server)


def test_reloader_checks_by_clock_and_can_be_forced(pki: Pki) -> None:
    now = [1000.0]
    reloader = TlsContextReloader(pki.settings(reload_interval_seconds=30), clock=lambda: now[0])
    ctx = client_context(pki)

    def served() -> bytes:
        der = memory_handshake(reloader.context, ctx, SERVER_NAME).getpeercert(binary_form=True)
        assert der is not None
        return der

    assert served() == leaf_der(pki.server)
    second = pki.ca.issue_cert(SERVER_NAME)
    pki.install_server_cert(second)
    now[0] += 29
    assert served() == leaf_der(pki.server)
    now[0] += 1
    assert served() == leaf_der(second)
    assert reloader.generation == 1

    third = pki.ca.issue_cert(SERVER_NAME)
    pki.install_server_cert(third)
    assert reloader.reload() is True  # e.g. from a SIGHUP handler
    assert served() == leaf_der(third)
    assert reloader.reload() is False  # nothing changed since


def test_reload_disabled(pki: Pki) -> None:
    now = [0.0]
    reloader = TlsContextReloader(pki.settings(reload_interval_seconds=None), clock=lambda: now[0])
    pki.install_server_cert(pki.ca.issue_cert(SERVER_NAME))
    now[0] += 1e9
    der = memory_handshake(reloader.context, client_context(pki), SERVER_NAME).getpeercert(True)
    assert der == leaf_der(pki.server)
