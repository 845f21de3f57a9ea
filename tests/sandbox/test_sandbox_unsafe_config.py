"""Unsafe sandbox configs never start: the error names the file, the line and the key."""

from __future__ import annotations

import subprocess
import sys

import pytest

from wardgate.config.loader import parse_config
from wardgate.errors import ConfigError

BASE = """\
[upstreams.ci]
transport = "stdio"
command = ["python3", "-c", "pass"]
{extra}

[routes.main]
upstreams = ["ci"]
"""


def _parse(extra: str, head: str = "") -> None:
    parse_config(head + BASE.format(extra=extra), "gateway.toml")


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ('read_only_paths = ["/var/run/docker.sock"]', "read_only_paths"),  # "for easy CI"
        ('read_only_paths = ["/usr", "/run/docker.sock"]', "read_only_paths"),
        ('read_only_paths = ["/var/run"]', "read_only_paths"),  # exposes the socket
        ('read_only_paths = ["/proc"]', "read_only_paths"),
        ('read_only_paths = ["/sys/fs/cgroup"]', "read_only_paths"),
        ('read_only_paths = ["/"]', "read_only_paths"),
        ('read_only_paths = ["/home/alice/.aws"]', "read_only_paths"),  # not allowed
        ('read_only_paths = ["/usr/../etc"]', "read_only_paths"),
        ("privileged = true", "privileged"),
        ('env = { AWS_SECRET_ACCESS_KEY = "x" }', "env"),
        ('env = { VAULT_TOKEN = "x" }', "env"),
        ('egress = ["*.example.com:443"]', "egress"),
        ('sandbox = "insecure-none"\nsecrets = { TOKEN = "env:T" }', "sandbox"),
    ],
)
def test_unsafe_config_is_refused_naming_file_line_and_key(extra: str, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _parse(extra)
    text = str(caught.value)
    assert "gateway.toml:" in text
    assert key in text
    line = int(text.split("gateway.toml:", 1)[1].split(":", 1)[0])
    assert BASE.format(extra=extra).splitlines()[line - 1].startswith(key)


def test_allowed_paths_widen_only_what_the_operator_lists() -> None:
    with pytest.raises(ConfigError):
        _parse('read_only_paths = ["/srv/tools"]', '[sandbox]\nallowed_host_paths = ["/opt"]\n\n')
    _parse('read_only_paths = ["/opt/tools"]', '[sandbox]\nallowed_host_paths = ["/opt"]\n\n')
    with pytest.raises(ConfigError):  # the allowed set itself may not hold the socket
        _parse("", '[sandbox]\nallowed_host_paths = ["/var/run"]\n\n')


def test_a_safe_sandboxed_config_loads() -> None:
    _parse('read_only_paths = ["/usr/share/zoneinfo"]\negress = ["API.example.com.:443"]')


def test_wrap_refuses_the_docker_socket_on_the_command_line() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "wardgate.cli",
            "wrap",
            "--sandbox",
            "bubblewrap",
            "--read-only",
            "/var/run/docker.sock",
            "--",
            "/usr/bin/true",
        ],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert b"sandbox.allowed_host_paths" in done.stderr  # the key, with the path
    assert b"/var/run/docker.sock" in done.stderr
