"""Pulling signed bundles from an HTTP policy registry (zone 0 pushes into zone 1).

The registry serves one JSON document per policy set::

    {"revision": "2026-11-30.3", "bundle": "<base64 tar.gz>", "signature": "<base64>"}

It is fetched through the gateway's SSRF-safe fetcher (the decision rests on the
address actually connected to; no redirects, bounded time and size). A pulled bundle
is verified and built before it is swapped in; a bundle that fails keeps the one in
force, and a revision already in force is not rebuilt.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from wardgate.net.fetch import FetchRefused, SafeFetcher
from wardgate.policy.bundle import Bundle, load_bundle
from wardgate.policy.engines import BundleRejected
from wardgate.policy.holder import PolicyHolder

__all__ = ["BundlePuller", "PullResult", "registry_document"]

log = logging.getLogger("wardgate.policy")


def registry_document(bundle: Bundle) -> dict[str, str]:
    """The JSON document a registry serves for ``bundle``."""
    return {
        "revision": bundle.revision,
        "bundle": base64.b64encode(bundle.archive).decode("ascii"),
        "signature": bundle.signature_text(),
    }


@dataclass(frozen=True, slots=True)
class PullResult:
    """What a pull did: ``swapped`` a new revision in, or kept ``revision`` in force."""

    swapped: bool
    revision: str
    error: str | None = None


class BundlePuller:
    """Pulls the bundle at ``url`` into ``holder`` (call :meth:`pull` on a timer)."""

    def __init__(
        self,
        holder: PolicyHolder,
        fetcher: SafeFetcher,
        url: str,
        key: Ed25519PublicKey,
        *,
        fail_open: bool = False,
    ) -> None:
        self.holder = holder
        self._fetcher = fetcher
        self._url = url
        self._key = key
        self._fail_open = fail_open

    async def pull(self) -> PullResult:
        """Fetch, verify, build and swap in the registry's bundle if it is new.

        Never raises for a bad or unreachable registry: the failure is logged and
        returned, and the policy in force keeps serving.
        """
        try:
            doc = await self._fetcher.get_json(self._url)
            revision = str(doc["revision"])
            if revision == self.holder.revision:
                return PullResult(False, revision)
            archive = base64.b64decode(str(doc["bundle"]), validate=True)
            signature = base64.b64decode(str(doc["signature"]), validate=True)
            engine = load_bundle(archive, signature, self._key, fail_open=self._fail_open)
            if engine.revision != revision:
                raise BundleRejected(
                    f"registry says revision {revision}, the signed manifest {engine.revision}"
                )
        except (FetchRefused, KeyError, binascii.Error, BundleRejected) as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.error("policy bundle pull from %s refused: %s", self._url, error)
            return PullResult(False, self.holder.revision, error)
        self.holder.swap(engine)
        return PullResult(True, engine.revision)

    async def run(self, interval_s: float, stop: asyncio.Event) -> None:
        """Pull now, then every ``interval_s`` until ``stop`` is set."""
        while not stop.is_set():
            await self.pull()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)
