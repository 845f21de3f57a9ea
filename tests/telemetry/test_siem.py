"""SIEM forwarding: a real rsyslog receives RFC 5424 over TCP, TLS and UDP; an HTTP
endpoint that goes down and comes back loses nothing (the disk spool); no value can forge
a record."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from support.servers import free_port, wait_port
from wardgate.config.telemetry import SinkConfig
from wardgate.errors import ConfigError
from wardgate.telemetry.events import AuthFailed, GuardDecision
from wardgate.telemetry.siem import build_forwarder, formats

RSYSLOGD = shutil.which("rsyslogd") or (
    "/usr/sbin/rsyslogd" if Path("/usr/sbin/rsyslogd").exists() else None
)
EVIL = 'x\r\n<13>1 2026-01-01T00:00:00Z forged - - - - fake\u2028\u2029\u0085\x1b[31mred\x00"]|=\\'


def _denial(i: int, reason: str = "denied by rule") -> GuardDecision:
    return GuardDecision(
        f"d{i:04d}", "main", "tool_access", "tools/call", f"t{i}", "alice", False,
        "wardgate.denied", reason,
    )  # fmt: skip


async def _until(predicate: Any, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached in time")
        await asyncio.sleep(0.05)  # bounded poll of an outside process or server


# -- the encodings ---------------------------------------------------------------------


@pytest.mark.parametrize("char", ["\r", "\n", "\u2028", "\u2029", "\u0085", "\x1b", "\x00", "\x7f"])
def test_every_format_neutralises_line_breaking_and_control_characters(char: str) -> None:
    record = formats.sanitize(
        {"kind": "auth.failed", "cause": f"a{char}b", "ts": 1.0, "subject": char}
    )
    outputs = [
        formats.rfc5424(record),
        formats.cef(record).encode(),
        formats.hec([record]),
        formats.loki([record]),
        formats.ecs_bulk([record], index="i").replace(b"}\n", b"}"),  # NDJSON's own
        formats.datadog([record]),
        formats.webhook([record]),
    ]
    for out in outputs:
        assert char.encode() not in out
        assert "\u2028".encode() not in out and "\u0085".encode() not in out
    assert formats.ecs_bulk([record], index="i").count(b"\n") == 2  # action + doc


def test_cef_and_syslog_structured_data_escape_their_delimiters() -> None:
    record = formats.sanitize({"kind": "x|y", "subject": 'a"b]c', "reason": "k=v\\", "ts": 0.0})
    line = formats.cef(record)
    assert "CEF:0|Wardgate|wardgate|0.1.0|x\\|y|x\\|y|" in line
    assert "reason=k\\=v\\\\" in line
    syslog = formats.rfc5424(record).decode()
    assert 'subject="a\\"b\\]c"' in syslog


def test_webhook_signature_is_hmac_sha256_over_time_and_body() -> None:
    body = formats.webhook([{"kind": "k"}])
    sig = formats.webhook_signature(b"s3cret", body, 1700000000)
    expected = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sig == f"t=1700000000,v1={expected}"


def test_loopback_destinations_are_refused_unless_allowed() -> None:
    with pytest.raises(ConfigError):
        build_forwarder(
            SinkConfig(type="loki", name="l", url="http://127.0.0.1:9/loki/api/v1/push")
        )
    with pytest.raises(ConfigError):
        build_forwarder(
            SinkConfig(type="loki", name="l", url="http://169.254.169.254/x", allow_loopback=True)
        )
    build_forwarder(
        SinkConfig(
            type="loki", name="l", url="http://127.0.0.1:9/loki/api/v1/push", allow_loopback=True
        )
    )


# -- a real rsyslog ------------------------------------------------------------------------


@contextlib.contextmanager
def _run_rsyslog(
    tmp_path: Path, module: str, input_type: str = "imtcp"
) -> Iterator[tuple[int, Path]]:
    if RSYSLOGD is None:
        pytest.skip("rsyslog (Debian) not installed")
    port = free_port()
    out = tmp_path / "received.log"
    work = tmp_path / "work"
    work.mkdir()
    conf = tmp_path / "rsyslog.conf"
    conf.write_text(
        module.replace("WORK", str(work))
        + f'input(type="{input_type}" port="{port}" address="127.0.0.1" ruleset="wg")\n'
        'template(name="raw" type="string" string="%rawmsg%\\n")\n'
        f'ruleset(name="wg") {{ action(type="omfile" file="{out}" template="raw") }}\n'
    )
    proc = subprocess.Popen(
        [RSYSLOGD, "-n", "-f", str(conf), "-i", str(tmp_path / "rsyslog.pid")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        if input_type == "imtcp":
            wait_port(port, 20, proc)  # (UDP has no handshake: the test probes instead)
        yield port, out
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    with _run_rsyslog(tmp_path, 'global(workDirectory="WORK")\nmodule(load="imtcp")\n') as found:
        yield found


async def test_rsyslog_receives_rfc5424_over_tcp_one_line_per_record(
    rsyslog: tuple[int, Path],
) -> None:
    port, out = rsyslog
    fwd = build_forwarder(
        SinkConfig(type="syslog", name="rs", host="127.0.0.1", port=port, allow_loopback=True)
    )
    await fwd.start()
    for i in range(5):
        fwd.emit(_denial(i))
    fwd.emit(AuthFailed("evil", "main", EVIL, "127.0.0.1"))
    await fwd.aclose()
    assert fwd.delivered == 6 and fwd.dropped == 0

    def lines() -> list[str]:
        return out.read_text().splitlines() if out.exists() else []

    await _until(lambda: len(lines()) >= 6)
    got = lines()
    assert len(got) == 6  # the forged record inside EVIL did not become a seventh
    first = got[0]
    assert first.startswith("<108>1 ")  # facility 13 (log audit) * 8 + warning (4)
    assert '[wardgate@32473 decision_id="d0000" route="main" subject="alice"' in first
    assert " guard.decision " in first
    evil_line = got[5]
    assert "forged" in evil_line and evil_line.startswith("<")
    assert "\x1b" not in evil_line and "\r" not in evil_line


async def test_rsyslog_receives_rfc5424_over_udp_one_datagram_per_record(
    tmp_path: Path,
) -> None:
    import socket

    module = 'global(workDirectory="WORK")\nmodule(load="imudp")\n'
    with _run_rsyslog(tmp_path, module, "imudp") as (port, out):

        def lines() -> list[str]:
            return out.read_text().splitlines() if out.exists() else []

        # UDP has no handshake: probe until rsyslog has written one probe (bounded).
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            deadline = time.monotonic() + 20
            while not any("wg-probe" in line for line in lines()):
                if time.monotonic() > deadline:
                    pytest.fail("rsyslog never received a UDP probe")
                probe.sendto(b"<13>1 - - - - wg-probe - ready", ("127.0.0.1", port))
                await asyncio.sleep(0.05)  # bounded poll of an outside process
        fwd = build_forwarder(
            SinkConfig(type="syslog", name="udp", host="127.0.0.1", port=port, protocol="udp",
                       allow_loopback=True)
        )  # fmt: skip
        await fwd.start()
        for i in range(5):
            fwd.emit(_denial(i))
        fwd.emit(AuthFailed("evil", "main", EVIL, "127.0.0.1"))
        await fwd.aclose()
        assert fwd.delivered == 6 and fwd.dropped == 0

        def records() -> list[str]:
            return [line for line in lines() if "wg-probe" not in line]

        await _until(lambda: len(records()) >= 6)
        got = records()
    assert len(got) == 6  # the forged record inside EVIL did not become a seventh
    assert all(line.startswith("<108>1 ") for line in got[:5])
    assert [line.count('decision_id="d000') for line in got[:5]] == [1] * 5
    assert '[wardgate@32473 decision_id="d0000" route="main" subject="alice"' in got[0]
    evil_line = got[5]
    assert "forged" in evil_line and evil_line.startswith("<")
    assert "\x1b" not in evil_line and "\r" not in evil_line


# -- an HTTP sink that goes down and comes back --------------------------------------------


class Endpoint:
    def __init__(self, secret: bytes) -> None:
        self.port = free_port()
        self.received: list[dict[str, Any]] = []
        self.bad_signatures = 0
        self._secret = secret
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        t, v1 = (p.split("=", 1)[1] for p in request.headers["X-Wardgate-Signature"].split(","))
        want = hmac.new(self._secret, t.encode() + b"." + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want, v1):
            self.bad_signatures += 1
            return web.Response(status=401)
        self.received.extend(orjson.loads(body)["events"])
        return web.Response(status=202)

    async def up(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def down(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@pytest.fixture
async def endpoint() -> AsyncIterator[Endpoint]:
    ep = Endpoint(b"hook-secret")
    yield ep
    await ep.down()


async def test_an_outage_spools_to_disk_and_nothing_is_lost(
    endpoint: Endpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WG_TEST_HOOK_SECRET", "hook-secret")
    fwd = build_forwarder(
        SinkConfig(
            type="webhook", name="hook", url=f"http://127.0.0.1:{endpoint.port}/hook",
            hmac_secret_env="WG_TEST_HOOK_SECRET", allow_loopback=True, batch_size=10,
            queue_size=50, spool_dir=str(tmp_path / "spool"), backoff_max_seconds=0.2,
        )
    )  # fmt: skip
    await fwd.start()
    # The endpoint is down: 200 events, four times the memory queue, go to the spool.
    for i in range(200):
        fwd.emit(_denial(i))
        if i % 10 == 9:
            await asyncio.sleep(0)  # let the sender run, as the gateway's loop would
            await _until(lambda: fwd.queued < 40)
    await _until(lambda: not fwd.healthy)
    assert list((tmp_path / "spool").glob("*.jsonl"))
    assert endpoint.received == []
    await endpoint.up()
    await _until(lambda: len(endpoint.received) == 200)
    await fwd.aclose()
    assert [r["decision_id"] for r in endpoint.received] == [f"d{i:04d}" for i in range(200)]
    assert fwd.dropped == 0 and endpoint.bad_signatures == 0
    assert not list((tmp_path / "spool").glob("*.jsonl"))


async def test_without_a_spool_an_outage_drops_and_counts(endpoint: Endpoint) -> None:
    fwd = build_forwarder(
        SinkConfig(
            type="splunk_hec", name="hec", url=f"http://127.0.0.1:{endpoint.port}/hook",
            allow_loopback=True, queue_size=5, batch_size=5,
        )
    )  # fmt: skip
    for i in range(8):  # not started: the queue holds 5
        fwd.emit(_denial(i))
    assert fwd.dropped == 3
    await fwd.start()
    await _until(lambda: fwd.failures > 0)
    await fwd.aclose()
    assert fwd.dropped == 8 and fwd.delivered == 0


async def test_a_spool_left_by_a_previous_run_is_sent_at_start(
    endpoint: Endpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WG_TEST_HOOK_SECRET", "hook-secret")
    config = SinkConfig(
        type="webhook", name="hook", url=f"http://127.0.0.1:{endpoint.port}/hook",
        hmac_secret_env="WG_TEST_HOOK_SECRET", allow_loopback=True,
        spool_dir=str(tmp_path / "spool"), backoff_max_seconds=0.2,
    )  # fmt: skip
    first = build_forwarder(config)
    await first.start()
    for i in range(3):
        first.emit(_denial(i))
    await first.aclose()  # the endpoint is down: spooled on close
    assert endpoint.received == []
    await endpoint.up()
    second = build_forwarder(config)
    await second.start()
    await _until(lambda: len(endpoint.received) == 3)
    await second.aclose()


OSSL = Path("/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_ossl.so")


@pytest.mark.skipif(not OSSL.exists(), reason="rsyslog-openssl (Debian) not installed")
async def test_rsyslog_receives_over_tls_and_an_untrusted_server_is_refused(
    tmp_path: Path,
) -> None:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    module = (
        f'global(workDirectory="WORK" DefaultNetstreamDriver="ossl"\n'
        f'  DefaultNetstreamDriverCAFile="{tmp_path / "ca.pem"}"\n'
        f'  DefaultNetstreamDriverCertFile="{tmp_path / "cert.pem"}"\n'
        f'  DefaultNetstreamDriverKeyFile="{tmp_path / "key.pem"}")\n'
        'module(load="imtcp" StreamDriver.Name="ossl" StreamDriver.Mode="1" '
        'StreamDriver.AuthMode="anon")\n'
    )
    other_ca = trustme.CA()
    other_ca.cert_pem.write_to_path(str(tmp_path / "other.pem"))
    with _run_rsyslog(tmp_path, module) as (port, out):
        wrong = build_forwarder(
            SinkConfig(type="syslog", name="bad", host="127.0.0.1", port=port, tls=True,
                       ca_file=str(tmp_path / "other.pem"), allow_loopback=True)
        )  # fmt: skip
        await wrong.start()
        wrong.emit(_denial(99))
        await _until(lambda: wrong.failures > 0)
        await wrong.aclose()
        assert wrong.delivered == 0
        fwd = build_forwarder(
            SinkConfig(type="syslog", name="tls", host="127.0.0.1", port=port, tls=True,
                       ca_file=str(tmp_path / "ca.pem"), allow_loopback=True, format="cef")
        )  # fmt: skip
        await fwd.start()
        for i in range(3):
            fwd.emit(_denial(i))
        await fwd.aclose()
        assert fwd.delivered == 3

        def lines() -> list[str]:
            return out.read_text().splitlines() if out.exists() else []

        await _until(lambda: len(lines()) >= 3)
        got = lines()
        assert len(got) == 3 and all("CEF:0|Wardgate|wardgate|" in line for line in got)
        assert "cs1=d0000" in got[0] and "d0099" not in "".join(got)
