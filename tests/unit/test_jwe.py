"""JWE bodies: the gateway reads only well-formed ECDH-ES/A256GCM requests addressed to its
key, and answers so that only the requesting client's ephemeral key can read the reply."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, x25519
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from hypothesis import given
from hypothesis import strategies as st
from joserfc import jwe, jwk
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey

from wardgate.edge.jwe import (
    CONTENT_TYPE,
    CTY,
    CurveKey,
    GatewayJweKey,
    JweError,
    ResponseSigner,
    decrypt_request,
    encrypt_response,
)
from wardgate.edge.jwe_client import ClientJwe
from wardgate.errors import ConfigError, ProtocolError

CURVES = ["P-256", "X25519"]
MESSAGE = b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}'
# Hypothesis tests share keys generated once; key generation is not what they exercise.
GATEWAYS = {curve: GatewayJweKey.generate(curve) for curve in CURVES}  # type: ignore[arg-type]
CLIENTS = {curve: ClientJwe(GATEWAYS[curve].public_jwks()) for curve in CURVES}


@pytest.fixture(params=CURVES)
def curve(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def gateway(curve: str) -> GatewayJweKey:
    return GATEWAYS[curve]


@pytest.fixture
def client(curve: str) -> ClientJwe:
    return CLIENTS[curve]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def header_of(token: str) -> dict[str, Any]:
    header: dict[str, Any] = json.loads(unb64(token.split(".")[0]))
    return header


def with_header(token: str, **changes: Any) -> bytes:
    """The token with its protected header edited (the tag no longer matches)."""
    header = header_of(token) | changes
    header = {name: value for name, value in header.items() if value is not None}
    rest = token.split(".")[1:]
    return ".".join([b64(json.dumps(header).encode()), *rest]).encode()


def public_key_of(gateway: GatewayJweKey) -> CurveKey:
    key = jwk.import_key(gateway.public_jwk())
    assert isinstance(key, ECKey | OKPKey)
    return key


def joserfc_request(gateway: GatewayJweKey, *algorithms: str, **header: Any) -> bytes:
    """A request built by plain joserfc, as any standard JOSE client would."""
    protected = {
        "alg": "ECDH-ES",
        "enc": "A256GCM",
        "cty": "application/json",
        "kid": gateway.kid,
    } | header
    allowed = [protected["alg"], protected["enc"], *algorithms]
    token = jwe.encrypt_compact(protected, MESSAGE, public_key_of(gateway), algorithms=allowed)
    return token.encode()


def flip(token: str, segment: int) -> bytes:
    """Change the first character of one segment (the first character has no padding bits)."""
    parts = token.split(".")
    parts[segment] = ("B" if parts[segment][0] == "A" else "A") + parts[segment][1:]
    return ".".join(parts).encode()


def refused(body: bytes, gateway: GatewayJweKey, **kwargs: Any) -> JweError:
    with pytest.raises(JweError) as excinfo:
        decrypt_request(body, gateway, **kwargs)
    assert excinfo.value.code == "wardgate.jwe"
    assert excinfo.value.http_status == 400
    return excinfo.value


# --- round trips -----------------------------------------------------------------------


def test_gateway_decrypts_a_client_request(gateway: GatewayJweKey, client: ClientJwe) -> None:
    token, _ = client.encrypt_request(MESSAGE)
    assert decrypt_request(token.encode(), gateway).plaintext == MESSAGE


def test_client_decrypts_the_gateway_response(gateway: GatewayJweKey, client: ClientJwe) -> None:
    token, ephemeral = client.encrypt_request(MESSAGE)
    request = decrypt_request(token.encode(), gateway)
    response = encrypt_response(b'{"jsonrpc":"2.0","id":1,"result":{}}', request.reply_key)
    assert client.decrypt_response(response, ephemeral) == b'{"jsonrpc":"2.0","id":1,"result":{}}'


def test_request_header_is_the_documented_wire_format(
    gateway: GatewayJweKey, client: ClientJwe, curve: str
) -> None:
    token, ephemeral = client.encrypt_request(MESSAGE)
    header = header_of(token)
    assert set(header) == {"alg", "enc", "cty", "kid", "epk"}
    assert (header["alg"], header["enc"], header["cty"]) == ("ECDH-ES", "A256GCM", CTY)
    assert header["kid"] == gateway.kid
    assert header["epk"]["crv"] == curve
    assert "d" not in header["epk"]
    assert header["epk"] == ephemeral.as_dict(private=False)
    assert token.split(".")[1] == ""  # direct key agreement: no encrypted key
    assert CONTENT_TYPE == "application/jose"


def test_each_response_uses_a_fresh_gateway_ephemeral_key(
    gateway: GatewayJweKey, client: ClientJwe
) -> None:
    token, ephemeral = client.encrypt_request(MESSAGE)
    reply_key = decrypt_request(token.encode(), gateway).reply_key
    first, second = encrypt_response(b"a", reply_key), encrypt_response(b"b", reply_key)
    assert header_of(first)["epk"] != header_of(second)["epk"]
    assert header_of(first)["epk"] != header_of(token)["epk"]
    # SSE: every event's data is its own JWE, each readable with the same ephemeral key.
    assert [client.decrypt_response(t, ephemeral) for t in (first, second)] == [b"a", b"b"]


def test_response_cannot_be_read_with_another_requests_ephemeral_key(
    gateway: GatewayJweKey, client: ClientJwe
) -> None:
    token, _ = client.encrypt_request(MESSAGE)
    _, other_ephemeral = client.encrypt_request(MESSAGE)
    response = encrypt_response(b"secret", decrypt_request(token.encode(), gateway).reply_key)
    with pytest.raises(JweError):
        client.decrypt_response(response, other_ephemeral)


def test_response_cannot_be_read_with_a_key_on_another_curve(
    gateway: GatewayJweKey, client: ClientJwe, curve: str
) -> None:
    token, _ = client.encrypt_request(MESSAGE)
    response = encrypt_response(b"secret", decrypt_request(token.encode(), gateway).reply_key)
    other: CurveKey = (
        OKPKey.generate_key("X25519") if curve == "P-256" else ECKey.generate_key("P-256")
    )
    with pytest.raises(JweError):
        client.decrypt_response(response, other)


def test_a_standard_joserfc_request_is_accepted(gateway: GatewayJweKey) -> None:
    assert decrypt_request(joserfc_request(gateway), gateway).plaintext == MESSAGE


def test_joserfc_alone_decrypts_the_client_helpers_request(curve: str) -> None:
    private: CurveKey = (
        ECKey.generate_key("P-256") if curve == "P-256" else OKPKey.generate_key("X25519")
    )
    client = ClientJwe(GatewayJweKey(private).public_jwk())
    token, _ = client.encrypt_request(MESSAGE)
    result = jwe.decrypt_compact(token, private, algorithms=["ECDH-ES", "A256GCM"])
    assert result.plaintext == MESSAGE


def test_concat_kdf_matches_rfc_7518_appendix_c() -> None:
    from wardgate.edge.jwe_client import (
        _concat_kdf,  # a private helper, checked against the RFC vector
    )

    alice = ECKey.import_key(
        {
            "kty": "EC",
            "crv": "P-256",
            "x": "gI0GAILBdu7T53akrFmMyGcsF3n5dO7MmwNBHKW5SV0",
            "y": "SLW_xSffzlPWrHEVI30DHM_4egVwt3NQqeUD7nMFpps",
            "d": "0_NxaRPUMQoAJt50Gz8YiTr8gRTwyEaCumd-MToTmIo",
        }
    )
    bob = ECKey.import_key(
        {
            "kty": "EC",
            "crv": "P-256",
            "x": "weNJy2HscCSM6AEDTDg04biOvhFhyyWvOHQfeF_PxMQ",
            "y": "e8lnCO-AlStT-NJVX-crhB7QRYhiix03illJOVAOyck",
        }
    )
    z = alice.exchange_derive_key(bob)
    derived = _concat_kdf(z, "A128GCM", 128, apu=b"Alice", apv=b"Bob")
    assert b64(derived) == "VqqN6vgjbSBcIijNcacQGg"


@given(payload=st.binary(max_size=4096), curve=st.sampled_from(CURVES))
def test_any_payload_round_trips_both_ways(payload: bytes, curve: str) -> None:
    gateway, client = GATEWAYS[curve], CLIENTS[curve]
    token, ephemeral = client.encrypt_request(payload)
    request = decrypt_request(token.encode(), gateway)
    assert request.plaintext == payload
    assert client.decrypt_response(encrypt_response(payload, request.reply_key), ephemeral) == (
        payload
    )


# --- refusals --------------------------------------------------------------------------


def test_jwe_error_is_a_protocol_error() -> None:
    assert issubclass(JweError, ProtocolError)


@pytest.mark.parametrize(
    ("alg", "enc"),
    [("ECDH-ES", "A128GCM"), ("ECDH-ES", "A256CBC-HS512"), ("ECDH-ES+A256KW", "A256GCM")],
)
def test_other_algorithms_from_a_real_jose_client_are_refused(
    gateway: GatewayJweKey, alg: str, enc: str
) -> None:
    refused(joserfc_request(gateway, alg=alg, enc=enc), gateway)


def test_dir_is_refused(gateway: GatewayJweKey) -> None:
    shared = OctKey.generate_key(256)
    header = {"alg": "dir", "enc": "A256GCM", "cty": "application/json", "kid": gateway.kid}
    token = jwe.encrypt_compact(header, MESSAGE, shared, algorithms=["dir", "A256GCM"])
    refused(token.encode(), gateway)


def test_rsa1_5_is_refused(gateway: GatewayJweKey) -> None:
    rsa_key = RSAKey.generate_key(2048)
    header = {"alg": "RSA1_5", "enc": "A256GCM", "cty": "application/json", "kid": gateway.kid}
    with pytest.warns(SecurityWarning):  # joserfc rightly flags RSA1_5 as deprecated
        token = jwe.encrypt_compact(header, MESSAGE, rsa_key, algorithms=["RSA1_5", "A256GCM"])
    refused(token.encode(), gateway)


@pytest.mark.parametrize(
    "changes",
    [
        {"alg": "none"},
        {"alg": "dir"},
        {"alg": "RSA1_5"},
        {"alg": "ECDH-ES+A128KW"},
        {"alg": None},
        {"enc": "A128GCM"},
        {"enc": "none"},
        {"enc": None},
        {"cty": "text/plain"},
        {"cty": None},
        {"crit": ["exp"], "exp": 1},
        {"jku": "https://attacker.example/jwks"},
        {"kid": None},
    ],
    ids=str,
)
def test_header_edits_are_refused(
    gateway: GatewayJweKey, client: ClientJwe, changes: dict[str, Any]
) -> None:
    token, _ = client.encrypt_request(MESSAGE)
    refused(with_header(token, **changes), gateway)


def test_a_zip_header_is_refused_even_when_the_token_is_valid(gateway: GatewayJweKey) -> None:
    refused(joserfc_request(gateway, "DEF", zip="DEF"), gateway)


def test_a_valid_token_for_another_kid_is_refused(gateway: GatewayJweKey) -> None:
    refused(joserfc_request(gateway, kid="some-other-key"), gateway)


def test_a_request_to_another_gateway_key_is_refused(gateway: GatewayJweKey, curve: str) -> None:
    other = ClientJwe(GatewayJweKey.generate(curve).public_jwk())  # type: ignore[arg-type]
    token, _ = other.encrypt_request(MESSAGE)
    refused(token.encode(), gateway)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not a jwe",
        b"a.b.c.d",
        b"a.b.c.d.e.f",
        b"....",
        "ey\u00e9.a.b.c.d".encode(),
        b"eyJhbGciOiJ9.a.b.c.d",  # header is not JSON
        b64(b"[1,2]").encode() + b"..AAAAAAAAAAAAAAAA.AA.AAAAAAAAAAAAAAAAAAAAAA",  # not an object
    ],
    ids=repr,
)
def test_malformed_compact_forms_are_refused(gateway: GatewayJweKey, body: bytes) -> None:
    refused(body, gateway)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda parts: [*parts[:1], "AAAA", *parts[2:]],  # an encrypted key appears
        lambda parts: [*parts[:2], parts[2] + "AAAA", *parts[3:]],  # 15-byte IV
        lambda parts: [*parts[:4], parts[4][:-4]],  # truncated tag
        lambda parts: [*parts[:3], parts[3] + "!", parts[4]],  # not base64url
        lambda parts: [*parts[:3], parts[3] + "==", parts[4]],  # padded
        lambda parts: [p + " " for p in parts],  # whitespace
    ],
    ids=["encrypted-key", "iv-length", "tag-length", "alphabet", "padding", "whitespace"],
)
def test_bad_segments_are_refused(gateway: GatewayJweKey, client: ClientJwe, mangle: Any) -> None:
    token, _ = client.encrypt_request(MESSAGE)
    refused(".".join(mangle(token.split("."))).encode(), gateway)


def test_a_repeated_header_member_is_refused(gateway: GatewayJweKey, client: ClientJwe) -> None:
    token, _ = client.encrypt_request(MESSAGE)
    raw = unb64(token.split(".")[0]).replace(b'"alg":"ECDH-ES"', b'"alg":"ECDH-ES","alg":"dir"')
    refused(".".join([b64(raw), *token.split(".")[1:]]).encode(), gateway)


@pytest.mark.parametrize(("segment", "name"), [(2, "iv"), (3, "ciphertext"), (4, "tag")])
def test_tampered_tokens_are_refused(
    gateway: GatewayJweKey, client: ClientJwe, segment: int, name: str
) -> None:
    token, _ = client.encrypt_request(MESSAGE)
    refused(flip(token, segment), gateway)


def test_a_tampered_protected_header_is_refused(gateway: GatewayJweKey, client: ClientJwe) -> None:
    token, _ = client.encrypt_request(MESSAGE)
    refused(with_header(token, apu=b64(b"mallory")), gateway)  # an allowed member, bad tag


def test_a_body_over_the_limit_is_refused(gateway: GatewayJweKey, client: ClientJwe) -> None:
    token, _ = client.encrypt_request(MESSAGE)
    body = token.encode()
    assert decrypt_request(body, gateway, max_bytes=len(body)).plaintext == MESSAGE
    refused(body, gateway, max_bytes=len(body) - 1)


def test_the_default_limit_applies(gateway: GatewayJweKey, client: ClientJwe) -> None:
    token, _ = client.encrypt_request(b"x" * (5 * 1024 * 1024))
    refused(token.encode(), gateway)


WRONG_CURVES = [
    (gateway_curve, epk_curve)
    for gateway_curve in CURVES
    for epk_curve in ["P-256", "P-384", "X25519", "X448"]
    if epk_curve != gateway_curve
]


@pytest.mark.parametrize(("curve", "epk_curve"), WRONG_CURVES)
def test_an_epk_on_the_wrong_curve_is_refused(
    gateway: GatewayJweKey, client: ClientJwe, epk_curve: str
) -> None:
    key = (
        ECKey.generate_key(epk_curve)
        if epk_curve.startswith("P-")
        else OKPKey.generate_key(epk_curve)  # type: ignore[arg-type]
    )
    token, _ = client.encrypt_request(MESSAGE)
    refused(with_header(token, epk=key.as_dict(private=False)), gateway)


def test_a_p256_epk_not_on_the_curve_is_refused() -> None:
    gateway, client = GATEWAYS["P-256"], CLIENTS["P-256"]
    token, _ = client.encrypt_request(MESSAGE)
    epk = header_of(token)["epk"]
    y = bytearray(unb64(epk["y"]))
    y[-1] ^= 1  # for a given x only y and p - y lie on the curve
    error = refused(with_header(token, epk=epk | {"y": b64(bytes(y))}), gateway)
    assert isinstance(error.__cause__, ValueError)  # cryptography refused the point


def test_a_p256_epk_with_a_coordinate_beyond_the_field_is_refused() -> None:
    gateway, client = GATEWAYS["P-256"], CLIENTS["P-256"]
    token, _ = client.encrypt_request(MESSAGE)
    epk = header_of(token)["epk"] | {"x": b64(b"\xff" * 32)}
    refused(with_header(token, epk=epk), gateway)


@pytest.mark.parametrize(
    "x", [b"\x00" * 32, b"\x01" + b"\x00" * 31, b"\x00" * 31], ids=["zero", "one", "short"]
)
def test_a_degenerate_x25519_epk_is_refused(x: bytes) -> None:
    gateway, client = GATEWAYS["X25519"], CLIENTS["X25519"]
    token, _ = client.encrypt_request(MESSAGE)
    refused(with_header(token, epk={"kty": "OKP", "crv": "X25519", "x": b64(x)}), gateway)


@given(st.binary(max_size=512))
def test_arbitrary_bytes_only_ever_raise_jwe_error(body: bytes) -> None:
    with pytest.raises(JweError):
        decrypt_request(body, GATEWAYS["P-256"])


@given(data=st.data(), curve=st.sampled_from(CURVES))
def test_any_one_character_edit_is_refused_or_harmless(data: st.DataObject, curve: str) -> None:
    token, _ = CLIENTS[curve].encrypt_request(MESSAGE)
    index = data.draw(st.integers(0, len(token) - 1))
    char = data.draw(st.sampled_from("AB_-.=!e0"))
    edited = (token[:index] + char + token[index + 1 :]).encode()
    try:
        plaintext = decrypt_request(edited, GATEWAYS[curve]).plaintext
    except JweError:
        return
    # Only an edit to a segment's unused trailing bits can decode to the same bytes.
    assert plaintext == MESSAGE


def test_the_client_refuses_a_compressed_response(curve: str, client: ClientJwe) -> None:
    _, ephemeral = client.encrypt_request(MESSAGE)
    public = jwk.import_key(ephemeral.as_dict(private=False))
    header = {"alg": "ECDH-ES", "enc": "A256GCM", "cty": "application/json", "zip": "DEF"}
    response = jwe.encrypt_compact(header, b"x", public, algorithms=["ECDH-ES", "A256GCM", "DEF"])
    with pytest.raises(JweError):
        client.decrypt_response(response, ephemeral)


def test_the_client_enforces_its_response_limit(gateway: GatewayJweKey, client: ClientJwe) -> None:
    token, ephemeral = client.encrypt_request(MESSAGE)
    response = encrypt_response(b"x" * 100, decrypt_request(token.encode(), gateway).reply_key)
    with pytest.raises(JweError):
        client.decrypt_response(response, ephemeral, max_bytes=len(response) - 1)


# --- keys ------------------------------------------------------------------------------


def test_public_jwks_publishes_the_encryption_and_the_signing_key(
    gateway: GatewayJweKey, curve: str
) -> None:
    jwks = gateway.public_jwks()
    key, signing = jwks["keys"]
    assert key["use"] == "enc"
    assert key["alg"] == "ECDH-ES"
    assert key["crv"] == curve
    assert "d" not in key and "d" not in signing
    assert key["kid"] == jwk.import_key(key).thumbprint() == gateway.kid
    assert (signing["use"], signing["alg"], signing["crv"]) == ("sig", "ES256", "P-256")
    assert signing["kid"] == jwk.import_key(signing).thumbprint() != gateway.kid
    json.dumps(jwks)  # publishable as is


def test_the_repr_never_shows_key_material(gateway: GatewayJweKey, curve: str) -> None:
    token, _ = ClientJwe(gateway.public_jwk()).encrypt_request(b"top secret")
    request = decrypt_request(token.encode(), gateway)
    text = repr(gateway) + repr(request)
    assert gateway.kid in text
    assert "top secret" not in text
    assert gateway.public_jwk()["x"] not in text


def write_pem(path: Path, private: Any, fmt: PrivateFormat = PrivateFormat.PKCS8) -> Path:
    path.write_bytes(private.private_bytes(Encoding.PEM, fmt, NoEncryption()))
    return path


@pytest.mark.parametrize(
    ("private", "fmt"),
    [
        (ec.generate_private_key(ec.SECP256R1()), PrivateFormat.PKCS8),
        (ec.generate_private_key(ec.SECP256R1()), PrivateFormat.TraditionalOpenSSL),
        (x25519.X25519PrivateKey.generate(), PrivateFormat.PKCS8),
    ],
    ids=["p256-pkcs8", "p256-sec1", "x25519"],
)
def test_load_reads_a_pem_private_key(tmp_path: Path, private: Any, fmt: PrivateFormat) -> None:
    key = GatewayJweKey.load(write_pem(tmp_path / "jwe.pem", private, fmt))
    public = private.public_key()
    expected = OKPKey.import_key(public) if key.curve == "X25519" else ECKey.import_key(public)
    assert key.kid == expected.thumbprint()
    token, _ = ClientJwe(key.public_jwk()).encrypt_request(MESSAGE)
    assert decrypt_request(token.encode(), key).plaintext == MESSAGE


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(lambda: None, id="missing"),
        pytest.param(lambda: b"not a key", id="garbage"),
        pytest.param(
            lambda: (
                ec.generate_private_key(ec.SECP256R1())
                .public_key()
                .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
            ),
            id="public-key",
        ),
        pytest.param(
            lambda: ec.generate_private_key(ec.SECP256R1()).private_bytes(
                Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(b"pw")
            ),
            id="encrypted",
        ),
        pytest.param(
            lambda: ec.generate_private_key(ec.SECP384R1()).private_bytes(
                Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
            ),
            id="p384",
        ),
        pytest.param(
            lambda: ed25519.Ed25519PrivateKey.generate().private_bytes(
                Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
            ),
            id="ed25519",
        ),
        pytest.param(
            lambda: rsa.generate_private_key(65537, 2048).private_bytes(
                Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
            ),
            id="rsa",
        ),
    ],
)
def test_load_failures_are_config_errors_naming_the_file(tmp_path: Path, content: Any) -> None:
    path = tmp_path / "gateway-jwe.pem"
    data = content()
    if data is not None:
        path.write_bytes(data)
    with pytest.raises(ConfigError) as excinfo:
        GatewayJweKey.load(path)
    assert excinfo.value.code == "wardgate.config"
    assert str(path) in excinfo.value.detail


def test_a_public_key_cannot_be_the_gateway_key() -> None:
    with pytest.raises(ConfigError):
        GatewayJweKey(ECKey.generate_key("P-256", private=False))


@pytest.mark.parametrize(
    "edit",
    [
        {"use": "sig"},
        {"alg": "RSA-OAEP"},
        {"crv": "P-384"},
        {"kty": "oct"},
        {"x": None},
    ],
    ids=str,
)
def test_the_client_refuses_an_unsuitable_gateway_jwk(edit: dict[str, Any]) -> None:
    public = GATEWAYS["P-256"].public_jwk() | edit
    with pytest.raises(JweError):
        ClientJwe({name: value for name, value in public.items() if value is not None})


def test_the_client_refuses_a_gateway_jwk_off_the_curve() -> None:
    public = GATEWAYS["P-256"].public_jwk()
    y = bytearray(unb64(public["y"]))
    y[-1] ^= 1
    with pytest.raises(JweError):
        ClientJwe(public | {"y": b64(bytes(y))})


def test_the_client_refuses_an_rsa_gateway_jwk() -> None:
    with pytest.raises(JweError):
        ClientJwe(RSAKey.generate_key(2048).as_dict(private=False))


# --- integrity: responses are signed by the gateway, then encrypted ---------------------


def forged_response(epk_holder: CurveKey, payload: bytes, cty: str = "JOSE") -> str:
    """What an intermediary that saw the request's ``epk`` can make: a valid JWE to it."""
    public = epk_holder.as_dict(private=False)
    names = ("kty", "crv", "x") if public["kty"] == "OKP" else ("kty", "crv", "x", "y")
    target = jwk.import_key({n: public[n] for n in names})
    header = {"alg": "ECDH-ES", "enc": "A256GCM", "cty": cty}
    return jwe.encrypt_compact(header, payload, target, algorithms=["ECDH-ES", "A256GCM"])


