"""The policy in force: one holder, swapped atomically, never to something unchecked.

A call reads :attr:`PolicyHolder.engine` once and uses that engine for its whole
decision, so a swap during a call never mixes two policy sets, and no call is
dropped by a reload. Only a fully built engine (parsed, validated, linted; a bundle
also verified) is ever swapped in: a candidate that fails to build raises before the
swap, and the one in force keeps serving.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from wardgate.policy.engines import DenyAllEngine, PolicyEngine, PolicyLoadError

__all__ = ["PolicyHolder"]

log = logging.getLogger("wardgate.policy")


class PolicyHolder:
    """Holds the engine in force; starts with deny-all (no policy, nothing allowed)."""

    __slots__ = ("_engine",)

    def __init__(self, engine: PolicyEngine | None = None) -> None:
        self._engine: PolicyEngine = engine if engine is not None else DenyAllEngine()

    @property
    def engine(self) -> PolicyEngine:
        return self._engine

    @property
    def revision(self) -> str:
        return self._engine.revision

    def swap(self, engine: PolicyEngine) -> PolicyEngine:
        """Put ``engine`` in force (one reference assignment); return the old one."""
        old, self._engine = self._engine, engine
        log.info(
            "policy %s revision %s in force (was %s %s)",
            engine.name,
            engine.revision,
            old.name,
            old.revision,
        )
        return old

    def replace_with(self, build: Callable[[], PolicyEngine]) -> PolicyEngine:
        """Build a candidate and swap it in only if it builds.

        Raises:
            PolicyLoadError: the candidate failed; the engine in force is unchanged.
        """
        try:
            candidate = build()
        except PolicyLoadError as exc:
            log.error("policy candidate refused, revision %s stays: %s", self.revision, exc)
            raise
        self.swap(candidate)
        return candidate

    def reload_dir(self, path: str | Path, *, revision: str | None = None) -> PolicyEngine:
        """Load the policy set in directory ``path`` and swap it in if it builds.

        Raises:
            PolicyLoadError: the set does not load; the engine in force is unchanged.
        """
        from wardgate.policy.source import engine_from_files, read_policy_dir

        return self.replace_with(
            lambda: engine_from_files(read_policy_dir(path), revision=revision)
        )
