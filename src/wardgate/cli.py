"""``wardgate``: check a config, serve it, wrap a stdio server, or run the demo."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from wardgate import __version__
from wardgate.config import load_config
from wardgate.config.model import ConfigFault, GatewayConfig
from wardgate.errors import ConfigError, WardgateError
from wardgate.telemetry.logs import configure_logging

__all__ = ["main"]

log = logging.getLogger("wardgate")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wardgate", description="A security gateway for MCP.")
    parser.add_argument("--version", action="version", version=f"wardgate {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="validate a config file and exit")
    check.add_argument("--config", "-c", required=True)
    serve = sub.add_parser("serve", help="serve the gateway")
    serve.add_argument("--config", "-c", required=True)
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes sharing the listening socket (more than one needs Redis state)",
    )
    wrap = sub.add_parser(
        "wrap", help="guard a stdio MCP server: wardgate wrap [opts] -- CMD ARGS…"
    )
    wrap.add_argument(
        "--sandbox",
        required=True,
        choices=["auto", "gvisor", "bubblewrap", "insecure-none"],
        help="how to isolate CMD (docs/sandbox.md); 'insecure-none' runs it unsandboxed",
    )
    wrap.add_argument(
        "--read-only",
        action="append",
        default=[],
        metavar="PATH",
        help="host path to bind read-only into the sandbox (CMD's interpreter, packages)",
    )
    wrap.add_argument("--allow-tool", action="append", default=None, metavar="GLOB")
    wrap.add_argument("--deny-tool", action="append", default=[], metavar="GLOB")
    wrap.add_argument("--log-level", default="warning")
    wrap.add_argument("argv", nargs=argparse.REMAINDER)
    demo = sub.add_parser("demo", help="run the gateway in front of the bundled demo server")
    demo.add_argument("--port", type=int, default=8787)
    _add_guard_commands(sub)
    return parser


def _add_guard_commands(sub: Any) -> None:
    """``policy …``, ``pins …``, ``scan-tools``, ``breaker …``, ``audit …`` and
    ``secrets …``: the operators' tools of the guards and the secrets file."""
    from wardgate.content import tool_commands as content_cli
    from wardgate.limits import breaker_commands
    from wardgate.policy import commands as policy_cli
    from wardgate.secrets import secret_commands
    from wardgate.telemetry.audit import audit_commands

    policy_cli.add_parser(sub)
    secret_commands.add_parser(sub)
    content_cli.add_parsers(sub)
    breaker_commands.add_parser(sub)
    audit_commands.add_parser(sub)


def _run_guard_command(args: argparse.Namespace) -> int | None:
    """Run ``policy``, ``pins``, ``scan-tools``, ``breaker`` or ``audit``; ``None`` for any
    other command.

    Raises:
        ConfigError: the command is refused (exit 2).
    """
    if args.command == "policy":
        from wardgate.policy import commands as policy_cli

        return policy_cli.run(args)
    if args.command in ("pins", "scan-tools"):
        from wardgate.content import tool_commands as content_cli

        return content_cli.run(args)
    if args.command == "breaker":
        from wardgate.limits import breaker_commands

        return breaker_commands.run(args)
    if args.command == "audit":
        from wardgate.telemetry.audit import audit_commands

        return audit_commands.run(args)
    if args.command == "secrets":
        from wardgate.secrets import secret_commands

        return secret_commands.run(args)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "check":
            return _check(args.config)
        if args.command == "serve":
            config = load_config(args.config)
            overrides = {
                k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None
            }
            if overrides:
                config = with_overrides(config, overrides)
            return _run(config, workers=args.workers)
        if args.command == "wrap":
            return _wrap(args)
        if args.command == "demo":
            return _demo(args.port)
        guard_command = _run_guard_command(args)
        if guard_command is not None:
            return guard_command
    except WardgateError as exc:
        print(f"wardgate: {exc.detail}", file=sys.stderr)
        return exc.exit_code
    return 2  # pragma: no cover - argparse rejects unknown commands