def test_an_intermediary_cannot_forge_a_response(gateway: GatewayJweKey, client: ClientJwe) -> None:
    token, ephemeral = client.encrypt_request(MESSAGE)
    reply_key = decrypt_request(token.encode(), gateway).reply_key
    forged = b'{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"pwned"}]}}'
    # Unsigned plaintext, the old wire format:
    with pytest.raises(JweError):
        client.decrypt_response(forged_response(ephemeral, forged, cty=CTY), ephemeral)
    # Signed, but by a key of the intermediary's own:
    mallory = ResponseSigner(ECKey.generate_key("P-256"))
    signed = mallory.sign(forged, ephemeral.thumbprint()).encode()
    with pytest.raises(JweError):
        client.decrypt_response(forged_response(ephemeral, signed), ephemeral)
    # Beside them, the gateway's real answer to the same request verifies.
    real = encrypt_response(b'{"jsonrpc":"2.0","id":1,"result":{}}', reply_key)
    assert client.decrypt_response(real, ephemeral) == b'{"jsonrpc":"2.0","id":1,"result":{}}'


def test_a_signed_response_for_another_request_is_refused(
    gateway: GatewayJweKey, client: ClientJwe
) -> None:
    """A genuine signature replayed onto another request (re-encrypted to its epk)."""
    first, first_ephemeral = client.encrypt_request(MESSAGE)
    _, second_ephemeral = client.encrypt_request(MESSAGE)
    genuine = gateway.signer.sign(b'{"result":"for the first"}', first_ephemeral.thumbprint())
    replayed = forged_response(second_ephemeral, genuine.encode())
    with pytest.raises(JweError):
        client.decrypt_response(replayed, second_ephemeral)
    # Where it belongs it is accepted.
    assert client.decrypt_response(
        forged_response(first_ephemeral, genuine.encode()), first_ephemeral
    )
    assert decrypt_request(first.encode(), gateway).plaintext == MESSAGE


