"""A bad config never starts: every fault is reported with file, line and key."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from wardgate.cli import main
from wardgate.config import parse_config
from wardgate.errors import ConfigError

GOOD = f"""
[server]
port = 9000

[upstreams.demo]
transport = "stdio"
command = ["{sys.executable}", "-m", "wardgate.demo.server"]
sandbox = "insecure-none"

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


def test_a_good_config_parses() -> None:
    config = parse_config(GOOD)
    assert config.server.port == 9000
    assert config.routes["main"].prefix_of("web") == "web"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("port = 9000", "port = 99999", "g.toml:3: server.port: Input should be less than"),
        ("port = 9000", "port = 9000\nbogus = 1", "g.toml:4: server.bogus: unknown key"),
        # No sandbox key means "auto" (a real sandbox); an unknown runner is refused.
        (
            'sandbox = "insecure-none"',
            'sandbox = "docker"',
            "g.toml:8: upstreams.demo.sandbox: Input should be",
        ),
        ('url = "http://127.0.0.1:9/mcp"', 'url = "ftp://x"', "g.toml:12: upstreams.web.url:"),
        (
            'url = "http://127.0.0.1:9/mcp"',
            'url = "http://u:p@h/mcp"',
            "must not carry credentials",
        ),
        ('upstreams = ["demo", "web"]', 'upstreams = ["demo", "nope"]', "unknown upstream 'nope'"),
        ('transport = "http"', 'transport = "carrier-pigeon"', "upstreams.web"),
    ],
)
def test_faults_name_file_line_and_key(old: str, new: str, expected: str) -> None:
    assert expected in _fault(GOOD.replace(old, new))


def test_colliding_prefixes_are_refused() -> None:
    source = GOOD.replace('tools = {{ deny = ["demo__delete_*"] }}', "").replace(
        'upstreams = ["demo", "web"]', 'upstreams = ["demo", "web"]\nprefixes = { web = "demo" }'
    )
    assert "collide" in _fault(source)


def test_not_toml_is_reported_with_position() -> None:
    assert "g.toml: not valid TOML" in _fault("[server\nport = 1")


def test_cli_check_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.toml"
    good.write_text(GOOD)
    assert main(["check", "--config", str(good)]) == 0
    assert "OK" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD.replace("port = 9000", "port = -1"))
    assert main(["check", "--config", str(bad)]) == 2
    assert f"{bad}:3: server.port" in capsys.readouterr().err
    assert main(["check", "--config", str(tmp_path / "missing.toml")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_cli_check_refuses_a_command_not_on_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "g.toml"
    cfg.write_text(GOOD.replace(sys.executable, "/nonexistent/wardgate-test-binary"))
    assert main(["check", "--config", str(cfg)]) == 2
    assert "upstreams.demo.command" in capsys.readouterr().err
