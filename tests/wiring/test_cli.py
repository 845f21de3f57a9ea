"""The operators' commands, run as a user runs them: a new ``wardgate`` process each."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.wiring.conftest import SHIFTY, shifty_upstream_toml, wardgate_cli

EXAMPLES = Path(__file__).parents[2] / "examples" / "policy"
ROUTE = shifty_upstream_toml() + '[routes.weather]\nupstreams = ["shifty"]\n'


def _refused(result: object) -> None:
    """Exit 2 with a message, never a traceback."""
    assert getattr(result, "returncode", None) == 2
    stderr = getattr(result, "stderr", "")
    assert stderr.startswith("wardgate") and "Traceback" not in stderr


def test_policy_lint_and_test_the_example_set() -> None:
    lint = wardgate_cli("policy", "lint", str(EXAMPLES / "cedar"))
    assert lint.returncode == 0 and "ok:" in lint.stdout
    cases = wardgate_cli("policy", "test", str(EXAMPLES / "cedar"), str(EXAMPLES / "cases.toml"))
    assert cases.returncode == 0, cases.stdout
    assert "30/30 cases pass" in cases.stdout


def test_policy_lint_refuses_a_wildcard(tmp_path: Path) -> None:
    (tmp_path / "p.cedar").write_text("permit (principal, action, resource);\n")
    result = wardgate_cli("policy", "lint", str(tmp_path))
    assert result.returncode == 2 and "refused" in result.stdout
    _refused(wardgate_cli("policy", "lint", str(tmp_path / "missing")))


def test_policy_keygen_bundle_verify_and_a_tampered_bundle(tmp_path: Path) -> None:
    assert wardgate_cli("policy", "keygen", "--out", str(tmp_path / "signer")).returncode == 0
    out = tmp_path / "authz.tar.gz"
    built = wardgate_cli(
        "policy", "bundle", str(EXAMPLES / "cedar"), "--revision", "r1",
        "--key", str(tmp_path / "signer.key.pem"), "--out", str(out),
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    pub = str(tmp_path / "signer.pub.pem")
    verified = wardgate_cli("policy", "verify", str(out), "--pubkey", pub)
    assert verified.returncode == 0 and "revision r1" in verified.stdout
    data = bytearray(out.read_bytes())
    data[len(data) // 2] ^= 0xFF
    out.write_bytes(bytes(data))
    _refused(wardgate_cli("policy", "verify", str(out), "--pubkey", pub))


def test_check_says_what_authorizes(tmp_path: Path) -> None:
    plain = tmp_path / "plain.toml"
    plain.write_text(ROUTE)
    result = wardgate_cli("check", "--config", str(plain))
    assert result.returncode == 0
    assert "no [policy] section" in result.stdout and "allow/deny lists" in result.stdout
    with_policy = tmp_path / "policy.toml"
    with_policy.write_text(ROUTE + f'[policy]\ndir = "{EXAMPLES / "cedar"}"\n')
    result = wardgate_cli("check", "--config", str(with_policy))
    assert result.returncode == 0 and "default deny" in result.stdout


def test_check_refuses_a_bad_section_with_its_location(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(ROUTE + '[content]\nguards = ["shred"]\n')
    result = wardgate_cli("check", "--config", str(bad))
    _refused(result)
    assert f"{bad}:{len(ROUTE.splitlines()) + 2}: content.guards.0" in result.stderr


def test_check_refuses_a_policy_that_would_not_load(tmp_path: Path) -> None:
    authz = tmp_path / "authz"
    authz.mkdir()
    (authz / "p.cedar").write_text("permit (principal, action, resource);\n")  # a wildcard
    config = tmp_path / "gw.toml"
    config.write_text(ROUTE + f'[policy]\ndir = "{authz}"\n')
    _refused(wardgate_cli("check", "--config", str(config)))


def test_pins_need_a_shared_store(tmp_path: Path) -> None:
    config = tmp_path / "gw.toml"
    config.write_text(ROUTE)  # pins in memory: only the running gateway has them
    result = wardgate_cli("pins", "list", "--config", str(config))
    _refused(result)
    assert "store = 'redis'" in result.stderr


def test_pins_refuse_an_unknown_upstream(tmp_path: Path) -> None:
    config = tmp_path / "gw.toml"
    config.write_text(
        ROUTE + '[content.pins]\nstore = "redis"\nkey_prefix = "wardgate-test-cli:"\n'
    )
    _refused(wardgate_cli("pins", "list", "--config", str(config), "--upstream", "nope"))


@pytest.mark.parametrize(("flag", "code"), [([], 0), (["--poisoned"], 1)])
def test_scan_tools_over_stdio(flag: list[str], code: int) -> None:
    result = wardgate_cli("scan-tools", "--", sys.executable, SHIFTY, *flag)
    assert result.returncode == code, result.stderr
    assert ("FLAG" in result.stdout) == bool(code) and "get_weather" in result.stdout


def test_scan_tools_refuses_what_it_cannot_reach() -> None:
    _refused(wardgate_cli("scan-tools", "http://127.0.0.1:9/mcp"))
    _refused(wardgate_cli("scan-tools"))
