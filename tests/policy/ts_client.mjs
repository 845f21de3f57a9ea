// The official TypeScript SDK client, as a policy test drives it:
//   node ts_client.mjs <url> <bearer token>
// Lists tools, then makes the calls given as JSON lines on stdin ({"name", "arguments"}),
// and prints one JSON line per step: {"tools": [...]} then {"ok": result} or
// {"error": {"code", "message"}}.
import { join, resolve } from 'node:path';
import process from 'node:process';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';

const nodeModules = process.env.WARDGATE_NODE_MODULES
  ?? resolve(import.meta.dirname, '..', 'node', 'node_modules');
const sdk = (p) => import(pathToFileURL(join(nodeModules, '@modelcontextprotocol', 'sdk', 'dist', 'esm', p)).href);
const { Client } = await sdk('client/index.js');
const { StreamableHTTPClientTransport } = await sdk('client/streamableHttp.js');

const [url, bearer] = process.argv.slice(2);
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${bearer}` } },
});
const client = new Client({ name: 'policy-ts-test', version: '1.0.0' });
await client.connect(transport);
const out = (v) => process.stdout.write(`${JSON.stringify(v)}\n`);
out({ tools: (await client.listTools()).tools.map((t) => t.name) });
for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  const { name, arguments: args } = JSON.parse(line);
  try {
    out({ ok: await client.callTool({ name, arguments: args }) });
  } catch (err) {
    out({ error: { code: err.code ?? null, message: String(err.message) } });
  }
}
await client.close();
