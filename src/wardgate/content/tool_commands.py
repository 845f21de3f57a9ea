"""``wardgate pins list|diff|approve|reject`` and ``wardgate scan-tools URL | -- CMD``.

Wired into :mod:`wardgate.cli` like :mod:`wardgate.policy.commands`: :func:`add_parsers` adds
both commands, :func:`run` runs one. Pins are read from the store the config file's
``[content.pins]`` names (Redis: an operator approves what the fleet withholds); an
upstream is named as in the config (its pin key is ``stdio:`` and its command line, or
its URL, unless ``[content].identities`` says otherwise) or by ``--identity``.

Exit codes: 0 done (scan-tools: clean); 1 scan-tools found something; 2 refused (a bad
config, an unknown upstream or pin, an unreachable store or server).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any, TextIO, cast

from wardgate.content.integrity import Kind
from wardgate.content.pins import PinStore
from wardgate.errors import ConfigError, WardgateError

__all__ = ["add_parsers", "run"]

_KINDS = ["tool", "prompt", "resource", "resource_template", "instructions"]


def add_parsers(sub: Any) -> None:
    """Add ``pins`` and ``scan-tools`` to the top-level subparsers ``sub``."""
    pins = sub.add_parser("pins", help="review tool pins: list, diff, approve, reject")
    cmds = pins.add_subparsers(dest="pins_command", required=True)
    for name, what in (
        ("list", "list the pins of the configured upstreams"),
        ("diff", "show what changed in a withheld descriptor"),
        ("approve", "approve a withheld descriptor"),
        ("reject", "reject a withheld descriptor for good"),
    ):
        cmd = cmds.add_parser(name, help=what)
        cmd.add_argument("--config", "-c", required=True)
        which = cmd.add_mutually_exclusive_group(required=name != "list")
        which.add_argument("--upstream", help="an upstream named in the config")
        which.add_argument("--identity", help="a pin key as is (stdio:CMD … or a URL)")
        if name != "list":
            cmd.add_argument("kind", choices=_KINDS)
            cmd.add_argument("name", help="the name as the upstream lists it")
    scan = sub.add_parser(
        "scan-tools", help="scan an MCP server's tools for poisoning: URL or -- CMD ARGS…"
    )
    scan.add_argument("target", nargs=argparse.REMAINDER)


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Run ``pins …`` or ``scan-tools``; returns the exit code.

    Raises:
        ConfigError: the config file is invalid (exit 2 through the CLI).
    """
    try:
        if args.command == "scan-tools":
            return _scan(args.target, out)
        return asyncio.run(_pins(args, out))
    except ConfigError:
        raise
    except WardgateError as exc:
        # An unreachable store or server: a refusal of this command, not a finding.
        detail = exc.detail
        if not detail.startswith(args.command):
            detail = f"{args.command}: {detail}"
        raise ConfigError(detail) from None


def _scan(target: list[str], out: TextIO) -> int:
    from wardgate.content.scan_tools import scan_tools

    argv = target[1:] if target[:1] == ["--"] else target
    if not argv:
        raise ConfigError("scan-tools: give a URL, or a command after --")
    if target[:1] == ["--"] or len(argv) > 1 or "://" not in argv[0]:
        report, code = asyncio.run(scan_tools(argv))
    else:
        report, code = asyncio.run(scan_tools(argv[0]))
    print(report, file=out)
    return code


async def _pins(args: argparse.Namespace, out: TextIO) -> int:
    from wardgate.config import load_config
    from wardgate.content import pins_admin
    from wardgate.guards.assembly import require_extra, upstream_identity

    config = load_config(args.config)
    pins = config.content.pins
    if pins.store != "redis":
        raise ConfigError(
            f"{args.config}: content.pins.store is 'memory': pins live inside the running "
            "gateway only; set store = 'redis' to review them from the command line"
        )
    if args.identity is not None:
        identities = [args.identity]
    elif args.upstream is not None:
        if args.upstream not in config.upstreams:
            raise ConfigError(f"pins: no upstream {args.upstream!r} in {args.config}")
        identities = [
            config.content.identities.get(args.upstream) or upstream_identity(config, args.upstream)
        ]
    else:
        identities = [
            config.content.identities.get(n) or upstream_identity(config, n)
            for n in config.upstreams
        ]
    require_extra("redis")
    from redis.asyncio import Redis

    from wardgate.content.pins import RedisPinStore

    client = Redis.from_url(pins.redis_url)
    store: PinStore = RedisPinStore(client, key_prefix=pins.key_prefix)
    try:
        command = args.pins_command
        if command == "list":
            for identity in identities:
                print(await pins_admin.pins_list(store, identity), file=out)
            return 0
        (identity,) = identities
        kind = cast(Kind, args.kind)
        if command == "diff":
            diff = await pins_admin.pins_diff(store, identity, kind, args.name)
            if diff is None:
                raise ConfigError(f"pins: no pin {kind} {args.name!r} for {identity}")
            print(diff, file=out)
            return 0
        act = pins_admin.pins_approve if command == "approve" else pins_admin.pins_reject
        if not await act(store, identity, kind, args.name):
            raise ConfigError(f"pins: no pin {kind} {args.name!r} for {identity}")
        done = "approved" if command == "approve" else "rejected"
        print(f"{done}: {kind} {args.name} ({identity})", file=out)
        return 0
    finally:
        await client.aclose()
