// Calls one tool with the official TypeScript SDK client and prints, as one JSON line,
// how the SDK surfaced the answer (result, or error class, code, message and data),
// then makes a legitimate call on the same session.
// Usage: node call_tool.mjs URL streamable|sse TOOL ARGS_JSON [ECHO_TOOL]
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, kind, tool, args, echoTool = "echo"] = process.argv.slice(2);
const transport =
  kind === "sse"
    ? new SSEClientTransport(new URL(url))
    : new StreamableHTTPClientTransport(new URL(url));
const client = new Client({ name: "wardgate-test", version: "0" });
const out = {};
try {
  await client.connect(transport);
  out.protocolVersion = transport.protocolVersion ?? null;
  try {
    out.result = await client.callTool({ name: tool, arguments: JSON.parse(args) }, undefined, {
      timeout: 20000,
    });
  } catch (e) {
    out.error = { name: e.constructor.name, code: e.code ?? null, message: e.message, data: e.data ?? null };
  }
  const echo = await client.callTool({ name: echoTool, arguments: { text: "still works" } });
  out.echo = echo.content[0].text;
} catch (e) {
  out.fatal = { name: e.constructor.name, code: e.code ?? null, message: String(e.message) };
} finally {
  await client.close().catch(() => {});
}
console.log(JSON.stringify(out));
