"""Client certificates: SPIFFE IDs, trust-bundle checks, RFC 8705 thumbprints."""

from __future__ import annotations

import base64
import datetime
import hashlib

import pytest
import trustme
from cryptography import x509
from hypothesis import given
from hypothesis import strategies as st

from wardgate.errors import AuthenticationFailed, ConfigError
from wardgate.identity import (
    SpiffeVerifier,
    certificate_thumbprint,
    parse_spiffe_id,
    spiffe_id_from_certificate,
)

from ._certs import NOW, ca_certificate, issue

AGENT = "spiffe://example.org/ns/prod/sa/agent"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def other_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def verifier(ca: trustme.CA) -> SpiffeVerifier:
    return SpiffeVerifier({"example.org": [ca_certificate(ca)]}, clock=NOW.timestamp)


def test_a_valid_svid_yields_its_spiffe_id(verifier: SpiffeVerifier, ca: trustme.CA) -> None:
    spiffe_id = verifier.verify(issue(ca, AGENT))
    assert str(spiffe_id) == AGENT
    assert spiffe_id.trust_domain == "example.org"
    assert spiffe_id.path == "/ns/prod/sa/agent"


def test_a_parsed_certificate_object_is_accepted_too(
    verifier: SpiffeVerifier, ca: trustme.CA
) -> None:
    cert = x509.load_der_x509_certificate(issue(ca, AGENT))
    assert str(verifier.verify(cert)) == AGENT


def test_a_certificate_from_another_ca_is_refused(
    verifier: SpiffeVerifier, other_ca: trustme.CA
) -> None:
    with pytest.raises(AuthenticationFailed) as info:
        verifier.verify(issue(other_ca, AGENT))
    assert "does not verify" in info.value.detail


def test_an_expired_certificate_is_refused(verifier: SpiffeVerifier, ca: trustme.CA) -> None:
    old = issue(
        ca,
        AGENT,
        not_before=NOW - datetime.timedelta(days=10),
        not_after=NOW - datetime.timedelta(days=1),
    )
    with pytest.raises(AuthenticationFailed):
        verifier.verify(old)


def test_a_not_yet_valid_certificate_is_refused(verifier: SpiffeVerifier, ca: trustme.CA) -> None:
    future = issue(ca, AGENT, not_before=NOW + datetime.timedelta(days=1),
                   not_after=NOW + datetime.timedelta(days=2))  # fmt: skip
    with pytest.raises(AuthenticationFailed):
        verifier.verify(future)


def test_a_certificate_without_a_spiffe_id_is_refused(
    verifier: SpiffeVerifier, ca: trustme.CA
) -> None:
    plain = ca.issue_cert("client.example.org", not_before=NOW - datetime.timedelta(days=1))
    der = x509.load_pem_x509_certificate(plain.cert_chain_pems[0].bytes())
    with pytest.raises(AuthenticationFailed) as info:
        verifier.verify(der)
    assert "URI SAN" in info.value.detail


def test_two_uri_sans_are_refused(verifier: SpiffeVerifier, ca: trustme.CA) -> None:
    with pytest.raises(AuthenticationFailed):
        verifier.verify(issue(ca, AGENT, "spiffe://example.org/other"))


def test_a_non_spiffe_uri_san_is_refused(verifier: SpiffeVerifier, ca: trustme.CA) -> None:
    with pytest.raises(AuthenticationFailed):
        verifier.verify(issue(ca, "https://example.org/agent"))


def test_a_trust_domain_not_configured_is_refused_even_from_a_trusted_ca(
    verifier: SpiffeVerifier, ca: trustme.CA
) -> None:
    with pytest.raises(AuthenticationFailed) as info:
        verifier.verify(issue(ca, "spiffe://evil.org/agent"))
    assert "not allowed" in info.value.detail


def test_each_trust_domain_is_checked_against_its_own_bundle(
    ca: trustme.CA, other_ca: trustme.CA
) -> None:
    v = SpiffeVerifier(
        {"example.org": [ca_certificate(ca)], "partner.org": [ca_certificate(other_ca)]},
        clock=NOW.timestamp,
    )
    assert str(v.verify(issue(other_ca, "spiffe://partner.org/x"))) == "spiffe://partner.org/x"
    with pytest.raises(AuthenticationFailed):
        v.verify(issue(other_ca, AGENT))  # partner CA speaking for example.org


def test_a_server_only_certificate_is_refused(verifier: SpiffeVerifier, ca: trustme.CA) -> None:
    with pytest.raises(AuthenticationFailed):
        verifier.verify(issue(ca, AGENT, client_auth=False))


def test_garbage_bytes_are_refused(verifier: SpiffeVerifier) -> None:
    with pytest.raises(AuthenticationFailed):
        verifier.verify(b"\x30\x03garbage")


def test_the_x5t_s256_thumbprint_is_sha256_of_the_der(ca: trustme.CA) -> None:
    der = issue(ca, AGENT)
    expected = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()
    assert certificate_thumbprint(der) == expected
    assert certificate_thumbprint(x509.load_der_x509_certificate(der)) == expected
    assert str(spiffe_id_from_certificate(der)) == AGENT


@pytest.mark.parametrize(
    "value",
    [
        "spiffe://example.org",
        "spiffe://example.org/a/b-c_d.e",
        "spiffe://my-domain.example_1.org/x",
    ],
)
def test_valid_spiffe_ids_parse(value: str) -> None:
    assert str(parse_spiffe_id(value)) == value


@pytest.mark.parametrize(
    "value",
    [
        "SPIFFE://example.org/a",
        "spiffe://Example.org/a",
        "spiffe://example.org:8080/a",
        "spiffe://user@example.org/a",
        "spiffe:///a",
        "spiffe://example.org/",
        "spiffe://example.org//a",
        "spiffe://example.org/a/../b",
        "spiffe://example.org/./a",
        "spiffe://example.org/a?x=1",
        "spiffe://example.org/a#f",
        "spiffe://example.org/a%2Fb",
        "spiffe://exa mple.org/a",
        "https://example.org/a",
        "spiffe://example.org/" + "a" * 3000,
    ],
)
def test_invalid_spiffe_ids_are_refused(value: str) -> None:
    with pytest.raises(AuthenticationFailed):
        parse_spiffe_id(value)


@given(st.text(max_size=80))
def test_parse_spiffe_id_either_round_trips_or_refuses(value: str) -> None:
    try:
        parsed = parse_spiffe_id(value)
    except AuthenticationFailed:
        return
    assert str(parsed) == value


def test_bundle_config_is_checked(ca: trustme.CA) -> None:
    with pytest.raises(ConfigError):
        SpiffeVerifier({})
    with pytest.raises(ConfigError):
        SpiffeVerifier({"Bad Domain": [ca_certificate(ca)]})
    with pytest.raises(ConfigError):
        SpiffeVerifier({"example.org": []})
