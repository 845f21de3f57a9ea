"""The audit trail: every tamper is caught by `wardgate audit verify`, an intact one passes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from wardgate.policy.decision_log import PolicyDecided
from wardgate.telemetry.audit import AuditSink, verify_lines
from wardgate.telemetry.audit.chain import Chainer, canonical
from wardgate.telemetry.events import AuthFailed, GuardDecision, SessionOpened

KEY = Ed25519PrivateKey.generate()


def _decision(i: int) -> GuardDecision:
    return GuardDecision(
        f"d{i:04d}", "main", "tool_access", "tools/call", f"tool{i}", "alice", False,
        "wardgate.denied", "denied by rule",
    )  # fmt: skip


def _write_trail(path: Path, n: int = 20, **kw: object) -> AuditSink:
    sink = AuditSink(path, KEY, seal_every=5, **kw)  # type: ignore[arg-type]
    sink.start()
    for i in range(n):
        sink.emit(_decision(i))
    sink.close()
    return sink


def _verify(*files: Path, **kw: bool) -> list[str]:
    report = verify_lines([(str(f), f.read_bytes()) for f in files], KEY.public_key(), **kw)
    return [f.code for f in report.faults]


def _pub(tmp_path: Path) -> Path:
    pub = tmp_path / "audit.pub"
    pub.write_bytes(KEY.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    return pub


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wardgate.telemetry.audit.audit_commands", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_an_intact_trail_verifies_with_the_cli(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_trail(path)
    result = _cli("verify", str(path), "--public-key", str(_pub(tmp_path)))
    assert result.returncode == 0, result.stdout
    assert result.stdout.startswith("OK: ")
    records = [orjson.loads(x) for x in path.read_bytes().splitlines()]
    events = [r for r in records if r["type"] == "event"]
    assert [e["event"]["decision_id"] for e in events] == [f"d{i:04d}" for i in range(20)]
    assert events[0]["event"]["kind"] == "guard.decision"
    assert records[-1]["type"] == "seal"


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")[:-1]


def _rewrite(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(line + b"\n" for line in lines))


@pytest.mark.parametrize("tamper", ["delete", "alter", "reorder", "alter_and_rehash"])
def test_a_tampered_trail_fails_verify(tmp_path: Path, tamper: str) -> None:
    path = tmp_path / "audit.jsonl"
    _write_trail(path)
    lines = _lines(path)
    if tamper == "delete":
        del lines[4]
    elif tamper == "alter":
        lines[4] = lines[4].replace(b'"allowed":false', b'"allowed":true')
    elif tamper == "reorder":
        lines[3], lines[4] = lines[4], lines[3]
    else:
        # The forger recomputes every hash after the edit: only the seals catch it.
        forged = Chainer(Ed25519PrivateKey.generate())
        out = []
        for raw in lines:
            rec = orjson.loads(raw)
            rec.pop("hash"), rec.pop("seq"), rec.pop("prev")
            if rec["type"] == "event" and rec["event"]["decision_id"] == "d0003":
                rec["event"]["allowed"] = True
            if rec["type"] == "seal":
                out.append(forged.seal(rec["ts"])[:-1])
            else:
                out.append(forged.link(rec)[:-1])
        lines = out
    assert lines != _lines(path)
    _rewrite(path, lines)
    expected = {
        "delete": "audit.chain",
        "alter": "audit.hash",
        "reorder": "audit.chain",
        "alter_and_rehash": "audit.seal_key",
    }[tamper]
    assert _verify(path) == [expected]
    result = _cli("verify", str(path), "--public-key", str(_pub(tmp_path)))
    assert result.returncode == 1
    assert expected in result.stdout


def test_a_forged_seal_signature_fails(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_trail(path)
    lines = _lines(path)
    idx = next(i for i, raw in enumerate(lines) if orjson.loads(raw)["type"] == "seal")
    rec = orjson.loads(lines[idx])
    rec.pop("hash")
    rec["sig"] = "A" * 86 + "=="
    import hashlib

    rec["hash"] = hashlib.sha256(canonical(rec)).hexdigest()
    lines[idx] = canonical(rec)
    # The next record's link would also break; keep only up to the forged seal.
    _rewrite(path, lines[: idx + 1])
    assert _verify(path) == ["audit.signature"]


def test_a_truncated_tail_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_trail(path)
    data = path.read_bytes()
    path.write_bytes(data[:-40])  # cut in the middle of the final seal
    assert "audit.truncated" in _verify(path)
    # Whole records cut after the last seal: the trail no longer ends in a seal.
    path.write_bytes(data)
    _rewrite(path, _lines(path)[:-1])
    assert _verify(path) == ["audit.unsealed"]
    assert _verify(path, allow_open_tail=True) == []


def test_rotation_keeps_the_chain_across_files(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_trail(path, n=60, max_bytes=4096)
    rotated = sorted(tmp_path.glob("audit.jsonl.*"))
    assert len(rotated) >= 2
    files = [*rotated, path]
    assert _verify(*files) == []
    # Dropping a middle file breaks the chain at the next file's start record.
    assert _verify(files[0], *files[2:]) == ["audit.chain"]
    # A later file verifies on its own from its start record (anchored there).
    assert _verify(*files[1:]) == []
    result = _cli("verify", *map(str, files), "--public-key", str(_pub(tmp_path)))
    assert result.returncode == 0, result.stdout


def test_a_restart_continues_the_chain_and_a_crash_tail_is_kept_aside(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_trail(path, n=3)
    _write_trail(path, n=3)  # restart: appends, linked
    assert _verify(path) == []
    # A crash mid-line: the next start keeps the damaged file and links past it.
    path.write_bytes(path.read_bytes()[:-10])
    _write_trail(path, n=3)
    damaged = tmp_path / "audit.jsonl.000001"
    assert damaged.exists()
    assert "audit.truncated" in _verify(damaged, path)
    assert _verify(path) == []


def test_a_full_queue_drops_counts_and_the_trail_says_so(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = AuditSink(path, KEY, queue_size=4, seal_every=1000)
    # Not started: nothing drains, so the fifth event on is dropped.
    for i in range(10):
        sink.emit(_decision(i))
    assert sink.dropped == 6
    sink.start()
    sink.emit(_decision(99))
    sink.close()
    report = verify_lines([(str(path), path.read_bytes())], KEY.public_key())
    assert report.ok and report.gaps == 1 and report.dropped == 6
    assert sink.written == 5


def test_only_security_decisions_are_recorded_with_policy_and_revision(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = AuditSink(path, KEY)
    sink.start()
    sink.emit(
        PolicyDecided(
            "dp", "main", "cedar", "rev-42", "tools/call", "echo", "bob", None, False,
            ("policy0",), {"subject": {"id": "bob"}}, 0.3,
        )
    )  # fmt: skip
    sink.emit(AuthFailed("da", "main", "wardgate.unauthenticated", "127.0.0.1"))
    sink.emit(SessionOpened("ds", "main", "s1", "bob", None, "2025-06-18"))
    sink.close()
    records = map(orjson.loads, path.read_bytes().splitlines())
    events = [r["event"] for r in records if r["type"] == "event"]
    assert [e["kind"] for e in events] == ["policy.decision", "auth.failed", "session.opened"]
    assert events[0]["revision"] == "rev-42" and events[0]["reasons"] == ["policy0"]


def test_a_value_cannot_forge_a_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = AuditSink(path, KEY)
    sink.start()
    evil = 'x"}\n{"type":"event","forged":1}\r\u2028\u0085\x1b[31m\x00'
    sink.emit(AuthFailed("d1", "main", evil, evil))
    sink.close()
    lines = _lines(path)
    assert len(lines) == 3  # start, event, seal
    assert orjson.loads(lines[1])["event"]["cause"] == evil
    assert _verify(path) == []


def test_keygen_then_verify(tmp_path: Path) -> None:
    out = tmp_path / "seal"
    assert _cli("keygen", "--out", str(out)).returncode == 0
    assert (out.with_suffix(".key").stat().st_mode & 0o777) == 0o600
    result = _cli("verify", str(tmp_path / "none.jsonl"), "--public-key", f"{out}.pub")
    assert result.returncode == 2


async def test_a_gateway_writes_a_verifiable_trail_of_its_calls(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

    from conftest import stdio_demo_upstream
    from support.http import modern_body, modern_headers, post
    from support.servers import run_gateway

    key_file = tmp_path / "seal.key"
    key_file.write_bytes(KEY.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    path = tmp_path / "audit.jsonl"
    config = {
        "upstreams": {"demo": stdio_demo_upstream()},
        "routes": {"demo": {"upstreams": ["demo"], "tools": {"deny": ["delete_everything"]}}},
        "telemetry": {"audit": {"path": str(path), "signing_key_file": str(key_file)}},
    }
    async with run_gateway(config) as (url, _):
        for rid, tool in enumerate(["echo", "delete_everything"], 1):
            body = modern_body("tools/call", {"name": tool, "arguments": {"text": "x"}}, rid)
            await post(f"{url}/mcp/demo", body, modern_headers("tools/call", tool))
    assert _verify(path) == []
    events = [r["event"] for r in map(orjson.loads, _lines(path)) if r["type"] == "event"]
    kinds = [(e["kind"], e.get("target"), e.get("status")) for e in events]
    assert ("guard.decision", "delete_everything", None) in kinds
    assert ("call.ended", "delete_everything", "denied") in kinds
    assert ("call.ended", "echo", "ok") in kinds
