"""``wardgate audit verify FILE…`` and ``wardgate audit keygen``.

Hooked into ``wardgate.cli`` with :func:`add_parser` (on its subparsers) and
:func:`run` (for ``args.command == "audit"``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from wardgate.telemetry.audit.chain import key_id, load_public_key, verify_lines

__all__ = ["add_parser", "main", "run"]


def add_parser(sub: Any) -> None:
    """Add ``audit`` to the ``wardgate`` command's subparsers."""
    audit = sub.add_parser("audit", help="verify or set up the tamper-evident audit trail")
    verbs = audit.add_subparsers(dest="audit_command", required=True)
    verify = verbs.add_parser("verify", help="check an audit trail's chain and seals")
    verify.add_argument("files", nargs="+", metavar="FILE", help="oldest first")
    verify.add_argument("--public-key", help="PEM Ed25519 key the seals must verify with")
    verify.add_argument(
        "--no-signatures",
        action="store_true",
        help="check the chain only (anyone can recompute a chain: this proves little)",
    )
    verify.add_argument(
        "--allow-open-tail",
        action="store_true",
        help="accept a trail whose last records are not sealed yet (a live file)",
    )
    keygen = verbs.add_parser("keygen", help="make an Ed25519 sealing key pair")
    keygen.add_argument("--out", required=True, help="writes OUT.key (private) and OUT.pub")


def run(args: argparse.Namespace) -> int:
    """Run a parsed ``audit`` command; exit 0 when the trail verifies, 1 when not, 2 on use."""
    if args.audit_command == "keygen":
        return _keygen(args.out)
    if args.public_key is None and not args.no_signatures:
        print("wardgate audit verify: give --public-key (or --no-signatures)", file=sys.stderr)
        return 2
    try:
        public = load_public_key(args.public_key) if args.public_key else None
        files = [(name, Path(name).read_bytes()) for name in args.files]
    except (OSError, ValueError) as exc:
        print(f"wardgate audit verify: {exc}", file=sys.stderr)
        return 2
    report = verify_lines(files, public, allow_open_tail=args.allow_open_tail)
    for fault in report.faults:
        print(f"{fault.file}:{fault.line}: {fault.code}: {fault.detail}")
    summary = (
        f"{report.records} records, {report.seals} seals, {report.gaps} gaps "
        f"({report.dropped} events dropped), last seq {report.last_seq}"
    )
    print(("OK: " if report.ok else "FAILED: ") + summary)
    return 0 if report.ok else 1


def _keygen(out: str) -> int:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    fd = os.open(f"{out}.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(private)
    Path(f"{out}.pub").write_bytes(
        key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    print(
        f"wrote {out}.key (keep it on the gateway only) and {out}.pub (key id "
        f"{key_id(key.public_key())})"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry: ``python -m wardgate.telemetry.audit.audit_commands verify …``."""
    parser = argparse.ArgumentParser(prog="wardgate")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(["audit", *(argv if argv is not None else sys.argv[1:])]))


if __name__ == "__main__":
    sys.exit(main())
