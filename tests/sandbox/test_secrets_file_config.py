"""Secrets from the encrypted file, selected in the config (``[secrets]``, ``file:NAME``):
written by ``wardgate secrets set`` from standard input, read by a sandboxed server at
``/run/secrets/NAME`` through the gateway (official SDK client), and every start-up
fault (wrong key, missing file, missing name, mode too open, unset key variable) a clear
error naming the file and the key's source, never a value."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from mcp import Client

from support.servers import gateway_events, run_gateway
from wardgate.config.model import GatewayConfig
from wardgate.errors import ConfigError
from wardgate.gateway import Gateway
from wardgate.upstream.runners import gvisor_works

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bwrap not installed")

SERVER = Path(__file__).with_name("escape_server.py")
BASE = str(Path(os.path.realpath(sys.executable)).parent.parent)
VALUE = "s3cr3t-Value-7f0c1e"  # must never show up in output, logs or events


def _cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wardgate.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")},
        check=False,
    )


@pytest.fixture
def store(tmp_path: Path) -> tuple[Path, Path]:
    """A secrets file holding ``api_token``, made by the CLI, and its key file."""
    path, key = tmp_path / "secrets.enc", tmp_path / "secrets.key"
    done = _cli(
        "secrets",
        "set",
        "api_token",
        "--file",
        str(path),
        "--key-file",
        str(key),
        stdin=VALUE + "\n",
    )
    assert done.returncode == 0, done.stderr
    assert VALUE not in done.stdout + done.stderr
    return path, key


def _config(path: Path, key: Path, runner: str = "bubblewrap", **secrets: str) -> dict[str, Any]:
    return {
        "sandbox": {"allowed_host_paths": ["/usr", sys.prefix, BASE, str(SERVER)]},
        "secrets": {"file": str(path), "key_file": str(key)},
        "upstreams": {
            "u": {
                "transport": "stdio",
                "command": [f"{sys.prefix}/bin/python", str(SERVER)],
                "sandbox": runner,
                "read_only_paths": [sys.prefix, BASE, str(SERVER)],
                "secrets": secrets or {"API_TOKEN": "file:api_token"},
            }
        },
        "routes": {"u": {"upstreams": ["u"]}},
    }


def test_cli_makes_a_private_key_and_file_and_lists_names_only(store: tuple[Path, Path]) -> None:
    path, key = store
    assert (path.stat().st_mode & 0o777, key.stat().st_mode & 0o777) == (0o600, 0o400)
    done = _cli(
        "secrets", "set", "db_password", "--file", str(path), "--key-file", str(key), stdin="pw"
    )
    assert done.returncode == 0, done.stderr
    listed = _cli("secrets", "list", "--file", str(path), "--key-file", str(key))
    assert listed.stdout.split() == ["api_token", "db_password"]
    other = Path(str(key) + ".other")
    other.write_bytes(Fernet.generate_key())
    other.chmod(0o400)
    wrong = _cli("secrets", "set", "x", "--file", str(path), "--key-file", str(other), stdin="v")
    assert wrong.returncode == 2 and "cannot decrypt" in wrong.stderr


@pytest.mark.parametrize(
    "runner",
    [
        "bubblewrap",
        pytest.param("gvisor", marks=pytest.mark.skipif(not gvisor_works(), reason="no runsc")),
    ],
)
async def test_sandboxed_server_reads_the_file_secret_and_it_is_never_logged(
    store: tuple[Path, Path], runner: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with run_gateway(_config(*store, runner=runner)) as (url, gateway):
        async with Client(f"{url}/mcp/u", mode="legacy") as client:
            result = await client.call_tool("read_file", {"path": "/run/secrets/API_TOKEN"})
            answer = json.loads(result.content[0].text)  # type: ignore[union-attr]
            assert answer["escaped"] is True and VALUE in answer["detail"]
            env = await client.call_tool("environment", {})
            assert VALUE not in env.content[0].text  # type: ignore[union-attr]
        events = list(gateway_events(gateway).events)
    assert events  # the calls were recorded
    assert VALUE not in repr(events)
    assert VALUE not in caplog.text


def _fault(config: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as fault:
        Gateway(GatewayConfig.model_validate(config))
    return fault.value.detail


def test_start_up_faults_name_file_and_key_never_the_value(
    store: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, key = store
    wrong = key.with_name("wrong.key")
    wrong.write_bytes(Fernet.generate_key())
    wrong.chmod(0o400)
    message = _fault(_config(path, wrong))
    assert f"secrets file {path}" in message and f"key file {wrong}" in message
    assert "cannot decrypt" in message

    assert "does not exist" in _fault(_config(path.with_name("absent.enc"), key))
    message = _fault(_config(path, key, API_TOKEN="file:no_such_name"))
    assert "upstreams.u.secrets.API_TOKEN" in message and "not found" in message

    path.chmod(0o644)
    assert f"secrets file {path}: mode 0644 is too open" in _fault(_config(path, key))
    path.chmod(0o600)
    key.chmod(0o640)
    assert f"secrets key file {key}: mode 0640 is too open" in _fault(_config(path, key))
    key.chmod(0o400)

    config = _config(path, key)
    config["secrets"] = {"file": str(path), "key_env": "WARDGATE_TEST_KEY_UNSET"}
    monkeypatch.delenv("WARDGATE_TEST_KEY_UNSET", raising=False)
    assert "WARDGATE_TEST_KEY_UNSET is not set" in _fault(config)
    monkeypatch.setenv("WARDGATE_TEST_KEY_UNSET", key.read_text().strip())
    Gateway(GatewayConfig.model_validate(config))  # the same key from the environment


def test_wardgate_check_fails_with_a_wrong_key(store: tuple[Path, Path], tmp_path: Path) -> None:
    path, _ = store
    wrong = tmp_path / "wrong.key"
    wrong.write_bytes(Fernet.generate_key())
    wrong.chmod(0o400)
    config = tmp_path / "wardgate.toml"
    config.write_text(
        f"""
[sandbox]
allowed_host_paths = ["/usr", "{sys.prefix}", "{BASE}"]
[secrets]
file = "{path}"
key_file = "{wrong}"
[upstreams.u]
transport = "stdio"
command = ["{sys.prefix}/bin/python", "-c", "pass"]
read_only_paths = ["{sys.prefix}", "{BASE}"]
secrets = {{ API_TOKEN = "file:api_token" }}
[routes.u]
upstreams = ["u"]
"""
    )
    done = _cli("check", "--config", str(config))
    assert done.returncode == 2
    assert f"secrets file {path}: cannot decrypt it with the key file {wrong}" in done.stderr
    assert "Traceback" not in done.stderr and VALUE not in done.stderr


@pytest.mark.parametrize(
    ("secrets", "ref", "fault"),
    [
        (None, "file:x", "needs a [secrets] file"),
        ({"file": "/x"}, "vault:x", "must be 'env:VARIABLE' or 'file:NAME'"),
        ({"key_env": "K"}, "env:X", "a key without 'file'"),
        ({"file": "/x", "key_env": "K", "key_file": "/k"}, "env:X", "not both"),
    ],
)
def test_config_refuses_bad_secret_settings(
    secrets: dict[str, str] | None, ref: str, fault: str
) -> None:
    config = _config(Path("/x"), Path("/k"), API_TOKEN=ref)
    if secrets is None:
        del config["secrets"]
    else:
        config["secrets"] = secrets
    with pytest.raises(Exception, match=re.escape(fault)):
        GatewayConfig.model_validate(config)
