"""An https upstream is reached with its certificate verified: against the configured
CA file it works; with the system store (which does not know that CA) it is refused."""

from __future__ import annotations

from pathlib import Path

import trustme

from support.http import modern_body, modern_headers, post
from support.servers import answering_app, run_gateway, serve_app

_upstream = answering_app({"content": [], "tls": True})


async def test_https_upstream_with_a_private_ca(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file, ca_file = tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    ca.cert_pem.write_to_path(str(ca_file))
    tls = {"ssl_certfile": str(cert_file), "ssl_keyfile": str(key_file)}
    async with serve_app(_upstream, **tls) as upstream_url:
        assert upstream_url.startswith("https://")
        config = {
            "upstreams": {
                "trusted": {
                    "transport": "http",
                    "url": upstream_url + "/mcp",
                    "ca_file": str(ca_file),
                },
                "untrusted": {"transport": "http", "url": upstream_url + "/mcp"},
            },
            "routes": {"t": {"upstreams": ["trusted"]}, "u": {"upstreams": ["untrusted"]}},
        }
        async with run_gateway(config) as (url, _):
            body = modern_body("tools/call", {"name": "x", "arguments": {}})
            headers = modern_headers("tools/call", "x")
            status, _, answer = await post(f"{url}/mcp/t", body, headers)
            assert status == 200 and answer["result"]["tls"] is True
            status, _, answer = await post(f"{url}/mcp/u", body, headers)
            assert status == 502 and answer["error"]["code"] == -32603
