"""``wardgate scan-tools URL | -- CMD``: the poisoning scan, offline, with a printed report.

Connects to one MCP server with the official SDK client (Streamable HTTP for a URL, stdio
for a command), lists its tools, prompts, resources and server instructions, fingerprints
them and runs the same scan the integrity guard runs. The CLI wiring is one line::

    report, code = asyncio.run(scan_tools(target)); print(report); sys.exit(code)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from wardgate.content.integrity import (
    Descriptor,
    ScanFinding,
    ScanLimits,
    descriptors,
    scan_descriptor,
)
from wardgate.errors import ConfigError, UpstreamError

__all__ = ["Listing", "fetch_listing", "format_report", "scan_listing", "scan_tools"]


@dataclass(slots=True)
class Listing:
    """What one server lists, as plain JSON values."""

    identity: str
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    instructions: str | None = None

    def descriptors(self) -> list[Descriptor]:
        found = [d for method, result in self.results.items() for d in descriptors(method, result)]
        if self.instructions is not None:
            found.append(Descriptor.of("instructions", "", {"instructions": self.instructions}))
        return found


def _dump(model: Any) -> dict[str, Any]:
    out: dict[str, Any] = model.model_dump(by_alias=True, exclude_none=True, mode="json")
    return out


async def fetch_listing(target: str | Sequence[str]) -> Listing:
    """List everything ``target`` (a URL, or a command line as a list) serves.

    Raises:
        ConfigError: the MCP SDK is not installed.
        UpstreamError: the server could not be reached or failed to list.
    """
    try:
        from mcp import Client
        from mcp.client.stdio import StdioServerParameters
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigError("scan-tools needs the MCP SDK: pip install 'wardgate[demo]'") from exc
    if isinstance(target, str):
        server: Any = target
        identity = target
    else:
        if not target:
            raise ConfigError("scan-tools: empty command")
        server = StdioServerParameters(command=target[0], args=list(target[1:]))
        identity = "stdio:" + " ".join(target)
    listing = Listing(identity)
    try:
        async with Client(server) as client:
            caps = client.server_capabilities
            listing.instructions = client.instructions
            if caps.tools is not None:
                listing.results["tools/list"] = _dump(await client.list_tools())
            if caps.prompts is not None:
                listing.results["prompts/list"] = _dump(await client.list_prompts())
            if caps.resources is not None:
                listing.results["resources/list"] = _dump(await client.list_resources())
                templates = await client.list_resource_templates()
                listing.results["resources/templates/list"] = _dump(templates)
    except Exception as exc:
        raise UpstreamError(f"scan-tools: {identity}: {type(exc).__name__}: {exc}") from exc
    return listing


def scan_listing(
    listing: Listing, *, limits: ScanLimits | None = None
) -> list[tuple[Descriptor, list[ScanFinding]]]:
    """Every descriptor with its findings (an empty list: clean)."""
    found = listing.descriptors()
    tools = [d.name for d in found if d.kind == "tool"]
    out = []
    for d in found:
        # Within one server, mentioning a sibling tool is normal; shadowing is about
        # other servers, which an offline scan of one server does not know.
        others = [] if d.kind == "tool" else tools
        out.append((d, scan_descriptor(d, other_tools=others, limits=limits or ScanLimits())))
    return out


def format_report(listing: Listing, scanned: list[tuple[Descriptor, list[ScanFinding]]]) -> str:
    """A plain-text report: one line per descriptor, findings indented under it."""
    lines = [f"upstream: {listing.identity}"]
    for d, findings in scanned:
        label = d.name or "(server instructions)"
        mark = "FLAG" if findings else "ok  "
        lines.append(f"{mark} {d.kind:18} {label}  sha256:{d.fingerprint[:16]}")
        lines.extend(f"       {f.what} at {f.where}" for f in findings)
    flagged = sum(1 for _, f in scanned if f)
    lines.append(f"{len(scanned)} descriptors, {flagged} flagged")
    return "\n".join(lines)


async def scan_tools(target: str | Sequence[str]) -> tuple[str, int]:
    """The report for ``target`` and the exit code (0 clean, 1 findings).

    Raises:
        ConfigError: the MCP SDK is not installed.
        UpstreamError: the server could not be reached.
    """
    listing = await fetch_listing(target)
    scanned = scan_listing(listing)
    return format_report(listing, scanned), (1 if any(f for _, f in scanned) else 0)
