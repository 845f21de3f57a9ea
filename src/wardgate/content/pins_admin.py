"""What ``wardgate pins list|diff|approve|reject`` prints and does, on any pin store.

The CLI wiring is a thin layer: open the configured store, call one of these with the
upstream's identity (its command line or URL, as in ``[content].identities``), print.
"""

from __future__ import annotations

import difflib
import json
from typing import Any

from wardgate.content.integrity import Kind
from wardgate.content.pins import Pin, PinBook, PinStore

__all__ = ["pins_approve", "pins_diff", "pins_list", "pins_reject"]


def _state(pin: Pin) -> str:
    if pin.status == "rejected":
        return "rejected"
    if pin.status == "pending":
        return "new, held"
    return "changed, held" if pin.pending is not None else "approved"


async def pins_list(store: PinStore, identity: str) -> str:
    """One line per pin of ``identity``: kind, name, state, fingerprint.

    Raises:
        StateStoreUnavailable: the store failed.
    """
    pins = sorted(await store.all(identity), key=lambda p: (p.kind, p.name))
    lines = [f"upstream: {identity}"]
    for pin in pins:
        fingerprint = pin.fingerprint or pin.pending_fingerprint or ""
        lines.append(f"{pin.kind:18} {pin.name:32} {_state(pin):14} sha256:{fingerprint[:16]}")
    lines.append(f"{len(pins)} pins, {sum(1 for p in pins if _state(p) != 'approved')} to review")
    return "\n".join(lines)


def _pretty(body: dict[str, Any] | None) -> list[str]:
    return json.dumps(body or {}, indent=2, sort_keys=True, ensure_ascii=False).splitlines()


async def pins_diff(store: PinStore, identity: str, kind: Kind, name: str) -> str | None:
    """A unified diff from the approved descriptor to the one waiting; ``None`` if no pin.

    Raises:
        StateStoreUnavailable: the store failed.
    """
    pin = await store.get(identity, f"{kind}|{name}")
    if pin is None:
        return None
    if pin.pending is None:
        return f"{kind} {name}: no change waiting"
    diff = difflib.unified_diff(
        _pretty(pin.body), _pretty(pin.pending), "approved", "listed now", lineterm=""
    )
    return "\n".join(diff)


async def pins_approve(store: PinStore, identity: str, kind: Kind, name: str) -> bool:
    """Approve what is waiting; False if there is no such pin.

    Raises:
        StateStoreUnavailable: the store failed.
    """
    return await PinBook(store).approve(identity, kind, name) is not None


async def pins_reject(store: PinStore, identity: str, kind: Kind, name: str) -> bool:
    """Reject for good; False if there is no such pin.

    Raises:
        StateStoreUnavailable: the store failed.
    """
    if await store.get(identity, f"{kind}|{name}") is None:
        return False
    await PinBook(store).reject(identity, kind, name)
    return True