def test_the_response_header_is_the_documented_wire_format(
    gateway: GatewayJweKey, client: ClientJwe
) -> None:
    token, ephemeral = client.encrypt_request(MESSAGE)
    response = encrypt_response(b"{}", decrypt_request(token.encode(), gateway).reply_key)
    outer = header_of(response)
    assert (outer["alg"], outer["enc"], outer["cty"]) == ("ECDH-ES", "A256GCM", "JOSE")
    inner_compact = jwe.decrypt_compact(response, ephemeral, algorithms=["ECDH-ES", "A256GCM"])
    assert inner_compact.plaintext is not None
    inner = header_of(inner_compact.plaintext.decode())
    assert inner == {
        "alg": "ES256",
        "kid": gateway.signer.kid,
        "typ": "wardgate-response+jws",
        "cty": "application/json",
        "wg_rkt": ephemeral.thumbprint(),
    }


def test_a_client_without_the_signing_key_refuses_to_trust_responses(
    gateway: GatewayJweKey,
) -> None:
    unverifying = ClientJwe(gateway.public_jwk())
    token, ephemeral = unverifying.encrypt_request(MESSAGE)
    response = encrypt_response(b"{}", decrypt_request(token.encode(), gateway).reply_key)
    with pytest.raises(JweError):
        unverifying.decrypt_response(response, ephemeral)
    verifying = ClientJwe(gateway.public_jwk(), gateway.signer.public_jwk())
    assert verifying.decrypt_response(response, ephemeral) == b"{}"


