"""Decoding one message a channel upstream (stdio, legacy SSE) sent, within bounds."""

from __future__ import annotations

import logging
import re

from wardgate.errors import ParseError, ProtocolError
from wardgate.wire.jsonrpc import Message, error_response, loads_bounded

__all__ = ["decode_channel_message"]

log = logging.getLogger("wardgate.upstream")

#: Where a message too deep to decode says which request it answers. The ids on a
#: channel are the gateway's own integers; a wrong match only fails one of the same
#: upstream's requests early, which the upstream could do anyway by answering it.
_ID = re.compile(rb'"id"\s*:\s*(\d{1,18})')


def decode_channel_message(data: bytes | str, max_depth: int, upstream: str) -> Message | None:
    """The message in ``data``; ``None`` for something that is not JSON-RPC (dropped,
    never relayed). A message nested deeper than ``max_depth`` becomes an error answer
    to the request it names, so that request fails now rather than at its timeout."""
    try:
        value = loads_bounded(data, max_depth)
    except ParseError:
        log.warning("upstream %s sent something that is not JSON", upstream)
        return None
    except ProtocolError:
        log.warning("upstream %s sent JSON nested too deep", upstream)
        raw = data.encode() if isinstance(data, str) else data
        found = _ID.search(raw)
        if found is None:
            return None
        return Message(
            error_response(int(found.group(1)), -32603, "Upstream unavailable"), "response"
        )
    try:
        return Message.from_raw(value)
    except ProtocolError:
        log.warning("upstream %s sent a message that is not JSON-RPC", upstream)
        return None
