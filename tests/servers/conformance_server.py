"""Upstream MCP server for the official MCP conformance suite (server mode).

It provides every tool, resource, prompt and utility that the server-mode
scenarios of ``@modelcontextprotocol/conformance`` call by fixed name, so that
the suite can be pointed either at this server directly or at the Wardgate
gateway placed in front of it (then the suite tests the gateway's protocol
transparency).

Written for the low-level ``mcp.server.lowlevel.Server`` of the official Python
SDK (``mcp`` 2.x) because several scenarios need control that the high-level
``MCPServer`` does not expose (resource subscriptions, closing a POST SSE stream
mid-call, returning ``InputRequiredResult`` on the 2026-07-28 path).

It speaks both protocol eras: on a handshake-era connection (2025-xx) sampling
and elicitation are real server-to-client requests on the POST SSE stream; on a
2026-07-28 request they are ``InputRequiredResult`` round trips (MRTR).

Usage::

    python tests/servers/conformance_server.py --port 8931      # http://127.0.0.1:8931/mcp
    python tests/servers/conformance_server.py --stdio

HTTP binds 127.0.0.1 only; the SDK's DNS-rebinding protection (Host and Origin
allowlists for loopback) is on, which the ``dns-rebinding-protection``
scenario checks.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import logging
import struct
import sys
import warnings
import wave
import zlib
from collections.abc import Awaitable, Callable, Mapping
from itertools import count
from typing import Any

import anyio
import mcp.types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.request_state import RequestStateBoundary, RequestStateSecurity
from mcp.server.streamable_http import EventCallback, EventMessage, EventStore
from mcp.server.subscriptions import (
    InMemorySubscriptionBus,
    ListenHandler,
    PromptsListChanged,
    ToolsListChanged,
)
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.types.version import MODERN_PROTOCOL_VERSIONS

# Logging, sampling-by-request and roots are deprecated in 2026-07-28, but the
# handshake-era scenarios test exactly those features.
warnings.filterwarnings("ignore", category=MCPDeprecationWarning)

SERVER_NAME = "wardgate-conformance-upstream"
SERVER_VERSION = "0.1.0"

logger = logging.getLogger(SERVER_NAME)

Ctx = ServerRequestContext[Any, Any]


# --------------------------------------------------------------------------- media


def _png_1x1_red() -> str:
    """A valid 1x1 red RGB PNG, built by hand, base64-encoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 1x1, 8-bit, truecolour
    idat = zlib.compress(b"\x00\xff\x00\x00")  # filter byte + one red pixel
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    return base64.b64encode(png).decode("ascii")


