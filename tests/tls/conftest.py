"""Real-TLS fixtures: trustme PKI, a uvicorn server in a thread, openssl s_client."""

from __future__ import annotations

import dataclasses
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme
import uvicorn

from wardgate.tls import TlsSettings, uvicorn_ssl_kwargs

from .helpers import HTTP_REQUEST, SERVER_NAME, WAIT, Pki, SClient, echo_tls_app


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = trustme.CA()
    # The certificate also covers other.test, which is *not* a configured server name.
    server = ca.issue_cert(SERVER_NAME, "other.test")
    client_ca = trustme.CA()
    rogue_ca = trustme.CA()
    pki = Pki(
        dir=tmp_path,
        ca=ca,
        server=server,
        client_ca=client_ca,
        client=client_ca.issue_cert("alice@example.test", common_name="alice"),
        rogue_ca=rogue_ca,
        rogue_client=rogue_ca.issue_cert("mallory@example.test", common_name="alice"),
    )
    ca.cert_pem.write_to_path(str(pki.ca_file))
    client_ca.cert_pem.write_to_path(str(pki.client_ca_file))
    pki.install_server_cert(server)
    return pki


@dataclasses.dataclass
class RunningServer:
    port: int
    server: uvicorn.Server


# (event loop, HTTP implementation): uvloop+httptools is uvicorn's "auto" choice.
SERVER_FLAVOURS = [("uvloop", "httptools"), ("asyncio", "h11")]


@pytest.fixture(params=SERVER_FLAVOURS, ids=lambda p: f"{p[0]}-{p[1]}")
def flavour(request: pytest.FixtureRequest) -> tuple[str, str]:
    value: tuple[str, str] = request.param
    return value


@pytest.fixture
def serve(flavour: tuple[str, str]) -> Iterator[Callable[[TlsSettings], RunningServer]]:
    """Start a real uvicorn server on 127.0.0.1:<free port> with the given TLS settings."""
    loop, http = flavour
    started: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(settings: TlsSettings) -> RunningServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            echo_tls_app,
            loop=loop,
            lifespan="off",
            log_level="warning",
            access_log=False,
            **uvicorn_ssl_kwargs(settings, http="h11" if http == "h11" else "httptools"),
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        started.append((server, thread))
        deadline = time.monotonic() + WAIT
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return RunningServer(port=port, server=server)

    yield start

    for server, _ in started:
        server.should_exit = True
    for _, thread in started:
        thread.join(WAIT)
        assert not thread.is_alive(), "uvicorn did not stop"


@pytest.fixture(scope="session")
def openssl_bin() -> str:
    path = shutil.which("openssl")
    if path is None:
        pytest.skip("openssl command-line tool not installed")
    return path


@pytest.fixture
def s_client(openssl_bin: str, pki: Pki) -> Callable[..., SClient]:
    def run(port: int, *args: str, servername: str | None = SERVER_NAME) -> SClient:
        cmd = [
            openssl_bin,
            "s_client",
            "-connect",
            f"127.0.0.1:{port}",
            "-CAfile",
            str(pki.ca_file),
            "-verify_return_error",
            "-ign_eof",
        ]
        cmd += ["-servername", servername] if servername else ["-noservername"]
        cmd += list(args)
        proc = subprocess.run(
            cmd, input=HTTP_REQUEST, capture_output=True, timeout=2 * WAIT, check=False
        )
        return SClient(proc.returncode, proc.stdout.decode() + proc.stderr.decode())

    return run
