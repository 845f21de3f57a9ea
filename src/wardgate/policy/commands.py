"""``wardgate policy …``: lint, test, bundle (sign), verify, keygen.

Wired into :mod:`wardgate.cli` with two lines::

    policy_cli.add_parser(sub)                       # in _parser()
    if args.command == "policy": return policy_cli.run(args)   # in main()

Exit codes: 0 success; 1 a policy test failed; 2 a policy or bundle is refused
(lint, parse, validation, signature), as any ConfigError.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from wardgate.policy.bundle import build_bundle, load_bundle, load_private_key, load_public_key
from wardgate.policy.cases import load_cases, run_cases
from wardgate.policy.engines import PolicyLoadError
from wardgate.policy.lint import LintFinding, lint_cedar, lint_rego
from wardgate.policy.registry import registry_document
from wardgate.policy.source import engine_from_files, read_policy_dir

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add ``policy`` and its subcommands to the top-level subparsers ``sub``."""
    policy = sub.add_parser("policy", help="lint, test, bundle and verify policy sets")
    cmds = policy.add_subparsers(dest="policy_command", required=True)
    lint = cmds.add_parser("lint", help="refuse wildcard grants; parse and validate")
    lint.add_argument("sets", nargs="+", metavar="SET", help="policy set directories")
    test = cmds.add_parser("test", help="run table-driven cases against a policy set")
    test.add_argument("set", metavar="SET")
    test.add_argument("cases", nargs="+", metavar="CASES.toml")
    bundle = cmds.add_parser("bundle", help="build and sign a bundle of a policy set")
    bundle.add_argument("set", metavar="SET")
    bundle.add_argument("--revision", required=True)
    bundle.add_argument("--key", required=True, help="Ed25519 private key (PEM)")
    bundle.add_argument("--out", required=True, help="output path of the .tar.gz")
    bundle.add_argument(
        "--registry-json", help="also write the registry document (bundle and signature)"
    )
    verify = cmds.add_parser("verify", help="verify a bundle and build its engine")
    verify.add_argument("bundle", metavar="BUNDLE.tar.gz")
    verify.add_argument("--signature", help="detached signature (default: BUNDLE.sig)")
    verify.add_argument("--pubkey", required=True, help="Ed25519 public key (PEM)")
    keygen = cmds.add_parser("keygen", help="make an Ed25519 key pair for signing bundles")
    keygen.add_argument("--out", required=True, help="writes OUT.key.pem and OUT.pub.pem")
    return policy  # type: ignore[no-any-return]


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Run one ``policy`` subcommand; returns the exit code.

    Raises:
        PolicyLoadError: a policy set or bundle is refused, or a file is missing
            (exit 2 through the CLI's handling of ConfigError), when not reported here.
    """
    try:
        return _dispatch(args, out)
    except (OSError, binascii.Error) as exc:
        # A missing file or an unreadable signature: refused like any bad input.
        raise PolicyLoadError(f"policy {args.policy_command}: {exc}") from exc


def _dispatch(args: argparse.Namespace, out: TextIO) -> int:
    command = args.policy_command
    if command == "lint":
        return _lint(args.sets, out)
    if command == "test":
        return _test(args.set, args.cases, out)
    if command == "bundle":
        return _bundle(args, out)
    if command == "verify":
        signature = Path(args.signature or f"{args.bundle}.sig").read_text().strip()
        engine = load_bundle(
            Path(args.bundle).read_bytes(),
            base64.b64decode(signature, validate=True),
            load_public_key(Path(args.pubkey).read_bytes()),
        )
        print(f"ok: {engine.name} policy set, revision {engine.revision}", file=out)
        return 0
    if command == "keygen":
        return _keygen(args.out, out)
    raise AssertionError(f"unknown policy command {command}")


def _lint(sets: list[str], out: TextIO) -> int:
    refused = 0
    for path in sets:
        files = read_policy_dir(path)
        findings: list[LintFinding] = []
        for name, text in sorted(files.items()):
            if name.endswith(".rego"):
                findings.extend(lint_rego(text, f"{path}/{name}"))
            elif name.endswith(".cedar"):
                try:
                    findings.extend(
                        LintFinding(f"{path}/{name}: {f.where}", f.problem)
                        for f in lint_cedar(text)
                    )
                except ValueError as exc:
                    findings.append(LintFinding(f"{path}/{name}", f"does not parse: {exc}"))
        for finding in findings:
            print(f"refused: {finding}", file=out)
        if not findings:
            try:
                engine = engine_from_files(files)
            except PolicyLoadError as exc:
                print(f"refused: {path}: {exc.detail}", file=out)
                refused += 1
                continue
            print(f"ok: {path} ({engine.name})", file=out)
        refused += bool(findings)
    return 2 if refused else 0


def _test(set_path: str, case_files: list[str], out: TextIO) -> int:
    engine = engine_from_files(read_policy_dir(set_path))
    failed = total = 0
    for path in case_files:
        results = asyncio.run(run_cases(engine, load_cases(path)))
        for result in results:
            total += 1
            if not result.passed:
                failed += 1
                print(result.report(), file=out)
    print(f"{total - failed}/{total} cases pass ({engine.name}, {set_path})", file=out)
    return 1 if failed else 0


def _bundle(args: argparse.Namespace, out: TextIO) -> int:
    key = load_private_key(Path(args.key).read_bytes())
    bundle = build_bundle(args.set, args.revision, key)
    target = Path(args.out)
    target.write_bytes(bundle.archive)
    Path(f"{target}.sig").write_text(bundle.signature_text() + "\n")
    if args.registry_json:
        Path(args.registry_json).write_text(json.dumps(registry_document(bundle)))
    print(f"ok: {target} and {target}.sig, revision {bundle.revision}", file=out)
    return 0


def _keygen(prefix: str, out: TextIO) -> int:
    key = Ed25519PrivateKey.generate()
    private = Path(f"{prefix}.key.pem")
    private.touch(mode=0o600)
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    Path(f"{prefix}.pub.pem").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    print(f"ok: {private} (keep it in zone 0) and {prefix}.pub.pem", file=out)
    return 0
