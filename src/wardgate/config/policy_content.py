"""The ``[policy]`` and ``[content]`` sections: authorization as code and content guards.

Strict like the rest of the schema (unknown keys are errors). Each section maps onto the
frozen settings its library takes: :class:`PolicyConfig` onto
:class:`wardgate.policy.runtime.PolicySettings`, :class:`ContentConfig` (with a route's
``[routes.X.content]`` merged over it) onto
:class:`wardgate.content.guard_settings.ContentSettings`.
Nothing here imports an optional backend: whether ``cedarpy``, ``regopy``, ``hyperscan``
or ``jsonschema-rs`` is installed is checked when the gateway is built.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from wardgate.config._base import ConfigFault
from wardgate.config._base import StrictModel as _Strict
from wardgate.content.guard_settings import ContentSettings, OutputPolicy
from wardgate.content.integrity import ScanLimits
from wardgate.content.output import FloodCaps
from wardgate.content.size_limits import Limits
from wardgate.content.validation import InputPolicy
from wardgate.policy.inputs import InputConfig
from wardgate.policy.runtime import PolicySettings

__all__ = [
    "CONTENT_GUARDS",
    "ContentConfig",
    "ContentInputConfig",
    "ContentOutputConfig",
    "ContentPinsConfig",
    "ContentRedactConfig",
    "ContentRouteConfig",
    "PolicyConfig",
    "PolicyInputConfig",
    "PolicyOpaConfig",
    "SecretPatternConfig",
]

#: The content guards a route can run; the gateway always composes them in this order.
CONTENT_GUARDS = ("redact", "output", "controls", "integrity", "validate")
_Guard = Literal["redact", "output", "controls", "integrity", "validate"]


# -- [policy] ---------------------------------------------------------------------------


class PolicyOpaConfig(_Strict):
    """``[policy.opa]``: an OPA server's Data API."""

    url: str = Field(pattern=r"^https?://[^/@\s]+(/.*)?$")
    path: str = Field("wardgate/authz/decision", pattern=r"^[A-Za-z0-9_./-]{1,256}$")
    timeout_ms: int = Field(500, ge=1, le=60_000)


class PolicyInputConfig(_Strict):
    """``[policy.input]``: what the operator declares for building policy inputs."""

    #: ``[[cidr, score], ...]``; the most specific match wins.
    risk_table: tuple[tuple[str, int], ...] = ()
    default_risk: int = Field(0, ge=0, le=100)
    tenant_time_zones: dict[str, str] = Field(default_factory=dict)
    default_time_zone: str = "UTC"
    #: Route name -> the tenant whose data the route serves.
    route_tenants: dict[str, str] = Field(default_factory=dict)
    groups_claim: str = "groups"
    kind_claim: str = "wardgate_kind"
    device_claim: str = "device_trusted"
    rate_window_seconds: float = Field(60.0, gt=0, le=86_400)


