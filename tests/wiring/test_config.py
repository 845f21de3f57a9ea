"""``[policy]`` and ``[content]`` in the config file: strict, located errors; missing
optional backends named by their extra; per-route and per-tool content overrides."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from tests.wiring.conftest import policy_dir, shifty_upstream_toml, tool_permit
from wardgate.config import parse_config
from wardgate.config.model import GatewayConfig
from wardgate.content.guards import IntegrityGuard, RedactGuard, ValidateGuard
from wardgate.errors import ConfigError
from wardgate.gateway import Gateway
from wardgate.guards.controls import ControlsGuard
from wardgate.policy.guard import PolicyGuard

ROUTE = shifty_upstream_toml() + '[routes.weather]\nupstreams = ["shifty"]\n'


def _error(source: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(source, "gw.toml")
    return caught.value.detail


@pytest.mark.parametrize(
    ("tail", "line", "key"),
    [
        ('[policy]\ndir = "p"\nbogus = 1\n', 3, "policy.bogus"),
        ('[policy]\nengine = "zanzibar"\ndir = "p"\n', 2, "policy.engine"),
        ('[policy]\nfail_open = "yes please"\ndir = "p"\n', 2, "policy.fail_open"),
        ("[policy.input]\ndefault_risk = 500\n", 2, "policy.input.default_risk"),
        ('[content]\nguards = ["redact", "shred"]\n', 2, "content.guards.1"),
        ('[content.output]\naction = "explode"\n', 2, "content.output.action"),
        (
            '[content.input.tools.run_query]\nclosed = "maybe"\n',
            2,
            "content.input.tools.run_query.closed",
        ),
        ('[content.pins]\nstore = "etcd"\n', 2, "content.pins.store"),
    ],
)
def test_bad_sections_name_file_line_and_key(tail: str, line: int, key: str) -> None:
    base = len(ROUTE.splitlines())
    detail = _error(ROUTE + tail)
    assert f"gw.toml:{base + line}: {key}:" in detail


def test_a_route_override_names_its_key() -> None:
    detail = _error(ROUTE + '[routes.weather.content]\nunlisted = "maybe"\n')
    assert "routes.weather.content.unlisted" in detail


@pytest.mark.parametrize(
    "tail",
    [
        "[policy]\n",  # no source
        '[policy]\ndir = "a"\nregistry_url = "https://r.example/b"\npublic_key_file = "k"\n',
        '[policy]\nregistry_url = "https://r.example/b"\n',  # unverified bundles
        '[policy]\nengine = "opa"\n',  # opa without its url
    ],
)
def test_policy_sources_are_exactly_one(tail: str) -> None:
    assert "gw.toml" in _error(ROUTE + tail)


def _config(tmp_path: Path, tail: str) -> GatewayConfig:
    authz = policy_dir(tmp_path, tool_permit("t", ["get_weather"]))
    return parse_config(ROUTE + f'[policy]\ndir = "{authz}"\n' + tail)


def _names(gateway: Gateway, route: str = "weather") -> list[str]:
    return [g.name for g in gateway.routes[route].pipeline.guards]


def test_guards_run_in_the_designs_order(tmp_path: Path) -> None:
    config = _config(
        tmp_path, '[content]\nguards = ["validate", "integrity", "redact", "output"]\n'
    )
    assert _names(Gateway(config)) == [
        "policy", "tool_access", "redact", "output", "integrity", "validate",
    ]  # fmt: skip


def test_defaults_redact_and_strip_controls_and_nothing_else() -> None:
    gateway = Gateway(parse_config(ROUTE))
    guards = gateway.routes["weather"].pipeline.guards
    assert [type(g) for g in guards][-2:] == [RedactGuard, ControlsGuard]
    assert not any(isinstance(g, PolicyGuard | ValidateGuard | IntegrityGuard) for g in guards)


def test_route_and_tool_overrides(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        '[content]\nguards = ["redact", "validate"]\n'
        "[content.input]\nmax_string_bytes = 100\n"
        '[content.input.tools.get_weather]\ninjection_action = "flag"\n'
        '[routes.weather.content]\nunlisted = "deny"\n',
    )
    section = config.content.for_route(config.routes["weather"].content)
    assert section.guards == ("redact", "validate")  # inherited
    settings = section.settings({})
    assert settings.unlisted == "deny"
    tool = settings.input_for("get_weather")
    assert tool.injection_action == "flag" and tool.limits.max_string_bytes == 100
    assert settings.input_for("other").injection_action == "deny"


def test_missing_cedarpy_names_the_policy_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path, "")
    monkeypatch.setitem(sys.modules, "cedarpy", None)  # the import fails
    with pytest.raises(ConfigError) as caught:
        Gateway(config)
    assert "pip install 'wardgate[policy]'" in caught.value.detail


def test_missing_regopy_names_the_rego_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    config = parse_config(ROUTE + '[policy]\nengine = "rego"\ndir = "authz"\n')
    monkeypatch.setitem(sys.modules, "regopy", None)
    with pytest.raises(ConfigError) as caught:
        Gateway(config)
    assert "pip install 'wardgate[rego]'" in caught.value.detail


def test_missing_jsonschema_rs_names_the_content_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    config = parse_config(ROUTE + '[content]\nguards = ["validate"]\n')
    monkeypatch.setitem(sys.modules, "jsonschema_rs", None)
    with pytest.raises(ConfigError) as caught:
        Gateway(config)
    assert "pip install 'wardgate[content]'" in caught.value.detail
    # A route that does not validate needs no jsonschema-rs.
    Gateway(parse_config(ROUTE))


async def test_missing_hyperscan_falls_back_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "hyperscan", None)
    with caplog.at_level(logging.WARNING, logger="wardgate"):
        gateway = Gateway(parse_config(ROUTE))
    assert any("wardgate[content]" in r.getMessage() for r in caplog.records)
    assert gateway.guards.redactor is not None
    assert gateway.guards.redactor.engine.name == "re"
    # ... and it still redacts.
    found = gateway.guards.redactor.redact_json({"t": "key AKIAIOSFODNN7EXAMPLE"})
    assert "AKIAIOSFODNN7EXAMPLE" not in str(found)
    # Asking for hyperscan by name when it is missing is a config error.
    with pytest.raises(ConfigError) as caught:
        Gateway(parse_config(ROUTE + '[content.redact]\nengine = "hyperscan"\n'))
    assert "pip install 'wardgate[content]'" in caught.value.detail


async def test_a_policy_that_does_not_load_never_starts_the_gateway(tmp_path: Path) -> None:
    authz = tmp_path / "authz"
    authz.mkdir()
    (authz / "p.cedar").write_text("permit (principal, action, resource);\n")  # a wildcard
    gateway = Gateway(parse_config(ROUTE + f'[policy]\ndir = "{authz}"\n'))
    with pytest.raises(ConfigError):
        await gateway.start()
    await gateway.aclose()
