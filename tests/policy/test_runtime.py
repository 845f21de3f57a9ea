"""The policy runtime the gateway starts: one source, bad policy never starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.policy.conftest import EXAMPLES
from tests.policy.opa_standin import OpaStandIn
from wardgate.policy.engines import PolicyLintError, PolicyLoadError
from wardgate.policy.runtime import PolicyRuntime, PolicySettings
from wardgate.policy.source import read_policy_dir


async def test_a_directory_loads_at_start() -> None:
    runtime = PolicyRuntime(PolicySettings(dir=str(EXAMPLES / "cedar")))
    assert runtime.holder.revision == "none"  # construction does no I/O
    await runtime.start()
    assert runtime.holder.engine.name == "cedar"
    await runtime.aclose()


async def test_a_malformed_policy_never_starts(tmp_path: Path) -> None:
    (tmp_path / "p.cedar").write_text("permit (principal, action, resource);")
    runtime = PolicyRuntime(PolicySettings(dir=str(tmp_path)))
    with pytest.raises(PolicyLintError):
        await runtime.start()
    assert runtime.holder.revision == "none"


async def test_no_policy_denies_everything() -> None:
    runtime = PolicyRuntime(PolicySettings())
    await runtime.start()
    assert runtime.holder.engine.name == "none"


async def test_the_named_engine_must_match_the_set() -> None:
    with pytest.raises(PolicyLoadError):
        await PolicyRuntime(PolicySettings(engine="rego", dir=str(EXAMPLES / "cedar"))).start()


def test_two_sources_are_refused() -> None:
    with pytest.raises(PolicyLoadError):
        PolicyRuntime(PolicySettings(dir="x", opa_url="http://127.0.0.1:8181"))
    with pytest.raises(PolicyLoadError):
        PolicyRuntime(PolicySettings(registry_url="https://policy.example/b"))


async def test_opa_starts_and_closes() -> None:
    files = read_policy_dir(EXAMPLES / "rego")
    opa = OpaStandIn({"authz.rego": files["authz.rego"]}, files["data.json"])
    await opa.start()
    try:
        runtime = PolicyRuntime(PolicySettings(engine="opa", opa_url=opa.url, opa_timeout_s=5))
        await runtime.start()
        assert runtime.holder.engine.name == "opa"
        await runtime.aclose()
        await runtime.aclose()  # idempotent
    finally:
        await opa.stop()


async def test_a_registry_start(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    from tests.policy.test_bundle import KEY, OTHER_KEY, Registry
    from wardgate.net.fetch import FetchPolicy, SafeFetcher
    from wardgate.policy.bundle import build_bundle
    from wardgate.policy.registry import registry_document

    pub = tmp_path / "pub.pem"
    pub.write_bytes(
        KEY.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    registry = Registry()
    await registry.start()
    fetcher = SafeFetcher(FetchPolicy(timeout_seconds=2, max_bytes=2**21, allow_loopback=True))
    try:
        settings = PolicySettings(
            registry_url=registry.url, public_key_file=str(pub), pull_interval_s=3600
        )
        # A bundle signed by another key at start: the gateway does not start.
        registry.document = registry_document(build_bundle(EXAMPLES / "cedar", "r0", OTHER_KEY))
        with pytest.raises(PolicyLoadError):
            await PolicyRuntime(settings, fetcher=fetcher).start()
        # A good one: in force, and the puller keeps running until closed.
        registry.document = registry_document(build_bundle(EXAMPLES / "cedar", "r1", KEY))
        runtime = PolicyRuntime(settings, fetcher=fetcher)
        await runtime.start()
        assert runtime.holder.revision == "r1"
        await runtime.aclose()
    finally:
        await fetcher.aclose()
        await registry.stop()


def test_the_policy_errors_have_stable_codes_and_exit_like_config_errors() -> None:
    from wardgate.errors import ConfigError, WardgateError
    from wardgate.policy.engines import BundleRejected, EngineFailure

    loading = (PolicyLoadError, PolicyLintError, BundleRejected)
    assert [c.code for c in loading] == [
        "wardgate.policy.load",
        "wardgate.policy.lint",
        "wardgate.policy.bundle",
    ]
    assert all(issubclass(c, ConfigError) and c.exit_code == 2 for c in loading)
    assert (
        issubclass(EngineFailure, WardgateError) and EngineFailure.code == "wardgate.policy.engine"
    )