class PolicyConfig(_Strict):
    """``[policy]``: with this section every call is decided by the policy engine, and
    with no policy loaded nothing is allowed.

    Exactly one source: ``dir`` (a policy set directory), ``registry_url`` with
    ``public_key_file`` (signed bundles), or ``engine = "opa"`` with ``[policy.opa]``.
    """

    engine: Literal["cedar", "rego", "opa"] = "cedar"
    dir: str | None = None
    registry_url: str | None = Field(None, pattern=r"^https?://[^/@\s]+(/.*)?$")
    public_key_file: str | None = None
    pull_interval_seconds: float = Field(30.0, ge=1, le=86_400)
    #: The registry may be on loopback / a private network (refused by default: SSRF).
    registry_allow_loopback: bool = False
    registry_allow_private: bool = False
    #: Named, logged, never the default: an engine failure allows instead of denying.
    fail_open: bool = False
    opa: PolicyOpaConfig | None = None
    input: PolicyInputConfig = PolicyInputConfig()
    #: Tool (unprefixed name) -> ``{attribute: argument path}``; ``tenant`` sets whose
    #: data the call reaches.
    tools: dict[str, dict[str, str]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_source(self) -> PolicyConfig:
        sources = [
            k for k, v in (("dir", self.dir), ("registry_url", self.registry_url)) if v is not None
        ]
        # ConfigFault carries the key to blame, so the loader names its line.
        if self.engine == "opa":
            if self.opa is None:
                raise ConfigFault(("policy", "engine"), "engine 'opa' needs [policy.opa] url")
            if sources:
                raise ConfigFault(
                    ("policy", sources[0]), "engine 'opa' takes no policy files: OPA holds them"
                )
        elif self.opa is not None:
            raise ConfigFault(("policy", "opa"), "[policy.opa] is only for engine = 'opa'")
        elif len(sources) != 1:
            raise ConfigFault(("policy",), "give exactly one of dir or registry_url")
        if self.registry_url is not None and self.public_key_file is None:
            raise ConfigFault(
                ("policy", "registry_url"), "needs public_key_file (bundles are verified)"
            )
        if self.public_key_file is not None and self.registry_url is None:
            raise ConfigFault(("policy", "public_key_file"), "is only for registry_url")
        return self

    def settings(self) -> PolicySettings:
        """The library's settings for this section."""
        i = self.input
        return PolicySettings(
            # A directory's own files say which language it holds; the runtime refuses a
            # mismatch with the configured engine.
            engine=self.engine,
            dir=self.dir,
            registry_url=self.registry_url,
            public_key_file=self.public_key_file,
            pull_interval_s=self.pull_interval_seconds,
            fail_open=self.fail_open,
            opa_url=self.opa.url if self.opa is not None else None,
            opa_path=self.opa.path if self.opa is not None else "wardgate/authz/decision",
            opa_timeout_s=self.opa.timeout_ms / 1000 if self.opa is not None else 0.5,
            input=InputConfig(
                tool_attributes=self.tools,
                risk_table=i.risk_table,
                default_risk=i.default_risk,
                tenant_time_zones=i.tenant_time_zones,
                default_time_zone=i.default_time_zone,
                route_tenants=i.route_tenants,
                groups_claim=i.groups_claim,
                kind_claim=i.kind_claim,
                device_claim=i.device_claim,
                rate_window_s=i.rate_window_seconds,
            ),
        )


# -- [content] --------------------------------------------------------------------------


class _InputValues(_Strict):
    closed: bool = True
    max_string_bytes: int = Field(8 * 1024, ge=1)
    max_array_items: int = Field(1000, ge=1)
    max_depth: int = Field(15, ge=1, le=1000)
    max_total_bytes: int = Field(256 * 1024, ge=1)
    max_object_keys: int = Field(1000, ge=1)
    deny_tells: tuple[Literal["bidi", "invisible", "tag", "confusable"], ...] = (
        "bidi",
        "invisible",
        "tag",
    )
    injection_threshold: float = Field(0.6, ge=0, le=10)
    injection_action: Literal["deny", "flag"] = "deny"

    def policy(self) -> InputPolicy:
        return InputPolicy(
            limits=Limits(
                max_string_bytes=self.max_string_bytes,
                max_array_items=self.max_array_items,
                max_depth=self.max_depth,
                max_total_bytes=self.max_total_bytes,
                max_object_keys=self.max_object_keys,
            ),
            closed=self.closed,
            deny_tells=frozenset(self.deny_tells),
            injection_threshold=self.injection_threshold,
            injection_action=self.injection_action,
        )


class ContentInputConfig(_InputValues):
    """``[…content.input]``; ``[…content.input.tools.NAME]`` overrides keys for one tool."""

    tools: dict[str, _InputValues] = Field(default_factory=dict)


class _OutputValues(_Strict):
    max_bytes: int = Field(256 * 1024, ge=1024)
    max_items: int = Field(100, ge=1)
    action: Literal["truncate", "refuse"] = "truncate"
    strip_controls: bool = True
    allow_error_text: bool = False
    injection_action: Literal["off", "annotate", "redact", "quarantine"] = "annotate"
    injection_threshold: float = Field(0.6, ge=0, le=10)

    def policy(self) -> OutputPolicy:
        return OutputPolicy(
            caps=FloodCaps(max_bytes=self.max_bytes, max_items=self.max_items, action=self.action),
            allow_error_text=self.allow_error_text,
            strip_controls=self.strip_controls,
            injection_action=self.injection_action,
            injection_threshold=self.injection_threshold,
        )


class ContentOutputConfig(_OutputValues):
    """``[…content.output]``; ``[…content.output.tools.NAME]`` overrides keys for one tool."""

    tools: dict[str, _OutputValues] = Field(default_factory=dict)


def _override(base: _Strict, tool: _Strict) -> dict[str, object]:
    """A tool's table over the route's values: only the keys the tool's table writes."""
    merged = {k: getattr(base, k) for k in type(tool).model_fields}
    merged.update({k: getattr(tool, k) for k in tool.model_fields_set})
    return merged


class ContentRouteConfig(_Strict):
    """The content settings one route can set (``[routes.X.content]``); the keys it writes
    replace the gateway-wide ``[content]`` ones, the others are inherited."""

    #: Which content guards run (composed in the design's order whatever the order here).
    #: ``controls`` is the terminal-safety part of ``output`` alone (``output`` also
    #: replaces upstream error text, so it is opt-in).
    guards: tuple[_Guard, ...] = ("redact", "controls")
    unlisted: Literal["check", "deny"] = "check"
    on_new: Literal["allow", "hold", "deny"] = "allow"
    scan_action: Literal["hold", "flag"] = "hold"
    max_description: int = Field(2048, ge=1)
    max_parameter_description: int = Field(1024, ge=1)
    scan_threshold: float = Field(0.4, ge=0, le=10)
    #: Upstream name -> its identity for pins (default: ``stdio:`` + command, or the URL).
    identities: dict[str, str] = Field(default_factory=dict)
    input: ContentInputConfig = ContentInputConfig()
    output: ContentOutputConfig = ContentOutputConfig()

    def settings(self, identities: dict[str, str]) -> ContentSettings:
        """The library's settings; ``identities`` are the defaults from the upstreams."""
        return ContentSettings(
            input=self.input.policy(),
            input_tools={
                n: _InputValues.model_validate(_override(self.input, t)).policy()
                for n, t in self.input.tools.items()
            },
            output=self.output.policy(),
            output_tools={
                n: _OutputValues.model_validate(_override(self.output, t)).policy()
                for n, t in self.output.tools.items()
            },
            unlisted=self.unlisted,
            on_new=self.on_new,
            scan_action=self.scan_action,
            scan=ScanLimits(
                max_description=self.max_description,
                max_parameter_description=self.max_parameter_description,
                threshold=self.scan_threshold,
            ),
            identities={**identities, **self.identities},
        )


class SecretPatternConfig(_Strict):
    """``[[content.redact.patterns]]``: an operator's secret kind."""

    kind: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    regex: str = Field(min_length=1, max_length=4096)
    max_len: int = Field(ge=1, le=65_536)
    group: int = Field(0, ge=0, le=99)


class ContentRedactConfig(_Strict):
    """``[content.redact]``: the one redactor of the gateway."""

    #: ``auto`` takes Hyperscan when installed and falls back to ``re`` with a warning.
    engine: Literal["auto", "hyperscan", "re"] = "auto"
    patterns: tuple[SecretPatternConfig, ...] = ()


class ContentPinsConfig(_Strict):
    """``[content.pins]``: where tool pins live. ``memory`` holds them in this process
    only (``wardgate pins`` cannot reach them); ``redis`` shares them with the fleet."""

    store: Literal["memory", "redis"] = "memory"
    redis_url: str = Field("redis://127.0.0.1:6379/0", pattern=r"^rediss?://")
    key_prefix: str = Field("wardgate:", min_length=1, max_length=128)


class ContentConfig(ContentRouteConfig):
    """``[content]``: the gateway-wide content settings (see :class:`ContentRouteConfig`)."""

    redact: ContentRedactConfig = ContentRedactConfig()
    pins: ContentPinsConfig = ContentPinsConfig()

    def for_route(self, route: ContentRouteConfig | None) -> ContentRouteConfig:
        """This section with a route's table over it (top-level keys replace)."""
        if route is None:
            return self
        merged = {k: getattr(self, k) for k in ContentRouteConfig.model_fields}
        merged.update({k: getattr(route, k) for k in route.model_fields_set})
        return ContentRouteConfig.model_validate(merged)
