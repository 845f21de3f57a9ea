"""Settings validation and start-up errors that name the file and the problem."""

from __future__ import annotations

import pickle
import ssl
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from wardgate.errors import ConfigError
from wardgate.tls import (
    TlsContextFactory,
    TlsH11Protocol,
    TlsHttpToolsProtocol,
    TlsSettings,
    build_server_context,
    uvicorn_ssl_kwargs,
)
from wardgate.tls._openssl import set_ciphersuites, set_groups, tls13_ciphersuites

from .helpers import SERVER_NAME, Pki, client_context, memory_handshake


def test_defaults_are_the_required_profile(pki: Pki) -> None:
    settings = TlsSettings(pki.cert_file, pki.key_file, (SERVER_NAME,))
    assert settings.min_version == "1.3"
    assert settings.ciphersuites == ("TLS_AES_256_GCM_SHA384",)
    assert settings.groups == ("X25519",)
    assert settings.client_cert == "none"
    assert settings.client_ca_file is None

    ctx = build_server_context(settings)
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
    assert ctx.maximum_version == ssl.TLSVersion.TLSv1_3
    assert tls13_ciphersuites(ctx) == ("TLS_AES_256_GCM_SHA384",)
    assert ctx.verify_mode == ssl.CERT_NONE


def test_server_names_are_normalized(pki: Pki) -> None:
    settings = pki.settings(server_names=["Gateway.Test.", "bücher.example", "gateway.test"])
    assert settings.server_names == ("gateway.test", "xn--bcher-kva.example")
    assert isinstance(settings.cert_file, Path)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"server_names": ()}, "at least one server name"),
        ({"server_names": "gateway.test"}, "list of strings"),
        ({"server_names": ("*.example.com",)}, "wildcards"),
        ({"server_names": ("127.0.0.1",)}, "IP address"),
        ({"server_names": ("bad name",)}, "not a valid host name"),
        ({"min_version": "1.1"}, "tls.min_version"),
        ({"ciphersuites": ()}, "tls.ciphersuites"),
        ({"groups": ("X25519:P-256",)}, "tls.groups"),
        ({"client_cert": "maybe"}, "tls.client_cert"),
        ({"client_cert": "required"}, "needs tls.client_ca_file"),
        ({"client_ca_file": "ca.pem"}, "client_cert is 'none'"),
        ({"reload_interval_seconds": -1}, "reload_interval_seconds"),
        ({"reload_interval_seconds": float("nan")}, "reload_interval_seconds"),
    ],
)
def test_invalid_settings(pki: Pki, overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        pki.settings(**overrides)


def test_unknown_ciphersuite_or_group(pki: Pki) -> None:
    with pytest.raises(ConfigError, match=r"tls\.ciphersuites.*TLS_AES_512"):
        build_server_context(pki.settings(ciphersuites=("TLS_AES_512_GCM_SHA384",)))
    with pytest.raises(ConfigError, match=r"tls\.groups.*X99999"):
        build_server_context(pki.settings(groups=("X99999",)))


def _expect(settings: TlsSettings, *fragments: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_server_context(settings)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)
    # Nothing is served and uvicorn is never configured with a broken context.
    with pytest.raises(ConfigError):
        uvicorn_ssl_kwargs(settings)


def test_missing_files(pki: Pki, tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    _expect(pki.settings(cert_file=missing), "tls.cert_file", str(missing), "cannot read")
    _expect(pki.settings(key_file=missing), "tls.key_file", str(missing), "cannot read")
    _expect(
        pki.settings(client_cert="required", client_ca_file=missing),
        "tls.client_ca_file",
        str(missing),
    )


def test_garbage_files(pki: Pki, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("hello\n")
    _expect(pki.settings(cert_file=garbage), "tls.cert_file", str(garbage), "no PEM certificate")
    _expect(pki.settings(key_file=garbage), "tls.key_file", str(garbage), "no PEM private key")
    binary = tmp_path / "cert.der"
    binary.write_bytes(b"\x30\x82\x01\xff\x00")
    _expect(pki.settings(cert_file=binary), "tls.cert_file", str(binary), "not a PEM file")

    corrupt = tmp_path / "corrupt.pem"
    corrupt.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    _expect(pki.settings(cert_file=corrupt), "tls.cert_file", str(corrupt), "invalid PEM")
    corrupt_key = tmp_path / "corrupt.key"
    corrupt_key.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    _expect(pki.settings(key_file=corrupt_key), str(corrupt_key), "cannot load")


def test_key_not_matching_certificate(pki: Pki, tmp_path: Path) -> None:
    other = tmp_path / "other.key"
    other.write_bytes(pki.ca.issue_cert(SERVER_NAME).private_key_pem.bytes())
    _expect(pki.settings(key_file=other), "tls.key_file", str(other), "does not match")


def test_encrypted_key(pki: Pki, tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    _expect(pki.settings(key_file=encrypted), "tls.key_file", str(encrypted), "encrypted")


def test_client_ca_file_without_a_ca(pki: Pki, tmp_path: Path) -> None:
    leaf_only = tmp_path / "leaf.pem"
    leaf_only.write_bytes(pki.client.cert_chain_pems[0].bytes())
    _expect(
        pki.settings(client_cert="optional", client_ca_file=leaf_only),
        "tls.client_ca_file",
        str(leaf_only),
        "no CA certificate",
    )


def test_tls12_can_be_enabled_explicitly(pki: Pki) -> None:
    ctx = build_server_context(pki.settings(min_version="1.2"))

    def tls12(c: ssl.SSLContext) -> None:
        c.maximum_version = ssl.TLSVersion.TLSv1_2

    client = memory_handshake(ctx, client_context(pki, configure=tls12), SERVER_NAME)
    assert client.version() == "TLSv1.2"
    cipher = client.cipher()
    assert cipher is not None and cipher[0].startswith("ECDHE-ECDSA-AES")


def test_openssl_helpers_reject_what_openssl_ignores() -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    set_ciphersuites(ctx, ("TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_256_GCM_SHA384"))
    assert tls13_ciphersuites(ctx) == ("TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_256_GCM_SHA384")
    with pytest.raises(ConfigError):
        set_ciphersuites(ctx, ("TLS_AES_256_GCM_SHA384", "NOT_A_SUITE"))
    set_groups(ctx, ("X25519", "P-256"))
    with pytest.raises(ConfigError):
        set_groups(ctx, ("P-257",))


def test_uvicorn_kwargs_and_factory(pki: Pki) -> None:
    kwargs = uvicorn_ssl_kwargs(pki.settings())
    assert kwargs["http"] is TlsHttpToolsProtocol
    assert uvicorn_ssl_kwargs(pki.settings(), http="h11")["http"] is TlsH11Protocol
    factory = kwargs["ssl_context_factory"]
    ctx = factory(None, lambda: ssl.SSLContext())  # type: ignore[arg-type]
    assert ctx is factory.reloader.context
    # Worker processes get the settings and build their own context.
    clone = pickle.loads(pickle.dumps(factory))  # noqa: S301 - our own object
    assert isinstance(clone, TlsContextFactory)
    assert clone.settings == factory.settings
    assert clone.reloader.context is not ctx


def test_other_contexts_in_the_process_are_untouched(pki: Pki) -> None:
    build_server_context(pki.settings())
    outbound = ssl.create_default_context()
    assert set(tls13_ciphersuites(outbound)) == {
        "TLS_AES_256_GCM_SHA384",
        "TLS_AES_128_GCM_SHA256",
        "TLS_CHACHA20_POLY1305_SHA256",
    }
    assert outbound.minimum_version != ssl.TLSVersion.TLSv1_3


def test_client_cert_name_is_rfc4514() -> None:
    from wardgate.tls.uvicorn_tls import _rfc4514

    subject = (
        (("countryName", "DE"),),
        (("organizationName", "Acme, Inc."),),
        (("commonName", " #alice+bob "), ("emailAddress", "a@b.test")),
    )
    assert _rfc4514(subject) == (
        r"CN=\ #alice\+bob\ +1.2.840.113549.1.9.1=a@b.test,O=Acme\, Inc.,C=DE"
    )
    assert _rfc4514(()) is None
