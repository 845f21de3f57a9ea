"""Policy sets as files: a directory on disk or the members of a bundle.

A policy set is a flat set of files. Its engine follows from what it holds:

- Cedar: ``*.cedar`` policies, optional ``entities.json`` and ``schema.cedarschema``
  (default: Wardgate's own schema, :func:`wardgate.policy.cedar.default_schema`);
- Rego: ``*.rego`` modules, optional ``data.json``;

and an optional ``wardgate-policy.toml`` manifest may say ``engine = "cedar"|"rego"``,
``entrypoint`` (Rego) and ``revision``. Both kinds in one set is refused: say which.
Loading builds the engine, so a set that does not parse, validate or lint raises.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path

from wardgate.policy.engines import PolicyEngine, PolicyLoadError

__all__ = ["MANIFEST", "engine_from_files", "read_policy_dir"]

MANIFEST = "wardgate-policy.toml"
_KNOWN = (".cedar", ".rego", ".json", ".cedarschema", ".toml")
_MAX_FILE = 4 * 1024 * 1024


def read_policy_dir(path: str | Path) -> dict[str, str]:
    """The policy files of a directory (not recursive), by name.

    Raises:
        PolicyLoadError: the directory is missing, or a file is unreadable or too big.
    """
    root = Path(path)
    if not root.is_dir():
        raise PolicyLoadError(f"policy directory {root} does not exist")
    files: dict[str, str] = {}
    for entry in sorted(root.iterdir()):
        if not entry.is_file() or not entry.name.endswith(_KNOWN):
            continue
        if entry.stat().st_size > _MAX_FILE:
            raise PolicyLoadError(f"{entry}: larger than {_MAX_FILE} bytes")
        try:
            files[entry.name] = entry.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyLoadError(f"{entry}: {exc}") from exc
    return files


def engine_from_files(
    files: Mapping[str, str], *, revision: str | None = None, fail_open: bool = False
) -> PolicyEngine:
    """Build the engine a policy set's files describe.

    Raises:
        PolicyLoadError: the set is empty, ambiguous, or fails to parse, validate or
            lint (:class:`~wardgate.policy.engines.PolicyLintError`), or the engine's
            optional dependency is missing.
    """
    manifest: dict[str, object] = {}
    if MANIFEST in files:
        try:
            manifest = tomllib.loads(files[MANIFEST])
        except tomllib.TOMLDecodeError as exc:
            raise PolicyLoadError(f"{MANIFEST}: {exc}") from exc
    cedar = {n: t for n, t in files.items() if n.endswith(".cedar")}
    rego = {n: t for n, t in files.items() if n.endswith(".rego")}
    kind = manifest.get("engine")
    if kind is None:
        if cedar and rego:
            raise PolicyLoadError("policy set holds both .cedar and .rego files: set engine")
        kind = "cedar" if cedar else "rego" if rego else None
    rev = revision or str(manifest.get("revision", "local"))
    if kind == "cedar":
        if not cedar:
            raise PolicyLoadError("cedar policy set without .cedar files")
        try:
            from wardgate.policy.cedar import CedarEngine
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise PolicyLoadError(
                "cedar needs the 'policy' extra: pip install wardgate[policy]"
            ) from exc
        return CedarEngine(
            "\n".join(cedar[n] for n in sorted(cedar)),
            entities=files.get("entities.json", "[]"),
            schema=files.get("schema.cedarschema"),
            revision=rev,
            fail_open=fail_open,
        )
    if kind == "rego":
        if not rego:
            raise PolicyLoadError("rego policy set without .rego files")
        try:
            from wardgate.policy.rego import DEFAULT_ENTRYPOINT, RegoEngine
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise PolicyLoadError(
                "rego needs the 'rego' extra: pip install wardgate[rego]"
            ) from exc
        return RegoEngine(
            rego,
            data=files.get("data.json", "{}"),
            entrypoint=str(manifest.get("entrypoint", DEFAULT_ENTRYPOINT)),
            revision=rev,
            fail_open=fail_open,
        )
    raise PolicyLoadError(f"no policies in the set (engine {kind!r})")
