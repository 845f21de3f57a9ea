"""Assembling the policy layer from settings: what the gateway wires at start-up.

The config loader maps ``[policy]`` onto :class:`PolicySettings`; :class:`PolicyRuntime`
builds the holder and the guard cheaply, :meth:`PolicyRuntime.start` loads the policy
(a malformed set or a refused bundle never starts the gateway) and starts pulling
from the registry, :meth:`PolicyRuntime.aclose` stops everything it started.
Without any policy configured the holder denies every call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from wardgate.net.fetch import SafeFetcher
from wardgate.policy.bundle import load_public_key
from wardgate.policy.engines import PolicyEngine, PolicyLoadError
from wardgate.policy.guard import NameResolver, PolicyGuard
from wardgate.policy.holder import PolicyHolder
from wardgate.policy.inputs import InputBuilder, InputConfig
from wardgate.policy.opa import OpaEngine
from wardgate.policy.registry import BundlePuller
from wardgate.policy.source import engine_from_files, read_policy_dir

__all__ = ["PolicyRuntime", "PolicySettings"]

log = logging.getLogger("wardgate.policy")


@dataclass(frozen=True, slots=True)
class PolicySettings:
    """``[policy]``: where the policy comes from and how inputs are built.

    Exactly one source: ``dir`` (a policy set directory), ``registry_url`` (signed
    bundles, with ``public_key_file``), or ``engine = "opa"`` with ``opa_url``.
    """

    engine: Literal["cedar", "rego", "opa"] | None = None
    dir: str | None = None
    registry_url: str | None = None
    public_key_file: str | None = None
    pull_interval_s: float = 30.0
    fail_open: bool = False
    opa_url: str | None = None
    opa_path: str = "wardgate/authz/decision"
    opa_timeout_s: float = 0.5
    input: InputConfig = field(default_factory=InputConfig)


class PolicyRuntime:
    """The holder, guard and puller of one gateway (see the module docstring).

    Raises:
        PolicyLoadError: at construction, the settings name no source or several, or
            a registry without a public key.
    """

    def __init__(
        self,
        settings: PolicySettings,
        *,
        fetcher: SafeFetcher | None = None,
        names: NameResolver | None = None,
    ) -> None:
        sources = [settings.dir, settings.registry_url, settings.opa_url]
        if sum(s is not None for s in sources) > 1:
            raise PolicyLoadError("policy: configure one of dir, registry_url, opa_url")
        if settings.registry_url is not None and (
            settings.public_key_file is None or fetcher is None
        ):
            raise PolicyLoadError("policy: registry_url needs public_key_file (and a fetcher)")
        if settings.engine == "opa" and settings.opa_url is None:
            raise PolicyLoadError("policy: engine opa needs opa_url")
        self.settings = settings
        self.holder = PolicyHolder()
        builder = InputBuilder(settings.input)
        self.guard = (
            PolicyGuard(self.holder, builder, names=names)
            if names is not None
            else PolicyGuard(self.holder, builder)
        )
        self._fetcher = fetcher
        self._opa: OpaEngine | None = None
        self._puller: BundlePuller | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Load the policy in force.

        Raises:
            PolicyLoadError: the policy set does not load, or the registry's first
                bundle is refused (an unreachable registry is not fatal: the gateway
                starts denying everything and keeps pulling).
        """
        s = self.settings
        if s.dir is not None:
            files = read_policy_dir(s.dir)

            def build() -> PolicyEngine:
                engine = engine_from_files(files, fail_open=s.fail_open)
                if s.engine is not None and engine.name != s.engine:
                    raise PolicyLoadError(f"policy: {s.dir} holds {engine.name}, not {s.engine}")
                return engine

            self.holder.replace_with(build)
        elif s.opa_url is not None:
            self._opa = OpaEngine(
                s.opa_url, path=s.opa_path, timeout_s=s.opa_timeout_s, fail_open=s.fail_open
            )
            await self._opa.start()
            self.holder.swap(self._opa)
        elif s.registry_url is not None:
            assert s.public_key_file is not None and self._fetcher is not None
            key = load_public_key(await asyncio.to_thread(Path(s.public_key_file).read_bytes))
            self._puller = BundlePuller(
                self.holder, self._fetcher, s.registry_url, key, fail_open=s.fail_open
            )
            first = await self._puller.pull()
            if first.error is not None and "BundleRejected" in first.error:
                raise PolicyLoadError(f"policy: the registry's bundle is refused: {first.error}")
            self._task = asyncio.create_task(self._pull_forever())
        else:
            log.warning("no policy configured: every call is denied")

    async def _pull_forever(self) -> None:
        assert self._puller is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), self.settings.pull_interval_s)
        await self._puller.run(self.settings.pull_interval_s, self._stop)

    async def aclose(self) -> None:
        """Stop pulling and close the OPA client (idempotent)."""
        self._stop.set()
        task, self._task = self._task, None
        if task is not None:
            await task
        opa, self._opa = self._opa, None
        if opa is not None:
            await opa.aclose()
