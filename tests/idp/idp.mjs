// A real OpenID Provider (npm oidc-provider) on loopback, for end-to-end identity tests.
//
//   node idp.mjs <port> [resource ...]
//
// Issues JWT access tokens by client credentials with resource indicators (RFC 8707):
//   agent       / agent-secret   plain bearer tokens
//   agent-dpop  / agent-secret   DPoP-bound tokens only (RFC 9449, cnf.jkt)
//   agent-mtls  / agent-secret   certificate-bound tokens (RFC 8705, cnf.x5t#S256); the
//                                client certificate arrives PEM-encoded and URL-escaped
//                                in the x-client-cert header, as from a TLS-terminating proxy.
// Tokens for the resource https://opaque-mcp.example.com/mcp are opaque, not JWTs; a
// resource server learns about them at /token/introspection (RFC 7662) as
//   gateway     / gateway-secret  (client_secret_basic; may only introspect).
// Prints "READY <issuer>" on stdout once it listens. Test use only: signing keys are
// generated per run and never leave the process except as the public JWKS.
import { generateKeyPairSync } from 'node:crypto';
import { join, resolve } from 'node:path';
import process from 'node:process';
import { pathToFileURL } from 'node:url';

// oidc-provider is installed in tests/node (or WARDGATE_NODE_MODULES); ESM ignores NODE_PATH.
const nodeModules = process.env.WARDGATE_NODE_MODULES
  ?? resolve(import.meta.dirname, '..', 'node', 'node_modules');
const { default: Provider, errors } = await import(
  pathToFileURL(join(nodeModules, 'oidc-provider', 'lib', 'index.js')).href
);

const port = Number.parseInt(process.argv[2] ?? '', 10);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error('usage: node idp.mjs <port> [resource ...]');
  process.exit(2);
}
const resources = process.argv.length > 3 ? process.argv.slice(3) : ['https://mcp.example.com/mcp'];
const issuer = `http://127.0.0.1:${port}`;
const SCOPES = 'tools:read tools:call';
const OPAQUE_RESOURCE = 'https://opaque-mcp.example.com/mcp';

function signingKey(kid) {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { ...privateKey.export({ format: 'jwk' }), kid, alg: 'ES256', use: 'sig' };
}

const client = (id, extra) => ({
  client_id: id,
  client_secret: 'agent-secret',
  grant_types: ['client_credentials'],
  redirect_uris: [],
  response_types: [],
  scope: SCOPES,
  token_endpoint_auth_method: 'client_secret_basic',
  id_token_signed_response_alg: 'ES256',
  ...extra,
});

const provider = new Provider(issuer, {
  ttl: { ClientCredentials: 300 },
  clients: [
    client('agent', {}),
    client('agent-dpop', { dpop_bound_access_tokens: true }),
    client('agent-mtls', { tls_client_certificate_bound_access_tokens: true }),
    client('gateway', { client_secret: 'gateway-secret', grant_types: [], scope: undefined }),
  ],
  jwks: { keys: [signingKey('idp-es256-1')] },
  scopes: SCOPES.split(' '),
  extraTokenClaims: async () => ({ tenant: 'tenant-a' }),
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    dPoP: { enabled: true },
    introspection: {
      enabled: true,
      // Only the resource server learns about tokens, not the agents that hold them.
      allowedPolicy: async (_ctx, caller) => caller.clientId === 'gateway',
    },
    mTLS: {
      enabled: true,
      certificateBoundAccessTokens: true,
      getCertificate(ctx) {
        const value = ctx.get('x-client-cert');
        return value ? decodeURIComponent(value) : undefined;
      },
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resources[0],
      useGrantedResource: () => true,
      getResourceServerInfo(_ctx, resourceIndicator) {
        if (resourceIndicator === OPAQUE_RESOURCE) {
          return {
            scope: SCOPES,
            audience: resourceIndicator,
            accessTokenTTL: 300,
            accessTokenFormat: 'opaque',
          };
        }
        if (!resources.includes(resourceIndicator)) {
          throw new errors.InvalidTarget();
        }
        return {
          scope: SCOPES,
          audience: resourceIndicator,
          accessTokenTTL: 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        };
      },
    },
  },
});

const server = provider.listen(port, '127.0.0.1', () => {
  process.stdout.write(`READY ${issuer}\n`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
