"""Where raw TCP pairs listen in the sandbox, the hosts file that names them, and the
config that refuses pairs the forwarder cannot serve."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from wardgate.config.model import GatewayConfig
from wardgate.upstream.tcp_egress import TcpForward, plan_tcp_forwards, write_etc


def test_each_name_gets_its_own_loopback_address_and_literals_listen_on_themselves() -> None:
    plan = plan_tcp_forwards(
        ("db.example.com:5432", "127.0.0.2:6379", "db.example.com:6432", "10.0.0.5:3306")
    )
    assert plan == (
        TcpForward("db.example.com", 5432, "127.0.0.3"),  # .2 is taken by the literal
        TcpForward("127.0.0.2", 6379, "127.0.0.2"),
        TcpForward("db.example.com", 6432, "127.0.0.3"),
        TcpForward("10.0.0.5", 3306, "127.0.0.4"),
    )
    assert plan[0].spec == "127.0.0.3:5432=db.example.com:5432"


def test_hosts_file_maps_names_only_and_a_listed_localhost_only_to_its_forwarder(
    tmp_path: Path,
) -> None:
    binds = write_etc(tmp_path, plan_tcp_forwards(("localhost:6379", "10.0.0.5:3306")))
    assert set(binds) == {"/etc/hosts", "/etc/nsswitch.conf"}
    assert Path(binds["/etc/hosts"]).read_text() == "127.0.0.2\tlocalhost\n"
    assert Path(binds["/etc/nsswitch.conf"]).read_text() == "hosts: files\n"
    assert write_etc(tmp_path / "none", ()) == {}


def _stdio(**extra: object) -> dict[str, object]:
    config = {
        "upstreams": {"u": {"transport": "stdio", "command": [sys.executable], **extra}},
        "routes": {"r": {"upstreams": ["u"]}},
    }
    return config


@pytest.mark.parametrize(
    ("pairs", "fault"),
    [
        (["db:80"], "1024 or above"),
        (["127.0.0.1:3128"], "forwarder's own proxy port"),
        (["*.example.com:5432"], "exact host name"),
        (["db"], "host:port"),
    ],
)
def test_config_refuses_pairs_the_forwarder_cannot_serve(pairs: list[str], fault: str) -> None:
    with pytest.raises(ValidationError, match=fault):
        GatewayConfig.model_validate(_stdio(egress_tcp=pairs))


def test_config_refuses_tcp_egress_without_a_sandbox() -> None:
    with pytest.raises(Exception, match="need a sandbox"):
        GatewayConfig.model_validate(_stdio(egress_tcp=["db:5432"], sandbox="insecure-none"))


def test_config_accepts_listed_pairs_normalised() -> None:
    config = GatewayConfig.model_validate(_stdio(egress_tcp=["DB.Example.com.:5432"]))
    assert config.upstreams["u"].egress_tcp == ("db.example.com:5432",)  # type: ignore[union-attr]
