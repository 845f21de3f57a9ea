"""The audit chain: records linked by SHA-256, sealed at intervals with Ed25519.

Every record is one JSON object on one line, its keys sorted, with ``seq`` (counting
from 0 across every file of the trail), ``prev`` (the ``hash`` of the record before it)
and ``hash``: SHA-256 over the record's canonical JSON without ``hash``. Deleting,
altering or reordering a record breaks ``prev``, ``seq`` or ``hash``; recomputing the
whole chain after an edit is caught by the seals, which sign the hash of the record
before them with a key the writer of the file does not hold.

Record types: ``start`` (opens a trail, ``prev`` all zeros, or continues one in a new file
after rotation or a restart), ``event`` (one security decision), ``gap`` (the sink
dropped N events under load: the trail says so itself), ``seal``.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
    load_pem_public_key,
)

__all__ = [
    "GENESIS",
    "ChainFault",
    "Chainer",
    "VerifyReport",
    "key_id",
    "load_private_key",
    "load_public_key",
    "verify_lines",
]

GENESIS = "0" * 64
_SIG_DOMAIN = b"wardgate-audit-seal-v1\x00"


def canonical(record: Mapping[str, Any]) -> bytes:
    """The bytes a record is hashed (and written) as: sorted keys, no spaces."""
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS, default=str)


def key_id(public: Ed25519PublicKey) -> str:
    """A short, stable name for a verification key (SHA-256 of its raw bytes, 16 hex)."""
    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_private_key(path: str) -> Ed25519PrivateKey:
    """The sealing key from a PEM file.

    Raises:
        ValueError: the file holds no Ed25519 private key.
    """
    key = load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    return key


def load_public_key(path: str) -> Ed25519PublicKey:
    """The verification key from a PEM file.

    Raises:
        ValueError: the file holds no Ed25519 public key.
    """
    key = load_pem_public_key(Path(path).read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path}: not an Ed25519 public key")
    return key


def _seal_message(seq: int, sealed_hash: str) -> bytes:
    return _SIG_DOMAIN + f"{seq}:{sealed_hash}".encode()


class Chainer:
    """Links records one after another; not thread-safe (the sink's writer owns it)."""

    def __init__(self, signer: Ed25519PrivateKey, seq: int = 0, prev: str = GENESIS) -> None:
        self._signer = signer
        self._key_id = key_id(signer.public_key())
        self.seq = seq
        self.prev = prev
        self.since_seal = 0

    def link(self, record: dict[str, Any]) -> bytes:
        """Number, link and hash ``record`` (in place); returns its line, newline included."""
        record["seq"] = self.seq
        record["prev"] = self.prev
        digest = hashlib.sha256(canonical(record)).hexdigest()
        record["hash"] = digest
        self.seq += 1
        self.prev = digest
        self.since_seal = 0 if record.get("type") == "seal" else self.since_seal + 1
        return canonical(record) + b"\n"

    def seal(self, ts: float) -> bytes:
        """A seal over everything so far: signs the hash of the record before it."""
        signature = self._signer.sign(_seal_message(self.seq - 1, self.prev))
        return self.link(
            {
                "type": "seal",
                "ts": ts,
                "key_id": self._key_id,
                "sealed_seq": self.seq - 1,
                "sealed_hash": self.prev,
                "sig": base64.b64encode(signature).decode(),
            }
        )


@dataclass(frozen=True, slots=True)
class ChainFault:
    """What is wrong, where: ``code`` is stable (``audit.hash`` …), ``line`` is 1-based."""

    file: str
    line: int
    code: str
    detail: str


@dataclass(slots=True)
class VerifyReport:
    """The outcome of verifying a trail; ``ok`` when there is no fault."""

    records: int = 0
    seals: int = 0
    gaps: int = 0
    dropped: int = 0
    faults: list[ChainFault] = field(default_factory=list)
    last_seq: int = -1
    last_hash: str = GENESIS

    @property
    def ok(self) -> bool:
        return not self.faults


def verify_lines(
    files: Iterable[tuple[str, bytes]],
    public: Ed25519PublicKey | None,
    *,
    allow_open_tail: bool = False,
) -> VerifyReport:
    """Check one trail given as ``(name, content)`` per file, oldest first.

    Every record's hash, its link to the one before (across files), its sequence
    number, every seal's signature (when ``public`` is given), and that the trail ends
    with a seal (a cut or unsealed tail) unless ``allow_open_tail``. Stops at the first
    fault of a file: what follows a broken link cannot be trusted anyway.
    """
    report = VerifyReport()
    first = True
    last_name, last_line, last_type = "", 0, "seal"
    want_kid = key_id(public) if public is not None else None
    for name, content in files:
        lines = content.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        elif lines:
            report.faults.append(
                ChainFault(name, len(lines), "audit.truncated", "last line is cut short")
            )
            lines.pop()
        for number, raw in enumerate(lines, 1):
            fault = _check(report, raw, first, public, want_kid)
            if fault is not None:
                report.faults.append(ChainFault(name, number, *fault))
                return report
            first = False
            last_name, last_line = name, number
            last_type = str(orjson.loads(raw).get("type"))
    if report.records == 0:
        report.faults.append(ChainFault(last_name or "-", 0, "audit.empty", "no records"))
    elif last_type != "seal" and not allow_open_tail:
        report.faults.append(
            ChainFault(last_name, last_line, "audit.unsealed", "the trail does not end in a seal")
        )
    return report


def _check(
    report: VerifyReport,
    raw: bytes,
    first: bool,
    public: Ed25519PublicKey | None,
    want_kid: str | None,
) -> tuple[str, str] | None:
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return "audit.malformed", "not JSON"
    if not isinstance(record, dict) or not isinstance(record.get("hash"), str):
        return "audit.malformed", "not a record"
    claimed = record.pop("hash")
    if hashlib.sha256(canonical(record)).hexdigest() != claimed:
        return "audit.hash", "record altered (hash does not match)"
    seq, prev, kind = record.get("seq"), record.get("prev"), record.get("type")
    if first:
        # A trail may be verified from any file on: the first record anchors it.
        if kind != "start":
            return "audit.chain", "the first record is not a start record"
    elif prev != report.last_hash or seq != report.last_seq + 1:
        return "audit.chain", f"record {seq} does not follow record {report.last_seq}"
    if kind == "seal":
        if (
            record.get("sealed_seq") != report.last_seq
            or record.get("sealed_hash") != report.last_hash
        ):
            return "audit.seal", "seal does not cover the record before it"
        if public is not None:
            if record.get("key_id") != want_kid:
                return "audit.seal_key", "sealed with another key"
            try:
                sig = base64.b64decode(str(record.get("sig")), validate=True)
                public.verify(sig, _seal_message(report.last_seq, report.last_hash))
            except (InvalidSignature, ValueError):
                return "audit.signature", "seal signature is invalid"
        report.seals += 1
    elif kind == "gap":
        report.gaps += 1
        report.dropped += int(record.get("dropped", 0))
    report.records += 1
    report.last_seq = int(seq) if isinstance(seq, int) else -1
    report.last_hash = claimed
    return None
