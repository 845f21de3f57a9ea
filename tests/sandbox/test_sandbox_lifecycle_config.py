"""The per-call, CPU and start keys of a stdio upstream: bounded values load, others are
refused at start-up naming the file and the key."""

from __future__ import annotations

import pytest

from wardgate.config.loader import parse_config
from wardgate.config.model import StdioUpstreamConfig
from wardgate.errors import ConfigError

BASE = """\
[upstreams.runner]
transport = "stdio"
command = ["python3", "-c", "pass"]
{extra}

[routes.main]
upstreams = ["runner"]
"""


def _upstream(extra: str) -> StdioUpstreamConfig:
    config = parse_config(BASE.format(extra=extra), "gateway.toml")
    upstream = config.upstreams["runner"]
    assert isinstance(upstream, StdioUpstreamConfig)
    return upstream


def test_defaults_are_per_session_lazy_and_one_core() -> None:
    up = _upstream("")
    assert up.per_call is None and up.start == "lazy" and up.sandbox_limits.cpu == 1.0


def test_per_call_tools_and_pool_load() -> None:
    up = _upstream(
        'start = "eager"\nsandbox_limits = { cpu = 0.5 }\n'
        '[upstreams.runner.per_call]\ntools = ["run_code"]\nwarm_pool = 3'
    )
    assert up.start == "eager" and up.sandbox_limits.cpu == 0.5
    assert up.per_call is not None and up.per_call.warm_pool == 3
    assert up.per_call.covers("run_code") and not up.per_call.covers("read_file")
    assert _upstream('[upstreams.runner.per_call]\ntools = ["*"]').per_call.covers("x")  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("[upstreams.runner.per_call]\ntools = []", "tools"),
        ('[upstreams.runner.per_call]\ntools = ["x"]\nwarm_pool = 1000', "warm_pool"),
        ('[upstreams.runner.per_call]\ntools = ["x"]\nmax_concurrent = 0', "max_concurrent"),
        ('[upstreams.runner.per_call]\ntools = ["x"]\nwait_seconds = 3600', "wait_seconds"),
        ("sandbox_limits = { cpu = 0 }", "cpu"),
        ('start = "sometimes"', "start"),
    ],
)
def test_unbounded_values_are_refused(extra: str, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _upstream(extra)
    assert "gateway.toml:" in str(caught.value) and key in str(caught.value)