def with_overrides(config: GatewayConfig, overrides: dict[str, Any]) -> GatewayConfig:
    """``config`` with ``[server]`` values from the command line, validated like the file.

    ``model_copy(update=…)`` would skip validation: ``--host 0.0.0.0`` must meet the
    same "a non-loopback bind needs [auth]" rule (and every other) as the file.

    Raises:
        ConfigError: the result is invalid; the message names the flag and the fault.
    """
    data = config.model_dump(mode="python", round_trip=True)
    data["server"] = {**data["server"], **overrides}
    flags = " ".join(f"--{k} {v}" for k, v in overrides.items())
    try:
        return GatewayConfig.model_validate(data)
    except ConfigFault as fault:  # a fault across keys, already naming its key
        raise ConfigError(f"invalid configuration with {flags}\n  {fault.detail}") from None
    except ValidationError as exc:
        lines = [
            f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}"
            for e in exc.errors()
        ]
        raise ConfigError(f"invalid configuration with {flags}\n  " + "\n  ".join(lines)) from None


def _check(path: str) -> int:
    from wardgate.gateway import Gateway
    from wardgate.guards.assembly import authorization_note

    config = load_config(path)
    gateway = Gateway(config)
    gateway.guards.check_policy()
    print(f"{path}: OK ({len(gateway.routes)} route(s), {len(gateway.upstreams)} upstream(s))")
    print(authorization_note(config))
    return 0


def _run(config: GatewayConfig, banner: str | None = None, workers: int = 1) -> int:
    from wardgate.edge.serve import serve
    from wardgate.edge.workers import check_workers, serve_workers

    check_workers(config, workers)
    configure_logging(config.log.level, config.log.format)
    if workers > 1:
        return serve_workers(config, workers, banner)
    return serve(config, banner)


def _wrap(args: argparse.Namespace) -> int:
    from wardgate.edge.wrap import serve_stdio
    from wardgate.gateway import Gateway

    argv = [a for a in args.argv if a != "--"] if args.argv[:1] == ["--"] else list(args.argv)
    if not argv:
        print("wardgate wrap: give the server command after --", file=sys.stderr)
        return 2
    configure_logging(args.log_level, "json")
    tools: dict[str, object] = {"deny": args.deny_tool}
    if args.allow_tool is not None:
        tools["allow"] = args.allow_tool
    wrapped: dict[str, object] = {"transport": "stdio", "command": argv, "sandbox": args.sandbox}
    settings: dict[str, object] = {}
    if args.read_only:
        # Listed on the command line by the operator: those paths are the allowed set
        # (the Docker socket, /proc, /sys and the like are refused all the same).
        wrapped["read_only_paths"] = args.read_only
        settings["allowed_host_paths"] = args.read_only
    config = GatewayConfig.model_validate(
        {
            "sandbox": settings,
            "upstreams": {"wrapped": wrapped},
            "routes": {"wrap": {"upstreams": ["wrapped"], "tools": tools}},
        }
    )
    gateway = Gateway(config)

    async def run() -> None:
        await gateway.start()
        try:
            await serve_stdio(gateway.routes["wrap"])
        finally:
            await gateway.aclose()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    return 0


def _demo(port: int) -> int:
    from wardgate.demo import demo_config

    try:
        import mcp  # noqa: F401
    except ImportError:
        print("wardgate demo needs the MCP SDK: pip install 'wardgate[demo]'", file=sys.stderr)
        return 2
    url = f"http://127.0.0.1:{port}/mcp/demo"
    body = (
        '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo",'
        '"arguments":{"text":"hi"},"_meta":{"io.modelcontextprotocol/protocolVersion":'
        '"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}'
    )
    banner = f"""
Wardgate demo: the gateway listens on {url}
in front of the bundled demo MCP server. Its Cedar policy (wardgate/policy/demo/
policies.cedar) allows the tools echo, add and utc_now, the prompt greet and the
resource demo://readme, and nothing else: delete_everything is hidden from the tool
list and a call to it is answered as for a tool that does not exist (default deny).
Secrets in results are redacted. The demo runs the server UNSANDBOXED.

Try it from another terminal:
  curl -s {url} -H 'content-type: application/json' \\
    -H 'accept: application/json, text/event-stream' \\
    -H 'mcp-protocol-version: 2026-07-28' -H 'mcp-method: tools/call' -H 'mcp-name: echo' \\
    -d '{body}'
or with the official MCP Python SDK (in .venv):
  .venv/bin/python -m wardgate.demo.client {url}
Stop with Ctrl-C.
"""
    return _run(demo_config(port), banner)


if __name__ == "__main__":
    sys.exit(main())
