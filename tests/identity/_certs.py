"""Client certificates for the mTLS tests: trustme CAs, leaves built with cryptography
(trustme cannot put a URI SAN into a certificate)."""

from __future__ import annotations

import datetime

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = datetime.datetime(2027, 1, 15, tzinfo=datetime.UTC)


def ca_certificate(ca: trustme.CA) -> x509.Certificate:
    return x509.load_pem_x509_certificate(ca.cert_pem.bytes())


def build_leaf(
    ca: trustme.CA,
    *uris: str,
    dns: tuple[str, ...] = (),
    not_before: datetime.datetime = NOW - datetime.timedelta(days=1),
    not_after: datetime.datetime = NOW + datetime.timedelta(days=1),
    client_auth: bool = True,
    common_name: str | None = None,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A leaf key and certificate signed by ``ca`` with the given URI / DNS SANs."""
    ca_cert = ca_certificate(ca)
    ca_key = load_pem_private_key(ca.private_key_pem.bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in uris]
    names += [x509.DNSName(d) for d in dns]
    subject = (
        x509.NameAttribute(NameOID.COMMON_NAME, common_name)
        if common_name
        else x509.NameAttribute(NameOID.ORGANIZATION_NAME, "wardgate-test")
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([subject]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    eku = [ExtendedKeyUsageOID.CLIENT_AUTH] if client_auth else [ExtendedKeyUsageOID.SERVER_AUTH]
    builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]


def issue(
    ca: trustme.CA,
    *uris: str,
    dns: tuple[str, ...] = (),
    not_before: datetime.datetime = NOW - datetime.timedelta(days=1),
    not_after: datetime.datetime = NOW + datetime.timedelta(days=1),
    client_auth: bool = True,
) -> bytes:
    """A leaf certificate (DER) signed by ``ca`` with the given URI / DNS SANs."""
    _, cert = build_leaf(
        ca, *uris, dns=dns, not_before=not_before, not_after=not_after, client_auth=client_auth
    )
    return cert.public_bytes(Encoding.DER)
