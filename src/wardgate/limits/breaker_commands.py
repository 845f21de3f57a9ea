"""``wardgate breaker open|close|status``: operate circuit breakers by hand.

Wired into ``wardgate.cli`` (``wardgate breaker …``); also runs on its own as
``python -m wardgate.limits.breaker_commands breaker …``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from wardgate.config import load_config
from wardgate.errors import ConfigError, WardgateError
from wardgate.limits.breaker import breaker_key, set_breaker
from wardgate.limits.build import build_store

__all__ = ["add_parser", "main", "run"]


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``breaker`` command to a subparsers object."""
    breaker = sub.add_parser("breaker", help="open, close or show a circuit breaker")
    breaker.add_argument("action", choices=["open", "close", "status"])
    breaker.add_argument("--config", "-c", required=True)
    breaker.add_argument("--upstream", required=True)
    breaker.add_argument("--tool", help="the tool's breaker; without it, the upstream's")
    breaker.add_argument("--reason", default="operator")
    breaker.add_argument(
        "--seconds", type=float, help="open for this long (default: until closed by hand)"
    )
    return breaker  # type: ignore[no-any-return]


async def _act(args: argparse.Namespace) -> dict[str, Any]:
    config = load_config(args.config)
    if config.limits is None:
        raise ConfigError(f"{args.config}: no [limits] section")
    store = build_store(config.limits)
    await store.start()
    try:
        key = breaker_key(args.upstream, args.tool)
        if args.action == "status":
            doc = await store.doc_get(key + ":state") or {"state": "closed", "gen": 0}
        elif args.action == "open":
            until = time.time() + args.seconds if args.seconds else None
            doc = await set_breaker(
                store, key, "open", reason=args.reason, by="operator", until=until
            )
        else:
            doc = await set_breaker(store, key, "closed", reason=args.reason, by="operator")
        return {"breaker": key, **doc}
    finally:
        await store.aclose()


def run(args: argparse.Namespace) -> int:
    """Run ``wardgate breaker``; prints the breaker's state as JSON.

    Raises:
        WardgateError: bad configuration, or the store failed.
    """
    print(json.dumps(asyncio.run(_act(args)), sort_keys=True))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wardgate")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return run(args)
    except WardgateError as exc:
        print(f"wardgate: {exc.detail}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
