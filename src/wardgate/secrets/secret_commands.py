"""``wardgate secrets set|delete|list``: write the encrypted secrets file.

``set NAME`` reads the value from standard input (one trailing newline dropped), so it
never appears in a command line or a shell history; nothing here prints a value. The
file (and, with ``--key-file``, a new 0400 key file) is created when there is none.
The file and key come from ``--config`` (its ``[secrets]``) or ``--file`` with
``--key-file`` / ``--key-env``.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from wardgate.config.secret_store import SecretsSettings
from wardgate.errors import ConfigError

__all__ = ["add_parser", "run"]

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``secrets`` command to a subparsers object."""
    secrets = sub.add_parser("secrets", help="set, delete or list secrets in the encrypted file")
    secrets.add_argument("action", choices=["set", "delete", "list"])
    secrets.add_argument("name", nargs="?", help="the secret's name (file:NAME in the config)")
    where = secrets.add_mutually_exclusive_group(required=True)
    where.add_argument("--config", "-c", help="take file and key from this config's [secrets]")
    where.add_argument("--file", help="the encrypted secrets file")
    key = secrets.add_mutually_exclusive_group()
    key.add_argument("--key-file", help="file holding the key (made, mode 0400, if absent)")
    key.add_argument("--key-env", help="environment variable holding the key")
    return secrets  # type: ignore[no-any-return]


def _settings(args: argparse.Namespace) -> SecretsSettings:
    if args.config is not None:
        from wardgate.config import load_config

        settings = load_config(args.config).secrets
        if settings.file is None:
            raise ConfigError(f"{args.config}: no [secrets] file")
        return settings
    return SecretsSettings(file=args.file, key_env=args.key_env, key_file=args.key_file)


def _value() -> str:
    data = sys.stdin.buffer.read()
    data = data.removesuffix(b"\n").removesuffix(b"\r")
    if not data:
        raise ConfigError("secrets set: no value on standard input")
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise ConfigError("secrets set: the value on standard input is not UTF-8") from None


def run(args: argparse.Namespace) -> int:
    """Run ``wardgate secrets``.

    Raises:
        ConfigError: bad arguments, a missing or wrong key, a file too open.
    """
    from wardgate.secrets.encrypted_file import (
        load_key,
        new_key_file,
        read_values,
        write_secret,
    )

    settings = _settings(args)
    path = Path(settings.file or args.file)
    if args.action != "list" and (args.name is None or not _NAME.match(args.name)):
        raise ConfigError(f"secrets {args.action}: give a NAME of letters, digits, '_.-'")
    if settings.key_file is not None and not Path(settings.key_file).exists():
        if path.exists():
            raise ConfigError(
                f"secrets key file {settings.key_file}: does not exist, and {path} does"
            )
        key = new_key_file(Path(settings.key_file))
        print(f"wardgate: made a new key file {settings.key_file} (mode 0400)", file=sys.stderr)
    else:
        key = load_key(settings)
    if args.action == "list":
        if path.exists():
            for name in sorted(read_values(path, key)):
                print(name)
        return 0
    write_secret(path, key, args.name, _value() if args.action == "set" else None)
    print(f"wardgate: {args.action} {args.name} in {path}", file=sys.stderr)
    return 0
