"""An OPA server over its REST API, for teams that already run OPA.

Each decision is ``POST <url>/v1/data/<path>`` with ``{"input": …}``; the answer's
``result`` is the decision document (see :mod:`wardgate.policy._document`); an absent
``result`` (the rule is undefined) denies. Requests have a total timeout, never follow
redirects and ignore proxy settings from the environment. An error, a timeout, a
non-200 answer or an unreachable server denies with the failure in the decision
(fail-open only when named). The revision is OPA's bundle revision when the server
reports provenance, else the configured one.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp

from wardgate.policy._document import decision_from_document
from wardgate.policy.decision import PolicyDecision, PolicyInput
from wardgate.policy.engines import EngineFailure, PolicyLoadError, failure_decision

__all__ = ["OpaEngine"]

_MAX_BODY = 1024 * 1024


class OpaEngine:
    """Decisions from an OPA server (see the module docstring).

    Construction does no I/O; :meth:`start` opens the connection pool (and is run
    by the first decision if not called), :meth:`aclose` releases it.

    Raises:
        PolicyLoadError: at construction, the URL is not plain http(s) without
            credentials, or the path is empty.
    """

    name = "opa"
    #: OPA may load a new policy at any time: nothing it decides is remembered.
    memoize = False

    def __init__(
        self,
        url: str,
        *,
        path: str = "wardgate/authz/decision",
        timeout_s: float = 0.5,
        revision: str = "opa",
        fail_open: bool = False,
        headers: Mapping[str, str] | None = None,
        max_concurrency: int = 16,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PolicyLoadError(f"opa: url must be http(s)://host[:port], got {url!r}")
        if parts.username or parts.password:
            raise PolicyLoadError("opa: credentials in the URL refused (use headers)")
        if not path.strip("/"):
            raise PolicyLoadError("opa: empty decision path")
        segments = "/".join(quote(s, safe="") for s in path.strip("/").split("/"))
        self._endpoint = f"{url.rstrip('/')}/v1/data/{segments}"
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._headers = {"Content-Type": "application/json", **(headers or {})}
        self.revision = revision
        self.fail_open = fail_open
        self._limit = asyncio.Semaphore(max_concurrency)
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the connection pool (idempotent)."""
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=64)
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False)

    async def aclose(self) -> None:
        """Close the connection pool (idempotent)."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def _post(self, document: dict[str, Any]) -> dict[str, Any]:
        """One query; every failure becomes :class:`EngineFailure` here, and only here.

        Raises:
            EngineFailure: unreachable, timed out, non-200, oversized or not JSON.
        """
        if self._session is None:
            await self.start()
        assert self._session is not None
        body = json.dumps({"input": document})
        try:
            async with (
                self._limit,
                self._session.post(
                    self._endpoint,
                    data=body,
                    headers=self._headers,
                    timeout=self._timeout,
                    allow_redirects=False,
                    params={"provenance": "true"},
                ) as resp,
            ):
                raw = await resp.content.read(_MAX_BODY + 1)
                status = resp.status
        except TimeoutError as exc:
            raise EngineFailure("opa: timed out") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise EngineFailure(f"opa: unreachable: {type(exc).__name__}: {exc}") from exc
        if status != 200:
            raise EngineFailure(f"opa: HTTP {status}: {raw[:200]!r}")
        if len(raw) > _MAX_BODY:
            raise EngineFailure("opa: answer too large")
        try:
            answer = json.loads(raw)
        except ValueError as exc:
            raise EngineFailure("opa: answer is not JSON") from exc
        if not isinstance(answer, dict):
            raise EngineFailure("opa: answer is not a JSON object")
        return answer

    def _revision(self, answer: Mapping[str, Any]) -> str:
        provenance = answer.get("provenance")
        bundles = provenance.get("bundles") if isinstance(provenance, dict) else None
        if isinstance(bundles, dict) and bundles:
            revs = [
                f"{n}@{b.get('revision')}"
                for n, b in sorted(bundles.items())
                if isinstance(b, dict)
            ]
            return ",".join(revs) or self.revision
        return self.revision

    async def evaluate(self, policy_input: PolicyInput) -> PolicyDecision:
        """Ask OPA; a failure denies (or allows, named fail-open)."""
        try:
            answer = await self._post(policy_input.to_json())
        except EngineFailure as exc:
            return failure_decision(self.name, self.revision, exc, fail_open=self.fail_open)
        return decision_from_document(
            answer.get("result"), engine=self.name, revision=self._revision(answer)
        )

    async def evaluate_many(self, inputs: Sequence[PolicyInput]) -> list[PolicyDecision]:
        """Ask OPA for each input concurrently (at most ``max_concurrency`` at once).

        OPA's ``/v1/data`` has no batch form. Nothing is remembered: OPA may load a
        new bundle at any time, and its decisions are its own to cache.
        """
        return list(await asyncio.gather(*(self.evaluate(i) for i in inputs)))