def _wav_short_silence() -> str:
    """0.01 s of 8 kHz mono 16-bit silence as a WAV file, base64-encoded."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * 80)
    return base64.b64encode(buf.getvalue()).decode("ascii")


PNG_B64 = _png_1x1_red()
WAV_B64 = _wav_short_silence()


# ------------------------------------------------------------------- event store


class MemoryEventStore(EventStore):
    """Process-local event store so that SSE streams can be resumed (Last-Event-ID).

    Event ids are ``<stream id>/<sequence>``; the sequence is global, so ids are
    unique across all streams of all sessions, as the spec requires.
    """

    def __init__(self, max_events: int = 10_000) -> None:
        self._seq = count(1)
        self._events: dict[str, tuple[str, types.JSONRPCMessage | None]] = {}
        self._order: list[str] = []
        self._max = max_events

    async def store_event(self, stream_id: str, message: types.JSONRPCMessage | None) -> str:
        event_id = f"{stream_id}/{next(self._seq)}"
        self._events[event_id] = (stream_id, message)
        self._order.append(event_id)
        if len(self._order) > self._max:
            self._events.pop(self._order.pop(0), None)
        return event_id

    async def replay_events_after(
        self, last_event_id: str, send_callback: EventCallback
    ) -> str | None:
        found = self._events.get(last_event_id)
        if found is None:
            return None
        stream_id = found[0]
        start = self._order.index(last_event_id) + 1
        for event_id in self._order[start:]:
            sid, message = self._events[event_id]
            if sid == stream_id and message is not None:
                await send_callback(EventMessage(message, event_id))
        return stream_id


# ------------------------------------------------------------------------ helpers


def _is_modern(ctx: Ctx) -> bool:
    return ctx.protocol_version in MODERN_PROTOCOL_VERSIONS


def _text(text: str) -> types.TextContent:
    return types.TextContent(type="text", text=text)


def _tool_result(text: str, *, is_error: bool = False) -> types.CallToolResult:
    return types.CallToolResult(content=[_text(text)], is_error=is_error)


def _dump(model: Any) -> Any:
    if hasattr(model, "model_dump"):
        return model.model_dump(by_alias=True, mode="json", exclude_none=True)
    return model


def _elicit_request(message: str, schema: dict[str, Any]) -> types.ElicitRequest:
    return types.ElicitRequest(
        params=types.ElicitRequestFormParams(message=message, requested_schema=schema)
    )


def _sampling_request(prompt: str, max_tokens: int) -> types.CreateMessageRequest:
    return types.CreateMessageRequest(
        params=types.CreateMessageRequestParams(
            messages=[types.SamplingMessage(role="user", content=_text(prompt))],
            max_tokens=max_tokens,
        )
    )


def _roots_request() -> types.ListRootsRequest:
    return types.ListRootsRequest()


def _input_responses(params: types.InputResponseRequestParams) -> dict[str, Any]:
    return {k: _dump(v) for k, v in (params.input_responses or {}).items()}


def _sampling_text(result: Mapping[str, Any]) -> str:
    content = result.get("content")
    if isinstance(content, list):
        content = content[0] if content else {}
    if isinstance(content, Mapping):
        return str(content.get("text", ""))
    return ""


# --------------------------------------------------------------------- tool list

_EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}

_ELICITATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "username": {"type": "string", "description": "User's response"},
        "email": {"type": "string", "description": "User's email address"},
    },
    "required": ["username", "email"],
}

_SEP1034_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "Your name", "default": "John Doe"},
        "age": {"type": "integer", "description": "Your age", "default": 30},
        "score": {"type": "number", "description": "Your score", "default": 95.5},
        "status": {
            "type": "string",
            "description": "Account status",
            "enum": ["active", "inactive", "pending"],
            "default": "active",
        },
        "verified": {"type": "boolean", "description": "Verified?", "default": True},
    },
}

_SEP1330_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
        "titledSingle": {
            "type": "string",
            "oneOf": [
                {"const": "value1", "title": "First Option"},
                {"const": "value2", "title": "Second Option"},
                {"const": "value3", "title": "Third Option"},
            ],
        },
        "legacyEnum": {
            "type": "string",
            "enum": ["opt1", "opt2", "opt3"],
            "enumNames": ["Option One", "Option Two", "Option Three"],
        },
        "untitledMulti": {
            "type": "array",
            "items": {"type": "string", "enum": ["option1", "option2", "option3"]},
        },
        "titledMulti": {
            "type": "array",
            "items": {
                "anyOf": [
                    {"const": "value1", "title": "First Choice"},
                    {"const": "value2", "title": "Second Choice"},
                    {"const": "value3", "title": "Third Choice"},
                ]
            },
        },
    },
}

_JSON_SCHEMA_2020_12: dict[str, Any] = {
    # SEP-1613 ($schema, $defs, additionalProperties) and SEP-2106 ($anchor,
    # allOf/anyOf, if/then/else): all must survive tools/list unchanged.
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "$anchor": "addressDef",
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {
        "name": {"type": "string"},
        "address": {"$ref": "#/$defs/address"},
        "contactMethod": {"type": "string", "enum": ["phone", "email"]},
        "phone": {"type": "string"},
        "email": {"type": "string"},
    },
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}

_CUSTOM_HEADER_SCHEMA: dict[str, Any] = {
    # SEP-2243 (2026-07-28): the client mirrors `region` into `Mcp-Param-Region`;
    # the server (and any policy-enforcing intermediary) checks header == body.
    "type": "object",
    "properties": {
        "region": {"type": "string", "x-mcp-header": "Region", "description": "Target region"},
        "query": {"type": "string", "description": "Free text"},
    },
    "required": ["region"],
}


def _tool(name: str, description: str, schema: dict[str, Any] | None = None) -> types.Tool:
    return types.Tool(name=name, description=description, input_schema=schema or _EMPTY_SCHEMA)


TOOLS: list[types.Tool] = [
    _tool("test_simple_text", "Returns a simple text content block"),
    _tool("test_image_content", "Returns an image content block (1x1 red PNG)"),
    _tool("test_audio_content", "Returns an audio content block (short WAV)"),
    _tool("test_embedded_resource", "Returns an embedded text resource"),
    _tool("test_multiple_content_types", "Returns text, image and resource content"),
    _tool("test_tool_with_logging", "Sends three log notifications while running"),
    _tool("test_tool_with_progress", "Sends three progress notifications while running"),
    _tool("test_error_handling", "Always fails with isError: true"),
    _tool(
        "test_sampling",
        "Asks the client to sample an LLM completion",
        {
            "type": "object",
            "properties": {"prompt": {"type": "string", "description": "The prompt"}},
            "required": ["prompt"],
        },
    ),
    _tool(
        "test_elicitation",
        "Asks the client for user input",
        {
            "type": "object",
            "properties": {"message": {"type": "string", "description": "Message to show"}},
            "required": ["message"],
        },
    ),
    _tool("test_elicitation_sep1034_defaults", "Elicitation with default values (SEP-1034)"),
    _tool("test_elicitation_sep1330_enums", "Elicitation with all enum variants (SEP-1330)"),
    _tool(
        "json_schema_2020_12_tool", "Tool with JSON Schema 2020-12 features", _JSON_SCHEMA_2020_12
    ),
    _tool("test_reconnection", "Closes its POST SSE stream mid-call, then answers (SEP-1699)"),
    _tool("test_input_required_result_elicitation", "MRTR: one elicitation input request"),
    _tool("test_input_required_result_sampling", "MRTR: one sampling input request"),
    _tool("test_input_required_result_list_roots", "MRTR: one roots/list input request"),
    _tool("test_input_required_result_request_state", "MRTR: requestState round trip"),
    _tool("test_input_required_result_multiple_inputs", "MRTR: three input requests at once"),
    _tool("test_input_required_result_multi_round", "MRTR: two rounds with evolving state"),
    _tool("test_input_required_result_tampered_state", "MRTR: integrity-protected requestState"),
    _tool(
        "test_input_required_result_capabilities",
        "MRTR: asks only for inputs the client declared capabilities for",
    ),
    _tool("test_missing_capability", "Needs the sampling capability; -32021 without it"),
    _tool("test_custom_header", "Has an x-mcp-header parameter (SEP-2243)", _CUSTOM_HEADER_SCHEMA),
    _tool("test_streaming_elicitation", "Elicitation: MRTR on 2026-07-28, a request otherwise"),
    _tool("test_logging_tool", "Logs; on 2026-07-28 only if the request opted in via _meta"),
    _tool("test_trigger_tool_change", "Announces a tools list change on subscriptions/listen"),
    _tool("test_trigger_prompt_change", "Announces a prompts list change on subscriptions/listen"),
]

ToolFn = Callable[
    [Ctx, types.CallToolRequestParams], Awaitable[types.CallToolResult | types.InputRequiredResult]
]


# ------------------------------------------------------------------- tool bodies


async def _simple_text(ctx: Ctx, p: types.CallToolRequestParams) -> types.CallToolResult:
    return _tool_result("This is a simple text response for testing.")


async def _image(ctx: Ctx, p: types.CallToolRequestParams) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.ImageContent(type="image", data=PNG_B64, mime_type="image/png")]
    )


async def _audio(ctx: Ctx, p: types.CallToolRequestParams) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.AudioContent(type="audio", data=WAV_B64, mime_type="audio/wav")]
    )


async def _embedded(ctx: Ctx, p: types.CallToolRequestParams) -> types.CallToolResult:
    resource = types.TextResourceContents(
        uri="test://embedded-resource",
        mime_type="text/plain",
        text="This is an embedded resource content.",
    )
    return types.CallToolResult(
        content=[types.EmbeddedResource(type="resource", resource=resource)]
    )


async def _mixed(ctx: Ctx, p: types.CallToolRequestParams) -> types.CallToolResult:
    resource = types.TextResourceContents(
        uri="test://mixed-content-resource",
        mime_type="application/json",
        text=json.dumps({"test": "data", "value": 123}),
    )
    return types.CallToolResult(
        content=[
            _text("Multiple content types test:"),
            types.ImageContent(type="image", data=PNG_B64, mime_type="image/png"),
            types.EmbeddedResource(type="resource", resource=resource),
        ]
    )


async def _logging(ctx: Ctx, p: types.CallToolRequestParams) -> types.CallToolResult:
    for i, msg in enumerate(
        ("Tool execution started", "Tool processing data", "Tool execution completed")
    ):
        if i:
            await anyio.sleep(0.05)
        # related_request_id: the notification rides this request's POST SSE stream.
        await ctx.session.send_log_message(
            "info", msg, logger="conformance", related_request_id=ctx.request_id
        )
    return _tool_result("Tool with logging executed successfully")


async def _progress(ctx: Ctx, p: types.CallToolRequestParams) -> types.CallToolResult:
    for i, value in enumerate((0.0, 50.0, 100.0)):
        if i:
            await anyio.sleep(0.05)
        await ctx.session.report_progress(value, 100.0, f"step {i + 1} of 3")
    return _tool_result("Tool with progress executed successfully")


async def _error(ctx: Ctx, p: types.CallToolRequestParams) -> types.CallToolResult:
    return _tool_result("This tool intentionally returns an error for testing", is_error=True)


def _require_capability(ctx: Ctx, capability: types.ClientCapabilities, what: str) -> None:
    if not ctx.session.check_client_capability(capability):
        raise MCPError(types.INVALID_REQUEST, f"Client does not support {what}")


async def _sampling(
    ctx: Ctx, p: types.CallToolRequestParams
) -> types.CallToolResult | types.InputRequiredResult:
    prompt = str((p.arguments or {}).get("prompt", ""))
    if _is_modern(ctx):
        got = _input_responses(p).get("sampling")
        if got is None:
            return types.InputRequiredResult(
                input_requests={"sampling": _sampling_request(prompt, 100)}
            )
        return _tool_result(f"LLM response: {_sampling_text(got)}")
    _require_capability(
        ctx, types.ClientCapabilities(sampling=types.SamplingCapability()), "sampling"
    )
    result = await ctx.session.create_message(
        [types.SamplingMessage(role="user", content=_text(prompt))],
        max_tokens=100,
        related_request_id=ctx.request_id,
    )
    return _tool_result(f"LLM response: {_sampling_text(_dump(result))}")


async def _elicit_any(
    ctx: Ctx,
    p: types.CallToolRequestParams,
    message: str,
    schema: dict[str, Any],
    render: Callable[[Mapping[str, Any]], str],
) -> types.CallToolResult | types.InputRequiredResult:
    if _is_modern(ctx):
        got = _input_responses(p).get("elicitation")
        if got is None:
            return types.InputRequiredResult(
                input_requests={"elicitation": _elicit_request(message, schema)}
            )
        return _tool_result(render(got))
    _require_capability(
        ctx, types.ClientCapabilities(elicitation=types.ElicitationCapability()), "elicitation"
    )
    result = await ctx.session.elicit_form(message, schema, related_request_id=ctx.request_id)
    return _tool_result(render(_dump(result)))


async def _elicitation(
    ctx: Ctx, p: types.CallToolRequestParams
) -> types.CallToolResult | types.InputRequiredResult:
    message = str((p.arguments or {}).get("message", "Please provide your information"))
    return await _elicit_any(
        ctx,
        p,
        message,
        _ELICITATION_SCHEMA,
        lambda r: (
            f"User response: action={r.get('action')}, content={json.dumps(r.get('content'))}"
        ),
    )


def _completed(r: Mapping[str, Any]) -> str:
    return (
        f"Elicitation completed: action={r.get('action')}, content={json.dumps(r.get('content'))}"
    )


async def _sep1034(
    ctx: Ctx, p: types.CallToolRequestParams
) -> types.CallToolResult | types.InputRequiredResult:
    return await _elicit_any(ctx, p, "Please review your profile", _SEP1034_SCHEMA, _completed)


async def _sep1330(
    ctx: Ctx, p: types.CallToolRequestParams
) -> types.CallToolResult | types.InputRequiredResult:
    return await _elicit_any(ctx, p, "Please choose your options", _SEP1330_SCHEMA, _completed)


async def _json_schema_tool(ctx: Ctx, p: types.CallToolRequestParams) -> types.CallToolResult:
    return _tool_result(f"Received: {json.dumps(p.arguments or {})}")


async def _reconnection(ctx: Ctx, p: types.CallToolRequestParams) -> types.CallToolResult:
    # SEP-1699: end the HTTP response of this POST SSE stream (the SDK sends a
    # `retry` field first) without ending the logical stream; the answer is
    # stored in the event store and delivered when the client reconnects with
    # GET + Last-Event-ID. On stdio or stateless HTTP there is no callback.
    if ctx.close_sse_stream is not None:
        await anyio.sleep(0.1)
        await ctx.close_sse_stream()
    await anyio.sleep(0.3)
    return _tool_result("Reconnection test completed successfully")


# ----- 2026-07-28 InputRequiredResult (MRTR) tools


def _name_schema(field: str) -> dict[str, Any]:
    return {"type": "object", "properties": {field: {"type": "string"}}, "required": [field]}


def _valid_elicit_result(value: Any) -> bool:
    return isinstance(value, Mapping) and value.get("action") in ("accept", "decline", "cancel")


def _validate_responses(raw: Any, keys: list[str]) -> None:
    """Reject structurally invalid inputResponses with -32602 (validate-input scenario)."""
    if raw is None:
        return
    if not isinstance(raw, Mapping):
        raise MCPError(types.INVALID_PARAMS, "inputResponses must be an object")
    for key in keys:
        if key in raw and not isinstance(raw[key], Mapping):
            raise MCPError(types.INVALID_PARAMS, f"inputResponses[{key!r}] must be an object")


def _raw_responses(ctx: Ctx) -> Any:
    return (ctx.params or {}).get("inputResponses")


async def _ir_elicitation(
    ctx: Ctx, p: types.CallToolRequestParams
) -> types.CallToolResult | types.InputRequiredResult:
    got = _input_responses(p).get("user_name")
    if got is None or not _valid_elicit_result(got):
        return types.InputRequiredResult(
            input_requests={
                "user_name": _elicit_request("What is your name?", _name_schema("name"))
            }
        )
    name = (got.get("content") or {}).get("name", "")
    return _tool_result(f"Hello, {name}!")


async def _ir_sampling(
    ctx: Ctx, p: types.CallToolRequestParams
) -> types.CallToolResult | types.InputRequiredResult:
    got = _input_responses(p).get("capital_question")
    if got is None:
        return types.InputRequiredResult(
            input_requests={
                "capital_question": _sampling_request("What is the capital of France?", 100)
            }
        )
    return _tool_result(f"Sampling response: {_sampling_text(got)}")


async def _ir_roots(
    ctx: Ctx, p: types.CallToolRequestParams
) -> types.CallToolResult | types.InputRequiredResult:
    got = _input_responses(p).get("client_roots")
    if got is None:
        return types.InputRequiredResult(input_requests={"client_roots": _roots_request()})
    uris = [str(r.get("uri")) for r in got.get("roots", []) if isinstance(r, Mapping)]
    return _tool_result(f"Client roots: {', '.join(uris) if uris else '(none)'}")


_CONFIRM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"ok": {"type": "boolean"}},
    "required": ["ok"],
}


async def _ir_request_state(
    ctx: Ctx, p: types.CallToolRequestParams
) -> types.CallToolResult | types.InputRequiredResult:
    # requestState is sealed/verified by RequestStateBoundary; here it is plaintext.
    got = _input_responses(p).get("confirm")
    if got is None or p.request_state != "round-1:confirm":
        return types.InputRequiredResult(
            input_requests={"confirm": _elicit_request("Please confirm", _CONFIRM_SCHEMA)},
            request_state="round-1:confirm",
        )
    return _tool_result(f"state-ok: confirmed={json.dumps((got.get('content') or {}).get('ok'))}")


async def _ir_multiple(
    ctx: Ctx, p: types.CallToolRequestParams
) -> types.CallToolResult | types.InputRequiredResult:
    got = _input_responses(p)
    keys = ("user_name", "greeting", "client_roots")
    if p.request_state != "multi" or any(k not in got for k in keys):
        return types.InputRequiredResult(
            input_requests={
                "user_name": _elicit_request("What is your name?", _name_schema("name")),
                "greeting": _sampling_request("Generate a greeting", 50),
                "client_roots": _roots_request(),
            },
            request_state="multi",
        )
    name = (got["user_name"].get("content") or {}).get("name", "")
    greeting = _sampling_text(got["greeting"])
    roots = len(got["client_roots"].get("roots", []))
    return _tool_result(f"name={name}; greeting={greeting}; roots={roots}")


async def _ir_multi_round(
    ctx: Ctx, p: types.CallToolRequestParams
) -> types.CallToolResult | types.InputRequiredResult:
    got = _input_responses(p)
    state = p.request_state or ""
    if state.startswith("round-2:") and "step2" in got:
        name = state.removeprefix("round-2:")
        color = (got["step2"].get("content") or {}).get("color", "")
        return _tool_result(f"Hello {name}, your favorite color is {color}.")
    if state == "round-1" and "step1" in got:
        name = (got["step1"].get("content") or {}).get("name", "")
        return types.InputRequiredResult(
            input_requests={
                "step2": _elicit_request(
                    "Step 2: What is your favorite color?", _name_schema("color")
                )
            },
            request_state=f"round-2:{name}",
        )
    return types.InputRequiredResult(
        input_requests={
            "step1": _elicit_request("Step 1: What is your name?", _name_schema("name"))
        },
        request_state="round-1",
    )


async def _ir_tampered(
    ctx: Ctx, p: types.CallToolRequestParams
) -> types.CallToolResult | types.InputRequiredResult:
    # A tampered state never reaches this handler: RequestStateBoundary answers -32602.
    got = _input_responses(p).get("confirm")
    if got is None or p.request_state != "tamper-check":
        return types.InputRequiredResult(
            input_requests={"confirm": _elicit_request("Please confirm", _CONFIRM_SCHEMA)},
            request_state="tamper-check",
        )
    return _tool_result("state-ok: integrity verified")


def _client_caps(ctx: Ctx) -> types.ClientCapabilities:
    return ctx.session.client_capabilities or types.ClientCapabilities()


async def _ir_capabilities(
    ctx: Ctx, p: types.CallToolRequestParams
) -> types.CallToolResult | types.InputRequiredResult:
    caps = _client_caps(ctx)
    wanted: dict[str, types.InputRequest] = {}
    if caps.sampling is not None:
        wanted["summary"] = _sampling_request("Summarise the request", 50)
    if caps.elicitation is not None:
        wanted["user_name"] = _elicit_request("What is your name?", _name_schema("name"))
    if caps.roots is not None:
        wanted["client_roots"] = _roots_request()
    got = _input_responses(p)
    missing = {k: v for k, v in wanted.items() if k not in got}
    if missing:
        return types.InputRequiredResult(input_requests=missing)
    return _tool_result(f"Completed with inputs: {', '.join(sorted(wanted)) or '(none)'}")


async def _missing_capability(
    ctx: Ctx, p: types.CallToolRequestParams
) -> types.CallToolResult | types.InputRequiredResult:
    if _client_caps(ctx).sampling is None:
        raise MCPError(
            types.MISSING_REQUIRED_CLIENT_CAPABILITY,
            "This tool requires the client's sampling capability",
            data={"requiredCapabilities": {"sampling": {}}},
        )
    return await _sampling(ctx, p)


async def _custom_header(ctx: Ctx, p: types.CallToolRequestParams) -> types.CallToolResult:
    args = p.arguments or {}
    return _tool_result(f"region={args.get('region')}; query={args.get('query')}")


async def _streaming_elicitation(
    ctx: Ctx, p: types.CallToolRequestParams
) -> types.CallToolResult | types.InputRequiredResult:
    return await _elicit_any(
        ctx, p, "Please provide your information", _ELICITATION_SCHEMA, _completed
    )


async def _logging_tool(ctx: Ctx, p: types.CallToolRequestParams) -> types.CallToolResult:
    # The SDK drops the notification on 2026-07-28 unless this request's _meta
    # carried the log-level opt-in (SEP-2577); the suite checks exactly that.
    await ctx.session.send_log_message(
        "info", "test_logging_tool ran", logger="conformance", related_request_id=ctx.request_id
    )
    return _tool_result("Logged (if the client opted in)")


#: 2026-07-28 subscription streams (``subscriptions/listen``) are fed from this bus.
BUS = InMemorySubscriptionBus()


async def _trigger_tool_change(ctx: Ctx, p: types.CallToolRequestParams) -> types.CallToolResult:
    await BUS.publish(ToolsListChanged())
    return _tool_result("tools list change announced")


async def _trigger_prompt_change(ctx: Ctx, p: types.CallToolRequestParams) -> types.CallToolResult:
    await BUS.publish(PromptsListChanged())
    return _tool_result("prompts list change announced")


TOOL_FUNCS: dict[str, ToolFn] = {
    "test_simple_text": _simple_text,
    "test_image_content": _image,
    "test_audio_content": _audio,
    "test_embedded_resource": _embedded,
    "test_multiple_content_types": _mixed,
    "test_tool_with_logging": _logging,
    "test_tool_with_progress": _progress,
    "test_error_handling": _error,
    "test_sampling": _sampling,
    "test_elicitation": _elicitation,
    "test_elicitation_sep1034_defaults": _sep1034,
    "test_elicitation_sep1330_enums": _sep1330,
    "json_schema_2020_12_tool": _json_schema_tool,
    "test_reconnection": _reconnection,
    "test_input_required_result_elicitation": _ir_elicitation,
    "test_input_required_result_sampling": _ir_sampling,
    "test_input_required_result_list_roots": _ir_roots,
    "test_input_required_result_request_state": _ir_request_state,
    "test_input_required_result_multiple_inputs": _ir_multiple,
    "test_input_required_result_multi_round": _ir_multi_round,
    "test_input_required_result_tampered_state": _ir_tampered,
    "test_input_required_result_capabilities": _ir_capabilities,
    "test_missing_capability": _missing_capability,
    "test_custom_header": _custom_header,
    "test_streaming_elicitation": _streaming_elicitation,
    "test_logging_tool": _logging_tool,
    "test_trigger_tool_change": _trigger_tool_change,
    "test_trigger_prompt_change": _trigger_prompt_change,
}

_MRTR_KEYS: dict[str, list[str]] = {
    "test_input_required_result_elicitation": ["user_name"],
    "test_input_required_result_sampling": ["capital_question"],
    "test_input_required_result_list_roots": ["client_roots"],
    "test_input_required_result_request_state": ["confirm"],
    "test_input_required_result_multiple_inputs": ["user_name", "greeting", "client_roots"],
    "test_input_required_result_multi_round": ["step1", "step2"],
    "test_input_required_result_tampered_state": ["confirm"],
}


# ----------------------------------------------------------------- tool handlers


async def list_tools(
    ctx: Ctx, params: types.PaginatedRequestParams | None
) -> types.ListToolsResult:
    return types.ListToolsResult(tools=TOOLS)


async def call_tool(
    ctx: Ctx, params: types.CallToolRequestParams
) -> types.CallToolResult | types.InputRequiredResult:
    fn = TOOL_FUNCS.get(params.name)
    if fn is None:
        raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {params.name}")
    if params.name in _MRTR_KEYS:
        _validate_responses(_raw_responses(ctx), _MRTR_KEYS[params.name])
    return await fn(ctx, params)


# --------------------------------------------------------------------- resources

STATIC_TEXT = "This is the content of the static text resource."

RESOURCES: list[types.Resource] = [
    types.Resource(
        uri="test://static-text",
        name="static-text",
        description="A static text resource",
        mime_type="text/plain",
    ),
    types.Resource(
        uri="test://static-binary",
        name="static-binary",
        description="A static binary resource (1x1 red PNG)",
        mime_type="image/png",
    ),
    types.Resource(
        uri="test://watched-resource",
        name="watched-resource",
        description="A resource that can be subscribed to",
        mime_type="text/plain",
    ),
]

TEMPLATES: list[types.ResourceTemplate] = [
    types.ResourceTemplate(
        uri_template="test://template/{id}/data",
        name="template-data",
        description="A resource template with an id parameter",
        mime_type="application/json",
    )
]

_TEMPLATE_PREFIX, _TEMPLATE_SUFFIX = "test://template/", "/data"


async def list_resources(
    ctx: Ctx, params: types.PaginatedRequestParams | None
) -> types.ListResourcesResult:
    return types.ListResourcesResult(resources=RESOURCES)


async def list_resource_templates(
    ctx: Ctx, params: types.PaginatedRequestParams | None
) -> types.ListResourceTemplatesResult:
    return types.ListResourceTemplatesResult(resource_templates=TEMPLATES)


async def read_resource(
    ctx: Ctx, params: types.ReadResourceRequestParams
) -> types.ReadResourceResult:
    uri = str(params.uri)
    contents: types.TextResourceContents | types.BlobResourceContents
    if uri == "test://static-text":
        contents = types.TextResourceContents(uri=uri, mime_type="text/plain", text=STATIC_TEXT)
    elif uri == "test://static-binary":
        contents = types.BlobResourceContents(uri=uri, mime_type="image/png", blob=PNG_B64)
    elif uri == "test://watched-resource":
        contents = types.TextResourceContents(
            uri=uri, mime_type="text/plain", text="Watched resource content."
        )
    elif uri.startswith(_TEMPLATE_PREFIX) and uri.endswith(_TEMPLATE_SUFFIX):
        ident = uri[len(_TEMPLATE_PREFIX) : -len(_TEMPLATE_SUFFIX)]
        if not ident or "/" in ident:
            raise _resource_not_found(ctx, uri)
        body = {"id": ident, "templateTest": True, "data": f"Data for ID: {ident}"}
        contents = types.TextResourceContents(
            uri=uri, mime_type="application/json", text=json.dumps(body)
        )
    else:
        raise _resource_not_found(ctx, uri)
    return types.ReadResourceResult(contents=[contents])


def _resource_not_found(ctx: Ctx, uri: str) -> MCPError:
    # 2025-11-25 uses -32002; 2026-07-28 retired it in favour of -32602 (SEP-2164).
    code = types.INVALID_PARAMS if _is_modern(ctx) else -32002
    return MCPError(code, f"Resource not found: {uri}", data={"uri": uri})


SUBSCRIPTIONS: set[str] = set()


async def subscribe(ctx: Ctx, params: types.SubscribeRequestParams) -> types.EmptyResult:
    SUBSCRIPTIONS.add(str(params.uri))
    return types.EmptyResult()


async def unsubscribe(ctx: Ctx, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
    SUBSCRIPTIONS.discard(str(params.uri))
    return types.EmptyResult()


# ----------------------------------------------------------------------- prompts

PROMPTS: list[types.Prompt] = [
    types.Prompt(name="test_simple_prompt", description="A simple prompt without arguments"),
    types.Prompt(
        name="test_prompt_with_arguments",
        description="A prompt with two required arguments",
        arguments=[
            types.PromptArgument(name="arg1", description="First test argument", required=True),
            types.PromptArgument(name="arg2", description="Second test argument", required=True),
        ],
    ),
    types.Prompt(
        name="test_prompt_with_embedded_resource",
        description="A prompt that embeds a resource",
        arguments=[
            types.PromptArgument(
                name="resourceUri", description="URI of the resource to embed", required=True
            )
        ],
    ),
    types.Prompt(name="test_prompt_with_image", description="A prompt with image content"),
    types.Prompt(
        name="test_input_required_result_prompt",
        description="MRTR: a prompt that needs elicitation input first (2026-07-28)",
    ),
]


def _user(content: Any) -> types.PromptMessage:
    return types.PromptMessage(role="user", content=content)


async def list_prompts(
    ctx: Ctx, params: types.PaginatedRequestParams | None
) -> types.ListPromptsResult:
    return types.ListPromptsResult(prompts=PROMPTS)


async def get_prompt(
    ctx: Ctx, params: types.GetPromptRequestParams
) -> types.GetPromptResult | types.InputRequiredResult:
    args = params.arguments or {}
    name = params.name
    if name == "test_simple_prompt":
        messages = [_user(_text("This is a simple prompt for testing."))]
    elif name == "test_prompt_with_arguments":
        a1, a2 = args.get("arg1", ""), args.get("arg2", "")
        messages = [_user(_text(f"Prompt with arguments: arg1='{a1}', arg2='{a2}'"))]
    elif name == "test_prompt_with_embedded_resource":
        uri = args.get("resourceUri", "test://example-resource")
        resource = types.TextResourceContents(
            uri=uri, mime_type="text/plain", text="Embedded resource content for testing."
        )
        messages = [
            _user(types.EmbeddedResource(type="resource", resource=resource)),
            _user(_text("Please process the embedded resource above.")),
        ]
    elif name == "test_prompt_with_image":
        messages = [
            _user(types.ImageContent(type="image", data=PNG_B64, mime_type="image/png")),
            _user(_text("Please analyze the image above.")),
        ]
    elif name == "test_input_required_result_prompt":
        got = _input_responses(params).get("user_context")
        if got is None:
            return types.InputRequiredResult(
                input_requests={
                    "user_context": _elicit_request(
                        "What context should the prompt use?", _name_schema("context")
                    )
                }
            )
        context = (got.get("content") or {}).get("context", "")
        messages = [_user(_text(f"Use this context: {context}"))]
    else:
        raise MCPError(types.INVALID_PARAMS, f"Unknown prompt: {name}")
    return types.GetPromptResult(messages=messages)


# ------------------------------------------------------------ logging, completion


LOG_LEVELS: dict[str, str] = {}


async def set_logging_level(ctx: Ctx, params: types.SetLevelRequestParams) -> types.EmptyResult:
    LOG_LEVELS["level"] = params.level
    return types.EmptyResult()


_COMPLETIONS: dict[str, list[str]] = {
    "arg1": ["paris", "park", "party", "test", "testValue1"],
    "arg2": ["world", "wonder", "testValue2"],
    "id": ["1", "123", "456"],
    "resourceUri": ["test://example-resource", "test://static-text"],
}


async def complete(ctx: Ctx, params: types.CompleteRequestParams) -> types.CompleteResult:
    candidates = _COMPLETIONS.get(params.argument.name, [])
    values = [v for v in candidates if v.startswith(params.argument.value)]
    return types.CompleteResult(
        completion=types.Completion(values=values[:100], total=len(values), has_more=False)
    )


# ------------------------------------------------------------------------ server


def build_server() -> Server[Any]:
    server: Server[Any] = Server(
        SERVER_NAME,
        version=SERVER_VERSION,
        instructions="Upstream test server for the MCP conformance suite (Wardgate tests).",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_list_resource_templates=list_resource_templates,
        on_read_resource=read_resource,
        on_subscribe_resource=subscribe,
        on_unsubscribe_resource=unsubscribe,
        on_list_prompts=list_prompts,
        on_get_prompt=get_prompt,
        on_completion=complete,
        on_set_logging_level=set_logging_level,
        on_subscriptions_listen=ListenHandler(BUS),
    )
    # Seal/verify requestState (2026-07-28 MRTR) with a process-local key.
    server.middleware.append(
        RequestStateBoundary(RequestStateSecurity.ephemeral(), default_audience=SERVER_NAME)
    )
    return server


async def _run_stdio() -> None:
    from mcp.server.stdio import stdio_server

    server = build_server()
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


def _run_http(port: int, *, json_response: bool, retry_ms: int) -> None:
    import uvicorn

    server = build_server()
    app = server.streamable_http_app(
        streamable_http_path="/mcp",
        json_response=json_response,
        event_store=MemoryEventStore(),
        retry_interval=retry_ms,
        host="127.0.0.1",  # turns on the SDK's loopback Host/Origin allowlists
    )
    # h11 trims optional whitespace around header values (RFC 9110 §5.5); the
    # httptools parser keeps it, which fails http-header-validation (Mcp-Name).
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", http="h11")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--port", type=int, help="serve Streamable HTTP on 127.0.0.1:PORT/mcp")
    mode.add_argument("--stdio", action="store_true", help="serve over stdin/stdout")
    parser.add_argument(
        "--json-response",
        action="store_true",
        help="answer POSTs with application/json instead of SSE (no server-to-client requests)",
    )
    parser.add_argument(
        "--retry-ms", type=int, default=500, help="SSE retry interval sent before closing a stream"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.stdio:
        anyio.run(_run_stdio)
    else:
        _run_http(args.port, json_response=args.json_response, retry_ms=args.retry_ms)
    return 0


if __name__ == "__main__":
    sys.exit(main())