def _pem(private: Any) -> bytes:
    pem: bytes = private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    return pem


def test_the_derived_signing_key_is_the_same_for_every_replica(tmp_path: Path) -> None:
    path = tmp_path / "jwe.pem"
    path.write_bytes(_pem(ec.generate_private_key(ec.SECP256R1())))
    one, two = GatewayJweKey.load(path), GatewayJweKey.load(path)
    assert one.signer.kid == two.signer.kid
    assert one.signer.kid != one.kid  # never the agreement key itself
    assert GatewayJweKey.generate().signer.kid != one.signer.kid


@pytest.mark.parametrize("kind", ["ed25519", "p256"])
def test_a_configured_signing_key_signs_responses(tmp_path: Path, kind: str) -> None:
    (tmp_path / "jwe.pem").write_bytes(_pem(ec.generate_private_key(ec.SECP256R1())))
    private = (
        ed25519.Ed25519PrivateKey.generate()
        if kind == "ed25519"
        else ec.generate_private_key(ec.SECP256R1())
    )
    (tmp_path / "sig.pem").write_bytes(_pem(private))
    gateway = GatewayJweKey.load(tmp_path / "jwe.pem", tmp_path / "sig.pem")
    assert gateway.signer.alg == ("EdDSA" if kind == "ed25519" else "ES256")
    client = ClientJwe(gateway.public_jwks())
    token, ephemeral = client.encrypt_request(MESSAGE)
    response = encrypt_response(b"{}", decrypt_request(token.encode(), gateway).reply_key)
    assert client.decrypt_response(response, ephemeral) == b"{}"


def test_a_signing_key_of_the_wrong_kind_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "jwe.pem").write_bytes(_pem(ec.generate_private_key(ec.SECP256R1())))
    (tmp_path / "x.pem").write_bytes(_pem(x25519.X25519PrivateKey.generate()))
    with pytest.raises(ConfigError):
        GatewayJweKey.load(tmp_path / "jwe.pem", tmp_path / "x.pem")
