"""``wardgate policy`` lint / test / keygen / bundle / verify, as an operator runs them."""

from __future__ import annotations

import argparse
import io
import shutil
from pathlib import Path

import pytest

from tests.policy.conftest import EXAMPLES
from wardgate.policy import commands as cli
from wardgate.policy.engines import BundleRejected


def _run(*argv: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="wardgate")
    sub = parser.add_subparsers(dest="command", required=True)
    cli.add_parser(sub)
    out = io.StringIO()
    code = cli.run(parser.parse_args(["policy", *argv]), out)
    return code, out.getvalue()


def test_lint_passes_the_examples_and_refuses_a_wildcard(tmp_path: Path) -> None:
    code, text = _run("lint", str(EXAMPLES / "cedar"), str(EXAMPLES / "rego"))
    assert code == 0 and text.count("ok:") == 2
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "p.cedar").write_text("permit (principal, action, resource);")
    (bad / "q.rego").write_text("package x\nallow := true\n")
    code, text = _run("lint", str(EXAMPLES / "cedar"), str(bad))
    assert code == 2
    assert text.count("refused:") == 3  # action and resource in Cedar, the Rego rule


def test_lint_refuses_a_policy_that_fails_schema_validation(tmp_path: Path) -> None:
    (tmp_path / "p.cedar").write_text(
        'permit (principal, action == Wardgate::Action::"tools/call", resource)'
        " when { resource.owner == principal };"
    )
    code, text = _run("lint", str(tmp_path))
    assert code == 2 and "refused:" in text


@pytest.mark.parametrize("kind", ["cedar", "rego"])
def test_policy_test_runs_the_shared_cases(kind: str) -> None:
    code, text = _run("test", str(EXAMPLES / kind), str(EXAMPLES / "cases.toml"))
    assert code == 0, text
    assert "cases pass" in text and "FAIL" not in text


def test_policy_test_fails_with_a_diff(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES / "cedar", tmp_path / "set")
    policies = tmp_path / "set" / "policies.cedar"
    # Someone drops the tenant-isolation rule: the shared cases must catch it.
    text = policies.read_text()
    policies.write_text(
        text.replace("resource.tenant != principal.tenant", 'resource.kind == "never"', 1)
    )
    code, out = _run("test", str(tmp_path / "set"), str(EXAMPLES / "cases.toml"))
    assert code == 1
    assert "FAIL  an acme user cannot read a globex record" in out
    assert "- expected 'deny'" in out


def test_keygen_bundle_verify(tmp_path: Path) -> None:
    assert _run("keygen", "--out", str(tmp_path / "signer"))[0] == 0
    assert (tmp_path / "signer.key.pem").stat().st_mode & 0o077 == 0
    archive = tmp_path / "authz.tar.gz"
    code, _ = _run(
        "bundle",
        str(EXAMPLES / "cedar"),
        "--revision",
        "2026-11-30.1",
        "--key",
        str(tmp_path / "signer.key.pem"),
        "--out",
        str(archive),
        "--registry-json",
        str(tmp_path / "registry.json"),
    )
    assert code == 0 and (tmp_path / "registry.json").exists()
    code, out = _run("verify", str(archive), "--pubkey", str(tmp_path / "signer.pub.pem"))
    assert code == 0 and "2026-11-30.1" in out
    data = bytearray(archive.read_bytes())
    data[-10] ^= 0xFF
    archive.write_bytes(bytes(data))
    with pytest.raises(BundleRejected):
        _run("verify", str(archive), "--pubkey", str(tmp_path / "signer.pub.pem"))


def test_a_missing_file_is_a_refusal_not_a_traceback(tmp_path: Path) -> None:
    from wardgate.policy.engines import PolicyLoadError

    with pytest.raises(PolicyLoadError) as info:
        _run("verify", str(tmp_path / "nope.tar.gz"), "--pubkey", str(tmp_path / "nope.pem"))
    assert info.value.exit_code == 2
