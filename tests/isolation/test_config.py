"""The isolation and process-cap keys are typed strictly and reported by key."""

from __future__ import annotations

import sys

import pytest

from wardgate.config import parse_config
from wardgate.errors import ConfigError


def _config(upstream_extra: str = "", route_extra: str = "") -> str:
    return f"""
[upstreams.s]
transport = "stdio"
command = ["{sys.executable}"]
sandbox = "insecure-none"
{upstream_extra}

[routes.r]
upstreams = ["s"]
{route_extra}
"""


def test_defaults_isolate_tenants_and_cap_processes() -> None:
    config = parse_config(_config())
    upstream = config.upstreams["s"]
    assert config.routes["r"].isolation == "tenant"
    assert (upstream.max_processes, upstream.idle_seconds) == (16, 300.0)  # type: ignore[union-attr]


def test_values_are_taken() -> None:
    config = parse_config(_config("max_processes = 4\nidle_seconds = 30", 'isolation = "shared"'))
    upstream = config.upstreams["s"]
    assert config.routes["r"].isolation == "shared"
    assert (upstream.max_processes, upstream.idle_seconds) == (4, 30.0)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("upstream_extra", "route_extra", "key"),
    [
        ("max_processes = true", "", "upstreams.s.max_processes"),
        ("max_processes = 0", "", "upstreams.s.max_processes"),
        ('max_processes = "8"', "", "upstreams.s.max_processes"),
        ("idle_seconds = 0", "", "upstreams.s.idle_seconds"),
        ('idle_seconds = "60"', "", "upstreams.s.idle_seconds"),
        ("", 'isolation = "nobody"', "routes.r.isolation"),
        ("", "isolation = true", "routes.r.isolation"),
    ],
)
def test_bad_values_are_refused_by_key(upstream_extra: str, route_extra: str, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(_config(upstream_extra, route_extra), "g.toml")
    assert key in caught.value.detail
