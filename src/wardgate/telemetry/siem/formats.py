"""Record encodings for the SIEM sinks, each safe against log injection.

:func:`sanitize` runs first on every value: CR, LF, NUL, every other C0 and C1 control
(ESC and so ANSI sequences among them), DEL, U+2028 and U+2029 become visible ``\\uXXXX``
text, so no value can end a line, start a record, or drive a terminal in any sink.
Each format then escapes what its own syntax needs (RFC 5424 SD-PARAM ``"\\]``, CEF
``|``, ``\\`` and ``=``); the JSON formats are written by orjson.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import socket
import time
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

__all__ = [
    "cef",
    "datadog",
    "ecs_bulk",
    "hec",
    "loki",
    "rfc5424",
    "sanitize",
    "webhook",
    "webhook_signature",
]

_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_HOST = socket.gethostname()[:255] or "-"


def _escape(found: re.Match[str]) -> str:
    return f"\\u{ord(found[0]):04x}"


def sanitize(value: Any) -> Any:
    """``value`` with every string (keys too) made single-line and control-free."""
    if isinstance(value, str):
        return _UNSAFE.sub(_escape, value) if _UNSAFE.search(value) else value
    if isinstance(value, Mapping):
        return {sanitize(str(k)): sanitize(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [sanitize(v) for v in value]
    return value


def _iso(ts: float) -> str:
    ms = int((ts - int(ts)) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{ms:03d}Z"


def _severity(record: Mapping[str, Any]) -> int:
    """Syslog severity: alerts 1, denials and failures 4 (warning), the rest 6 (info)."""
    kind = record.get("kind")
    if kind == "ueba.alert":
        return 1
    if kind in ("auth.failed", "guard.decision") or record.get("status") in ("denied",):
        return 4
    if kind == "policy.decision" and record.get("allowed") is False:
        return 4
    return 6


_SD_ESCAPE = str.maketrans({'"': '\\"', "\\": "\\\\", "]": "\\]"})
_PRINTUSASCII = re.compile(r"[^\x21-\x7e]")


def rfc5424(record: Mapping[str, Any], *, app: str = "wardgate", facility: int = 13) -> bytes:
    """One RFC 5424 message (no framing): ids in structured data, the record as JSON."""
    pri = facility * 8 + _severity(record)
    msgid = _PRINTUSASCII.sub("_", str(record.get("kind", "-")))[:32] or "-"
    params = []
    for key in ("decision_id", "route", "subject", "status", "code"):
        value = record.get(key)
        if value is not None:
            params.append(f'{key}="{str(value).translate(_SD_ESCAPE)}"')
    sd = f"[wardgate@32473 {' '.join(params)}]" if params else "-"
    msg = orjson.dumps(record, default=str).decode()
    ts = _iso(float(record.get("ts", time.time())))
    return f"<{pri}>1 {ts} {_HOST} {app} - {msgid} {sd} {msg}".encode()


_CEF_HEADER = str.maketrans({"\\": "\\\\", "|": "\\|"})
_CEF_VALUE = str.maketrans({"\\": "\\\\", "=": "\\="})


def cef(record: Mapping[str, Any], *, version: str = "0.1.0") -> str:
    """One ArcSight CEF line (no syslog header)."""
    kind = str(record.get("kind", "event"))
    sev = {1: 9, 4: 6, 6: 3}[_severity(record)]
    ext = {
        "rt": str(int(float(record.get("ts", time.time())) * 1000)),
        "suser": record.get("subject"),
        "act": record.get("status") or record.get("allowed"),
        "src": record.get("client_addr"),
        "cs1Label": "decisionId",
        "cs1": record.get("decision_id"),
        "cs2Label": "route",
        "cs2": record.get("route"),
        "cs3Label": "target",
        "cs3": record.get("target"),
        "cs4Label": "code",
        "cs4": record.get("code") or record.get("cause"),
        "reason": record.get("reason"),
    }
    body = " ".join(f"{k}={str(v).translate(_CEF_VALUE)}" for k, v in ext.items() if v is not None)
    head = "|".join(s.translate(_CEF_HEADER) for s in ("Wardgate", "wardgate", version, kind, kind))
    return f"CEF:0|{head}|{sev}|{body}"


def hec(records: Sequence[Mapping[str, Any]], *, source: str = "wardgate") -> bytes:
    """Splunk HTTP Event Collector: one JSON object per event, concatenated."""
    return b"".join(
        orjson.dumps(
            {
                "time": r.get("ts"),
                "host": _HOST,
                "source": source,
                "sourcetype": "_json",
                "event": r,
            },
            default=str,
        )
        for r in records
    )


def loki(records: Sequence[Mapping[str, Any]], *, service: str = "wardgate") -> bytes:
    """Grafana Loki push: one stream per event kind (a bounded label set)."""
    streams: dict[str, list[list[str]]] = {}
    for r in records:
        ns = str(int(float(r.get("ts", time.time())) * 1e9))
        line = orjson.dumps(r, default=str).decode()
        streams.setdefault(str(r.get("kind", "event")), []).append([ns, line])
    return orjson.dumps(
        {"streams": [{"stream": {"service": service, "kind": k}, "values": v}
                     for k, v in streams.items()]}
    )  # fmt: skip


def _ecs(r: Mapping[str, Any]) -> dict[str, Any]:
    status = r.get("status")
    failed = (
        status not in (None, "ok") or r.get("allowed") is False or r.get("kind") == "auth.failed"
    )
    doc: dict[str, Any] = {
        "@timestamp": _iso(float(r.get("ts", time.time()))),
        "event": {
            "kind": "alert" if r.get("kind") == "ueba.alert" else "event",
            "action": r.get("kind"),
            "outcome": "failure" if failed else "success",
            "id": r.get("decision_id"),
        },
        "user": {"name": r.get("subject")},
        "service": {"name": "wardgate"},
        "wardgate": dict(r),
    }
    if r.get("client_addr"):
        doc["source"] = {"ip": r["client_addr"]}
    if r.get("latency_ms") is not None:
        doc["event"]["duration"] = int(float(r["latency_ms"]) * 1e6)
    return doc


def ecs_bulk(records: Sequence[Mapping[str, Any]], *, index: str) -> bytes:
    """Elasticsearch ``_bulk`` NDJSON with ECS fields (the record under ``wardgate``)."""
    action = orjson.dumps({"create": {"_index": index}})
    return b"".join(action + b"\n" + orjson.dumps(_ecs(r), default=str) + b"\n" for r in records)


def datadog(records: Sequence[Mapping[str, Any]], *, service: str = "wardgate") -> bytes:
    """Datadog logs intake: a JSON array of log entries."""
    return orjson.dumps(
        [
            {"ddsource": "wardgate", "service": service, "hostname": _HOST,
             "ddtags": f"kind:{r.get('kind')}", "message": orjson.dumps(r, default=str).decode()}
            for r in records
        ]
    )  # fmt: skip


def webhook(records: Sequence[Mapping[str, Any]]) -> bytes:
    """The generic webhook body: ``{"events": [...]}``."""
    return orjson.dumps({"events": list(records)}, default=str)


def webhook_signature(secret: bytes, body: bytes, ts: int) -> str:
    """``t=<unix>,v1=<hex HMAC-SHA256 over "<t>." + body>``: the receiver checks the time
    (against replay) and the MAC with a constant-time compare."""
    mac = hmac.new(secret, str(ts).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"
