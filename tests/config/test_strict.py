"""Config types are strict, and every fault, cross-references included, names file, line
and key."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

from wardgate.config import GatewayConfig, parse_config
from wardgate.errors import ConfigError

GOOD = f"""
[server]
port = 9000
max_body_bytes = 65536
session_idle_seconds = 600
legacy_sse = true
allowed_origins = ["http://localhost:3000"]

[upstreams.demo]
transport = "stdio"
command = ["{sys.executable}", "-m", "wardgate.demo.server"]
sandbox = "insecure-none"
request_timeout_seconds = 30.5

[upstreams.web]
transport = "http"
url = "http://127.0.0.1:9/mcp"

[routes.main]
upstreams = ["demo", "web"]
tools = {{ deny = ["demo__delete_*"] }}
"""


def _fault(source: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(source, "g.toml")
    return caught.value.detail


def test_toml_native_types_still_work() -> None:
    config = parse_config(GOOD, "g.toml")
    assert config.server.port == 9000
    assert config.server.session_idle_seconds == 600.0  # an integer is a fine float
    assert config.server.allowed_origins == ("http://localhost:3000",)
    assert config.routes["main"].tools.deny == ("demo__delete_*",)
    assert config.upstreams["demo"].request_timeout_seconds == 30.5


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        ("port = 9000", "port = true", "g.toml:3: server.port:"),
        ("port = 9000", 'port = "9000"', "g.toml:3: server.port:"),
        ("port = 9000", "port = 9000.0", "g.toml:3: server.port:"),
        ("max_body_bytes = 65536", 'max_body_bytes = "65536"', "g.toml:4: server.max_body_bytes:"),
        ("max_body_bytes = 65536", "max_body_bytes = 65536.5", "g.toml:4: server.max_body_bytes:"),
        ("session_idle_seconds = 600", "session_idle_seconds = true", "g.toml:5:"),
        ("session_idle_seconds = 600", 'session_idle_seconds = "600"', "g.toml:5:"),
        ("legacy_sse = true", "legacy_sse = 1", "g.toml:6: server.legacy_sse:"),
        ("legacy_sse = true", 'legacy_sse = "yes"', "g.toml:6: server.legacy_sse:"),
        ('allowed_origins = ["http://localhost:3000"]', "allowed_origins = [1]", "g.toml:7:"),
        (
            'allowed_origins = ["http://localhost:3000"]',
            'allowed_origins = "http://localhost:3000"',
            "g.toml:7: server.allowed_origins:",
        ),
        (
            "request_timeout_seconds = 30.5",
            'request_timeout_seconds = "30"',
            "g.toml:13: upstreams.demo.request_timeout_seconds:",
        ),
        (
            '[upstreams.web]\ntransport = "http"',
            '[upstreams.web]\ntransport = "http"\nheaders = { x = 1 }',
            "g.toml:17: upstreams.web.headers.x:",
        ),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_at_its_line(old: str, new: str, where: str) -> None:
    assert old in GOOD
    assert where in _fault(GOOD.replace(old, new, 1))


def test_strictness_reaches_the_identity_sections() -> None:
    source = (
        GOOD
        + """
[auth]
resource = "https://mcp.example"
failure_floor_ms = "50"
dpop = 1

[[auth.issuers]]
issuer = "https://idp.example"
"""
    )
    fault = _fault(source)
    assert "g.toml:25: auth.failure_floor_ms:" in fault
    assert "g.toml:26: auth.dpop:" in fault


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        (
            'upstreams = ["demo", "web"]',
            'upstreams = ["demo", "nope"]',
            "g.toml:20: routes.main.upstreams: unknown upstream 'nope'",
        ),
        (
            'upstreams = ["demo", "web"]',
            'upstreams = ["demo", "demo"]',
            "g.toml:20: routes.main.upstreams: 'demo' is listed twice",
        ),
        (
            'upstreams = ["demo", "web"]',
            'upstreams = ["demo", "web"]\nprefixes = { web = "demo" }',
            "g.toml:21: routes.main.prefixes: prefixes 'demo' and 'demo' collide",
        ),
        (
            'upstreams = ["demo", "web"]',
            'upstreams = ["demo", "web"]\nprefixes = { web = "", demo = "" }',
            "g.toml:21: routes.main.prefixes: at most one upstream may have an empty prefix",
        ),
        (
            'upstreams = ["demo", "web"]',
            'upstreams = ["demo"]\nprefixes = { web = "w" }',
            "g.toml:21: routes.main.prefixes.web:",
        ),
        (
            'tools = { deny = ["demo__delete_*"] }',
            "[routes.main.auth]\nrequired_scopes = ['x']",
            "g.toml:21: routes.main.auth: needs an [auth] section",
        ),
        (
            "port = 9000",
            'port = 9000\nhost = "0.0.0.0"',
            "g.toml:4: server.host: serving on a non-loopback address",
        ),
    ],
)
def test_cross_references_point_at_the_line_to_fix(old: str, new: str, where: str) -> None:
    assert old in GOOD.replace("{{", "{").replace("}}", "}")
    assert where in _fault(GOOD.replace(old, new, 1))


def test_a_stdio_command_that_does_not_exist_is_a_config_error_at_its_line() -> None:
    fault = _fault(GOOD.replace(sys.executable, "wardgate-no-such-program"))
    assert "g.toml:11: upstreams.demo.command: 'wardgate-no-such-program' not found" in fault
    fault = _fault(GOOD.replace(sys.executable, "/nonexistent/wardgate-test-binary"))
    assert "g.toml:11: upstreams.demo.command:" in fault


def test_a_relative_command_is_looked_up_from_its_cwd(tmp_path: Path) -> None:
    program = tmp_path / "server.sh"
    program.write_text("#!/bin/sh\nexit 0\n")
    source = GOOD.replace(f'command = ["{sys.executable}", "-m", "wardgate.demo.server"]', "")
    source = source.replace(
        'sandbox = "insecure-none"',
        f'sandbox = "insecure-none"\ncommand = ["./server.sh"]\ncwd = "{tmp_path}"',
    )
    assert "is not an executable file" in _fault(source)  # not executable yet
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    assert parse_config(source, "g.toml").upstreams["demo"].command == ("./server.sh",)


def test_a_config_built_in_code_reports_the_key_path() -> None:
    """``wardgate wrap`` builds its config in code: the fault is still a ConfigError."""
    with pytest.raises(ConfigError) as caught:
        GatewayConfig.model_validate(
            {
                "upstreams": {
                    "wrapped": {
                        "transport": "stdio",
                        "command": ["wardgate-no-such-program"],
                        "sandbox": "insecure-none",
                    }
                },
                "routes": {"wrap": {"upstreams": ["wrapped"]}},
            }
        )
    assert caught.value.detail.startswith("upstreams.wrapped.command:")


def test_one_member_may_have_the_empty_prefix() -> None:
    """Documented in docs/configuration.md: its names pass unprefixed, and a name that
    starts with another member's prefix and separator goes to that member."""
    source = GOOD.replace(
        'upstreams = ["demo", "web"]', 'upstreams = ["demo", "web"]\nprefixes = { demo = "" }'
    )
    route = parse_config(source, "g.toml").routes["main"]
    assert route.prefix_of("demo") == "" and route.prefix_of("web") == "web"
