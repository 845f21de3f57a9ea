"""Helpers for the real-TLS tests: PKI files, the echo app, and clients."""

from __future__ import annotations

import dataclasses
import json
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trustme

from wardgate.tls import TlsSettings, peer_certificate_der

SERVER_NAME = "gateway.test"
HTTP_REQUEST = f"GET / HTTP/1.1\r\nHost: {SERVER_NAME}\r\nConnection: close\r\n\r\n".encode()
WAIT = 10.0  # upper bound for every wait in these tests


def leaf_der(leaf: trustme.LeafCert) -> bytes:
    return ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())


def write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


@dataclasses.dataclass
class Pki:
    dir: Path
    ca: trustme.CA
    server: trustme.LeafCert
    client_ca: trustme.CA
    client: trustme.LeafCert
    rogue_ca: trustme.CA
    rogue_client: trustme.LeafCert

    @property
    def ca_file(self) -> Path:
        return self.dir / "ca.pem"

    @property
    def cert_file(self) -> Path:
        return self.dir / "server.crt"

    @property
    def key_file(self) -> Path:
        return self.dir / "server.key"

    @property
    def client_ca_file(self) -> Path:
        return self.dir / "client-ca.pem"

    def client_files(self, leaf: trustme.LeafCert, name: str) -> tuple[Path, Path]:
        cert, key = self.dir / f"{name}.crt", self.dir / f"{name}.key"
        cert.write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
        key.write_bytes(leaf.private_key_pem.bytes())
        return cert, key

    def install_server_cert(self, leaf: trustme.LeafCert) -> None:
        """Put *leaf* in place the way a rotation tool would (write + rename)."""
        write_atomically(self.key_file, leaf.private_key_pem.bytes())
        write_atomically(self.cert_file, b"".join(p.bytes() for p in leaf.cert_chain_pems))

    def settings(self, **overrides: Any) -> TlsSettings:
        values: dict[str, Any] = {
            "cert_file": self.cert_file,
            "key_file": self.key_file,
            "server_names": (SERVER_NAME,),
        }
        values.update(overrides)
        return TlsSettings(**values)


async def echo_tls_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers with what the app can see of the TLS connection."""
    assert scope["type"] == "http"
    tls = scope.get("extensions", {}).get("tls")
    der = peer_certificate_der(scope)
    body = json.dumps({"tls": tls, "peer_der_hex": der.hex() if der else None}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


# ---------------------------------------------------------------------------- clients


class Refused(Exception):
    """The server did not complete a TLS connection + HTTP exchange."""


@dataclasses.dataclass
class Response:
    status: int
    body: dict[str, Any]
    version: str | None
    cipher: str | None
    server_cert_der: bytes


def client_context(
    pki: Pki,
    *,
    check_hostname: bool = True,
    cert: tuple[Path, Path] | None = None,
    configure: Callable[[ssl.SSLContext], None] | None = None,
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca_file))
    ctx.check_hostname = check_hostname
    if cert is not None:
        ctx.load_cert_chain(*cert)
    if configure is not None:
        configure(ctx)
    return ctx


def https_get(
    port: int, ctx: ssl.SSLContext, server_hostname: str | None = SERVER_NAME
) -> Response:
    """One request over a new TLS connection. Raises Refused if the server refuses."""
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=WAIT) as raw,
            ctx.wrap_socket(raw, server_hostname=server_hostname) as tls,
        ):
            version, cipher = tls.version(), tls.cipher()
            server_der = tls.getpeercert(binary_form=True)
            tls.sendall(HTTP_REQUEST)
            chunks = []
            while chunk := tls.recv(65536):
                chunks.append(chunk)
    except ssl.SSLCertVerificationError:
        raise  # the *client* rejected the server: a broken test, not a refusal
    except (ssl.SSLError, OSError) as exc:
        raise Refused(repr(exc)) from exc
    data = b"".join(chunks)
    if not data:
        raise Refused("connection closed without a response")
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return Response(
        status=status,
        body=json.loads(_dechunk(body)),
        version=version,
        cipher=cipher[0] if cipher else None,
        server_cert_der=server_der or b"",
    )


def _dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return out


@dataclasses.dataclass
class SClient:
    returncode: int
    output: str

    @property
    def got_http_response(self) -> bool:
        return "HTTP/1.1 200 OK" in self.output

    @property
    def handshake_failed(self) -> bool:
        return "Cipher is (NONE)" in self.output


def memory_handshake(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, server_hostname: str | None
) -> ssl.SSLObject:
    """A complete in-memory TLS handshake (no sockets); returns the client side."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=server_hostname)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        done = True
        for obj, out, peer_in in ((client, c_out, s_in), (server, s_out, c_in)):
            try:
                obj.do_handshake()
            except ssl.SSLWantReadError:
                done = False
            peer_in.write(out.read())
        if done:
            return client
    raise AssertionError("handshake did not finish")
