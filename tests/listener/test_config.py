"""The listener keys of ``[server]``: strict types, sane bounds, faults named by line."""

from __future__ import annotations

import pytest

from wardgate.config import parse_config
from wardgate.edge.connections import ListenerLimits
from wardgate.errors import ConfigError

BASE = """
[server]
{line}

[upstreams.up]
transport = "http"
url = "http://127.0.0.1:9/mcp"

[routes.main]
upstreams = ["up"]
"""


@pytest.mark.parametrize(
    "line",
    [
        "max_connections = true",  # a bool is not a number
        'header_timeout_seconds = "5"',  # nor is a string
        "max_headers = 50.0",  # an int key takes no float
        "body_timeout_seconds = 0",
        "max_header_bytes = 100",  # below the floor: no real request fits
        "max_connections_per_ip = 0",
        "keepalive_timeout_seconds = -1",
        "max_requests_per_connection = 0",
        "shutdown_drain_seconds = -0.5",
    ],
)
def test_bad_listener_values_are_refused_with_their_line(line: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(BASE.format(line=line), "g.toml")
    assert caught.value.code == "wardgate.config"
    assert "g.toml:3:" in caught.value.detail and line.split()[0] in caught.value.detail


def test_listener_limits_follow_the_config() -> None:
    config = parse_config(
        BASE.format(
            line="header_timeout_seconds = 3\nmax_connections = 7\nmax_connections_per_ip = 2"
        )
    )
    limits = ListenerLimits.from_config(config.server)
    assert limits.header_timeout == 3.0 and limits.max_connections == 7
    assert limits.max_connections_per_ip == 2
    defaults = ListenerLimits.from_config(parse_config(BASE.format(line="")).server)
    assert defaults == ListenerLimits()
