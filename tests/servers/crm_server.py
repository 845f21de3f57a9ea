"""A CRM-style MCP server shared by two tenants (the confused deputy of the threat model).

It holds records of tenants ``acme`` and ``globex`` and trusts the ``tenant`` argument
it is given, exactly like a shared back-office tool behind one service account: only
the gateway's policy keeps one tenant's callers out of the other's data.
Run: ``python tests/servers/crm_server.py`` (stdio).
"""

from __future__ import annotations

from mcp.server import MCPServer

server = MCPServer("crm", version="1.0")

RECORDS: dict[str, dict[str, dict[str, str]]] = {
    "acme": {
        "a-1": {"name": "Ann Acme", "ssn": "078-05-1120", "date_of_birth": "1980-01-02"},
        "a-2": {"name": "Abe Acme", "ssn": "219-09-9999", "date_of_birth": "1975-03-04"},
    },
    "globex": {
        "g-1": {"name": "Gus Globex", "ssn": "457-55-5462", "date_of_birth": "1990-05-06"},
    },
}


@server.tool()
def search_records(tenant: str, query: str) -> list[str]:
    """Record ids of ``tenant`` whose name contains ``query``."""
    return [i for i, r in RECORDS.get(tenant, {}).items() if query.lower() in r["name"].lower()]


@server.tool()
def read_record(tenant: str, id: str) -> dict[str, str]:
    """One record of ``tenant``."""
    return RECORDS[tenant][id]


@server.tool()
def update_record(tenant: str, id: str, name: str) -> str:
    """Rename a record of ``tenant``."""
    RECORDS[tenant][id]["name"] = name
    return "updated"


@server.tool()
def delete_record(tenant: str, id: str) -> str:
    """Delete a record of ``tenant``."""
    del RECORDS[tenant][id]
    return "deleted"


if __name__ == "__main__":
    server.run()
