"""Shared pieces of the federation tests: member servers of our own on stdio."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

MEMBER = Path(__file__).resolve().parent / "member_server.py"


def member(name: str, *extra: str) -> dict[str, Any]:
    """An upstream config running ``member_server.py --name NAME EXTRA…`` over stdio."""
    return {
        "transport": "stdio",
        "command": [sys.executable, str(MEMBER), "--name", name, *extra],
        "sandbox": "insecure-none",
    }
