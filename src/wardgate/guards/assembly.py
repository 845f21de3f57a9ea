"""Each route's guard chain, built from ``[policy]``, the route's lists and ``[content]``.

The design's order (request guards first to last, reply guards last to first)::

    policy · scopes · tool access · redact · output|controls · integrity · validate
    · limits ([limits], built by the gateway) · the embedder's extra guards

Authorize first (the policy engine, then the route's scopes and tool lists), then the
content guards in the order :func:`wardgate.content.content_guards` gives: on the way
back redaction runs last of them, over whatever reaches the client.

What is shared by every route is built once here: the policy runtime (one engine in
force, hot reloaded), the redactor, the compiled-schema cache, the tool catalog (so the
shadowing scan knows every upstream) and the pin store. Construction does no I/O;
:meth:`GuardAssembly.start` loads the policy and :meth:`GuardAssembly.aclose` stops it.
A missing optional backend fails here, at start-up, naming the extra to install.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from wardgate.config.model import (
    GatewayConfig,
    HttpUpstreamConfig,
    RouteConfig,
    SseUpstreamConfig,
    StdioUpstreamConfig,
)
from wardgate.config.policy_content import ContentConfig, PolicyConfig
from wardgate.content.guard_settings import ToolCatalog
from wardgate.content.guards import IntegrityGuard, OutputGuard, RedactGuard, ValidateGuard
from wardgate.content.patterns import BUILTIN_PATTERNS, pattern_from_config
from wardgate.content.pins import MemoryPinStore, PinBook, PinStore, RedisPinStore
from wardgate.content.redactor import Redactor
from wardgate.content.scanner import hyperscan_available
from wardgate.content.schema import SchemaCache
from wardgate.content.validation import InputValidator
from wardgate.core.pipeline import Guard
from wardgate.errors import ConfigError
from wardgate.guards.controls import ControlsGuard
from wardgate.net.fetch import FetchPolicy, SafeFetcher
from wardgate.policy.engines import PolicyLoadError
from wardgate.policy.guard import PolicyGuard, federated_names
from wardgate.policy.runtime import PolicyRuntime
from wardgate.policy.source import engine_from_files, read_policy_dir

__all__ = ["GuardAssembly", "authorization_note", "require_extra", "upstream_identity"]

log = logging.getLogger("wardgate")

#: Optional backends: module -> (what needs it, the extra that installs it).
EXTRAS = {
    "cedarpy": ("the cedar policy engine", "policy"),
    "regopy": ("the rego policy engine", "rego"),
    "jsonschema_rs": ("content input validation", "content"),
    "hyperscan": ("the hyperscan redaction engine", "content"),
    "redis": ("pins in redis", "redis"),
}

#: The largest registry document (a base64 bundle of at most 8 MiB plus its signature).
_REGISTRY_MAX_BYTES = 12 * 1024 * 1024


def require_extra(module: str) -> None:
    """Import ``module`` or fail with the extra that installs it.

    Raises:
        ConfigError: the module is not installed.
    """
    what, extra = EXTRAS[module]
    try:
        importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"{what} needs the {module} package: pip install 'wardgate[{extra}]'"
        ) from None


def upstream_identity(config: GatewayConfig, name: str) -> str:
    """The pin key of an upstream: ``stdio:`` and its command line, or its URL."""
    up = config.upstreams[name]
    if isinstance(up, StdioUpstreamConfig):
        return "stdio:" + " ".join(up.command)
    assert isinstance(up, HttpUpstreamConfig | SseUpstreamConfig)
    return up.url


def _registry_fetcher(policy: PolicyConfig) -> SafeFetcher | None:
    if policy.registry_url is None:
        return None
    return SafeFetcher(
        FetchPolicy(
            max_bytes=_REGISTRY_MAX_BYTES,
            allow_loopback=policy.registry_allow_loopback,
            allow_private=policy.registry_allow_private,
        )
    )


def _policy_runtime(policy: PolicyConfig, fetcher: SafeFetcher | None) -> PolicyRuntime:
    if policy.engine == "cedar":
        require_extra("cedarpy")
    elif policy.engine == "rego":
        require_extra("regopy")
    return PolicyRuntime(policy.settings(), fetcher=fetcher)


def authorization_note(config: GatewayConfig) -> str:
    """One line saying what decides which calls are allowed (``check`` and ``serve``)."""
    policy = config.policy
    if policy is None:
        return (
            "authorization: no [policy] section; each route's tool allow/deny lists "
            "decide which tools may be called"
        )
    source = policy.dir or policy.registry_url or (policy.opa.url if policy.opa else "?")
    fail_open = "; FAIL-OPEN on engine errors" if policy.fail_open else ""
    return (
        f"authorization: {policy.engine} policy from {source}; default deny "
        f"(no policy loaded: nothing allowed){fail_open}"
    )


def _pin_store(content: ContentConfig) -> tuple[PinStore, Any]:
    """The pin store and the Redis client to close (``None`` for memory)."""
    if content.pins.store == "memory":
        return MemoryPinStore(), None
    require_extra("redis")
    from redis.asyncio import Redis

    client = Redis.from_url(content.pins.redis_url)  # no I/O until the first command
    return RedisPinStore(client, key_prefix=content.pins.key_prefix), client


class GuardAssembly:
    """The shared guard machinery of one gateway, and each route's chain.

    Raises:
        ConfigError: at construction, a missing optional backend (naming its extra),
            a malformed secret pattern or an unusable policy section.
    """

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self._fetcher = _registry_fetcher(config.policy) if config.policy is not None else None
        self.policy: PolicyRuntime | None = (
            _policy_runtime(config.policy, self._fetcher) if config.policy is not None else None
        )
        content = config.content
        used = {g for rc in config.routes.values() for g in content.for_route(rc.content).guards}
        self.redactor: Redactor | None = None
        if "redact" in used:
            engine = content.redact.engine
            if engine == "hyperscan":
                require_extra("hyperscan")
            elif engine == "auto" and not hyperscan_available():
                log.warning(
                    "hyperscan is not installed: secret redaction uses the slower re engine "
                    "(pip install 'wardgate[content]')"
                )
            extra = [
                pattern_from_config(p.kind, p.regex, max_len=p.max_len, group=p.group)
                for p in content.redact.patterns
            ]
            self.redactor = Redactor((*BUILTIN_PATTERNS, *extra), engine=engine)
        self.schemas: SchemaCache | None = None
        if "validate" in used:
            require_extra("jsonschema_rs")
            self.schemas = SchemaCache()
        self.catalog = ToolCatalog()
        self.pins: PinStore
        self.pins, self._redis = _pin_store(content)
        self.identities = {name: upstream_identity(config, name) for name in config.upstreams}

    def authorize(self, name: str, rc: RouteConfig) -> list[Guard]:
        """The policy guard of route ``name`` (none without ``[policy]``).

        A federated route gets its own guard on the shared holder, resolving the
        prefixed names of its lists to the member and unprefixed name.
        """
        if self.policy is None:
            return []
        if len(rc.upstreams) == 1:
            return [self.policy.guard]
        members = [(rc.prefix_of(u), u) for u in rc.upstreams]
        return [
            PolicyGuard(
                self.policy.holder,
                self.policy.guard.builder,
                names=federated_names(members, rc.separator),
            )
        ]

    def content(self, rc: RouteConfig) -> list[Guard]:
        """The content guards a route runs, in the design's order."""
        section = self.config.content.for_route(rc.content)
        if not section.guards:
            return []
        settings = section.settings({u: self.identities[u] for u in rc.upstreams})
        # The order of wardgate.content.content_guards, built one by one so that a guard
        # the route does not run needs none of its backends.
        guards: list[Guard] = []
        if "redact" in section.guards and self.redactor is not None:
            guards.append(RedactGuard(self.redactor))
        if "output" in section.guards:
            guards.append(OutputGuard(settings))
        elif "controls" in section.guards:
            guards.append(ControlsGuard())  # output strips controls itself
        if "integrity" in section.guards:
            book = PinBook(self.pins, on_new=settings.on_new)
            guards.append(IntegrityGuard(settings, self.catalog, book))
        if "validate" in section.guards and self.schemas is not None:
            guards.append(ValidateGuard(settings, self.catalog, InputValidator(self.schemas)))
        return guards

    def check_policy(self) -> None:
        """Load a policy directory once, as start-up would (``wardgate check``); a
        registry or an OPA server is not contacted.

        Raises:
            PolicyLoadError: the policy set does not parse, validate or lint, or holds
                another language than the configured engine.
        """
        policy = self.config.policy
        if policy is None or policy.dir is None:
            return
        engine = engine_from_files(read_policy_dir(policy.dir))
        if engine.name != policy.engine:
            raise PolicyLoadError(f"policy: {policy.dir} holds {engine.name}, not {policy.engine}")

    async def start(self) -> None:
        """Load the policy in force.

        Raises:
            PolicyLoadError: the policy set does not load, or the registry's first
                bundle is refused.
        """
        log.info("%s", authorization_note(self.config))
        if self.policy is None:
            return
        if self._fetcher is not None:
            await self._fetcher.start()
        await self.policy.start()

    async def aclose(self) -> None:
        """Stop pulling bundles, close the OPA client and the pins' Redis client."""
        if self.policy is not None:
            await self.policy.aclose()
        if self._fetcher is not None:
            await self._fetcher.aclose()
        client, self._redis = self._redis, None
        if client is not None:
            await client.aclose()
