"""Signed policy bundles: a tarball of a policy set plus a detached Ed25519 signature.

Building (zone 0, ``wardgate policy bundle``): the policy set's files and a
``.wardgate-bundle.json`` manifest (revision and each file's SHA-256) go into a
deterministic ``tar.gz``; the signature covers the tarball's exact bytes.

Loading (zone 1): the signature is verified against the configured public key
*before* anything in the tarball is parsed; then the archive is read in memory under
bounds (flat regular files only, no links, no paths, sizes and counts capped), the
manifest's hashes are checked, and the engine is built (parse, validate, lint). Any
failure raises :class:`~wardgate.policy.engines.BundleRejected`; nothing is swapped in.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from wardgate.policy.engines import BundleRejected, PolicyEngine, PolicyLoadError
from wardgate.policy.source import engine_from_files, read_policy_dir

__all__ = [
    "BUNDLE_MANIFEST",
    "Bundle",
    "build_bundle",
    "load_bundle",
    "load_private_key",
    "load_public_key",
    "open_bundle",
]

BUNDLE_MANIFEST = ".wardgate-bundle.json"
MAX_MEMBERS = 256
MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_TOTAL_BYTES = 16 * 1024 * 1024
MAX_ARCHIVE_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Bundle:
    """A built bundle: the tarball and its detached signature (raw 64 bytes)."""

    revision: str
    archive: bytes
    signature: bytes

    def signature_text(self) -> str:
        return base64.b64encode(self.signature).decode("ascii")


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    """Raises: PolicyLoadError: not a PEM Ed25519 private key."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise PolicyLoadError(f"bundle signing key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise PolicyLoadError("bundle signing key is not Ed25519")
    return key


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    """Raises: PolicyLoadError: not a PEM Ed25519 public key."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise PolicyLoadError(f"bundle verification key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise PolicyLoadError("bundle verification key is not Ed25519")
    return key


def build_bundle(source: str | Path, revision: str, key: Ed25519PrivateKey) -> Bundle:
    """Pack and sign the policy set in directory ``source``.

    The set is built first (parse, validate, lint), so a bundle that would be
    refused at load is never signed.

    Raises:
        PolicyLoadError: the policy set does not load.
    """
    files = read_policy_dir(source)
    engine_from_files(files, revision=revision)  # refuse to sign what would not load
    manifest = {
        "revision": revision,
        "files": {n: hashlib.sha256(t.encode()).hexdigest() for n, t in sorted(files.items())},
    }
    members = {**files, BUNDLE_MANIFEST: json.dumps(manifest, sort_keys=True, indent=1)}
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(members):
            data = members[name].encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    # mtime=0: the same set and revision always give the same bytes.
    archive = gzip.compress(raw.getvalue(), mtime=0)
    return Bundle(revision, archive, key.sign(archive))


def _members(archive: bytes) -> dict[str, str]:
    try:
        tar_bytes = _gunzip(archive)
        with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
            out: dict[str, str] = {}
            for count, info in enumerate(tar):
                if count >= MAX_MEMBERS:
                    raise BundleRejected(f"bundle has more than {MAX_MEMBERS} members")
                name = info.name
                if not info.isreg():
                    raise BundleRejected(f"bundle member {name!r} is not a regular file")
                if "/" in name or "\\" in name or name in ("", ".", "..") or "\x00" in name:
                    raise BundleRejected(f"bundle member {name!r} is not a flat file name")
                if info.size > MAX_FILE_BYTES:
                    raise BundleRejected(f"bundle member {name!r} is too large")
                if name in out:
                    raise BundleRejected(f"bundle member {name!r} appears twice")
                handle = tar.extractfile(info)
                assert handle is not None  # a regular file always has one
                out[name] = handle.read(MAX_FILE_BYTES + 1).decode("utf-8")
            return out
    except (tarfile.TarError, UnicodeDecodeError, EOFError, OSError) as exc:
        raise BundleRejected(f"bundle archive unreadable: {exc}") from exc


def _gunzip(archive: bytes) -> bytes:
    """Decompress with a bound on the output (a gzip bomb stops at the bound)."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=io.BytesIO(archive)) as stream:
        while chunk := stream.read(64 * 1024):
            out.write(chunk)
            if out.tell() > MAX_TOTAL_BYTES:
                raise BundleRejected(f"bundle expands past {MAX_TOTAL_BYTES} bytes")
    return out.getvalue()


def open_bundle(
    archive: bytes, signature: bytes, key: Ed25519PublicKey
) -> tuple[str, dict[str, str]]:
    """Verify and unpack a bundle: ``(revision, files)``.

    Raises:
        BundleRejected: bad signature (checked first), bad archive, or files that
            do not match the manifest.
    """
    if len(archive) > MAX_ARCHIVE_BYTES:
        raise BundleRejected("bundle archive too large")
    try:
        key.verify(signature, archive)
    except InvalidSignature as exc:
        raise BundleRejected("bundle signature does not verify") from exc
    members = _members(archive)
    raw_manifest = members.pop(BUNDLE_MANIFEST, None)
    if raw_manifest is None:
        raise BundleRejected("bundle has no manifest")
    try:
        manifest = json.loads(raw_manifest)
        revision = str(manifest["revision"])
        hashes: Mapping[str, str] = manifest["files"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleRejected(f"bundle manifest malformed: {exc!r}") from exc
    actual = {n: hashlib.sha256(t.encode()).hexdigest() for n, t in members.items()}
    if actual != dict(hashes):
        raise BundleRejected("bundle files do not match its manifest")
    return revision, members


def load_bundle(
    archive: bytes, signature: bytes, key: Ed25519PublicKey, *, fail_open: bool = False
) -> PolicyEngine:
    """Verify, unpack and build the engine of a bundle (revision from its manifest).

    Raises:
        BundleRejected: the bundle fails to verify, unpack, parse, validate or lint.
    """
    revision, files = open_bundle(archive, signature, key)
    try:
        return engine_from_files(files, revision=revision, fail_open=fail_open)
    except BundleRejected:
        raise
    except PolicyLoadError as exc:
        raise BundleRejected(f"bundle {revision}: {exc.detail}") from exc
