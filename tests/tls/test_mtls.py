"""Client certificates: verified against the configured CA, visible to the app."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from .conftest import RunningServer
from .helpers import Pki, Refused, SClient, client_context, https_get, leaf_der

Serve = Callable[..., RunningServer]
SClientRun = Callable[..., SClient]

ALICE_NAME = re.compile(r"^CN=alice,OU=Testing cert #[^,]+,O=trustme v[0-9.]+$")


def test_required_client_certificate(serve: Serve, pki: Pki, s_client: SClientRun) -> None:
    server = serve(pki.settings(client_cert="required", client_ca_file=pki.client_ca_file))
    good = pki.client_files(pki.client, "alice")
    rogue = pki.client_files(pki.rogue_client, "mallory")

    with pytest.raises(Refused):
        https_get(server.port, client_context(pki))
    with pytest.raises(Refused):
        https_get(server.port, client_context(pki, cert=rogue))

    response = https_get(server.port, client_context(pki, cert=good))
    assert response.status == 200
    assert response.body["peer_der_hex"] == leaf_der(pki.client).hex()
    tls = response.body["tls"]
    assert ALICE_NAME.match(tls["client_cert_name"]), tls["client_cert_name"]
    assert tls["client_cert_error"] is None
    assert len(tls["client_cert_chain"]) == 1

    assert not s_client(server.port).got_http_response
    cert_args = ("-cert", str(rogue[0]), "-key", str(rogue[1]))
    assert not s_client(server.port, *cert_args).got_http_response
    result = s_client(server.port, "-cert", str(good[0]), "-key", str(good[1]))
    assert result.got_http_response, result.output
    assert leaf_der(pki.client).hex() in result.output


def test_optional_client_certificate(serve: Serve, pki: Pki) -> None:
    server = serve(pki.settings(client_cert="optional", client_ca_file=pki.client_ca_file))
    good = pki.client_files(pki.client, "alice")
    rogue = pki.client_files(pki.rogue_client, "mallory")

    anonymous = https_get(server.port, client_context(pki))
    assert anonymous.status == 200
    assert anonymous.body["tls"]["client_cert_chain"] == []
    assert anonymous.body["peer_der_hex"] is None

    # A presented certificate must still verify.
    with pytest.raises(Refused):
        https_get(server.port, client_context(pki, cert=rogue))

    response = https_get(server.port, client_context(pki, cert=good))
    assert response.body["peer_der_hex"] == leaf_der(pki.client).hex()


def test_client_ca_bundle_is_reloaded(serve: Serve, pki: Pki) -> None:
    server = serve(
        pki.settings(
            client_cert="required",
            client_ca_file=pki.client_ca_file,
            reload_interval_seconds=0,
        )
    )
    rogue = pki.client_files(pki.rogue_client, "mallory")
    with pytest.raises(Refused):
        https_get(server.port, client_context(pki, cert=rogue))
    pki.rogue_ca.cert_pem.write_to_path(str(pki.client_ca_file))
    assert https_get(server.port, client_context(pki, cert=rogue)).status == 200
