"""Shared pieces of the wiring tests: a Cedar policy set, a config file, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import wardgate

SHIFTY = str(Path(__file__).parents[1] / "content" / "servers" / "shifty.py")
SRC = str(Path(wardgate.__file__).parents[1])

#: Session methods on route "weather" (as the demo policy writes them) plus what each
#: test names; anything else is denied by default.
SESSION = """
@id("session")
permit (
  principal,
  action in [
    Wardgate::Action::"initialize", Wardgate::Action::"ping",
    Wardgate::Action::"server/discover", Wardgate::Action::"tools/list",
    Wardgate::Action::"prompts/list", Wardgate::Action::"resources/list",
    Wardgate::Action::"resources/templates/list",
    Wardgate::Action::"wardgate/listen", Wardgate::Action::"subscriptions/listen"
  ],
  resource
)
when { resource.kind == "none" };
"""


def tool_permit(rule: str, names: list[str], upstream: str | None = None) -> str:
    listed = ", ".join(f'"{n}"' for n in names)
    member = f' && resource in Wardgate::Upstream::"{upstream}"' if upstream else ""
    return (
        f'@id("{rule}")\n'
        'permit (principal, action == Wardgate::Action::"tools/call", resource)\n'
        f"when {{ [{listed}].contains(resource.name){member} }};\n"
    )


def policy_dir(root: Path, *permits: str) -> Path:
    folder = root / "authz"
    folder.mkdir()
    (folder / "policies.cedar").write_text(SESSION + "\n".join(permits))
    return folder


def shifty_upstream_toml(name: str = "shifty") -> str:
    return (
        f"[upstreams.{name}]\n"
        'transport = "stdio"\n'
        f"command = [{sys.executable!r}, {SHIFTY!r}]\n".replace("'", '"')
        + 'sandbox = "insecure-none"\n'
    )


def wardgate_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``wardgate ARGS`` as a user would: a new process."""
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-m", "wardgate.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
