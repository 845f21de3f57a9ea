// A real OpenID Provider (npm oidc-provider) for the policy tests: two tenants,
// humans and agents, each client's tokens carrying its tenant, groups and kind.
//
//   node policy_idp.mjs <port> <resource>
//
//   alice  (acme, human, staff)       bob  (globex, human, staff)
//   erin   (acme, human, editors, MFA) crm-bot (acme, agent, scope crm.read)
// Every client's secret is "policy-secret". Prints "READY <issuer>" once it listens.
import { generateKeyPairSync } from 'node:crypto';
import { join, resolve } from 'node:path';
import process from 'node:process';
import { pathToFileURL } from 'node:url';

const nodeModules = process.env.WARDGATE_NODE_MODULES
  ?? resolve(import.meta.dirname, '..', 'node', 'node_modules');
const { default: Provider } = await import(
  pathToFileURL(join(nodeModules, 'oidc-provider', 'lib', 'index.js')).href
);

const port = Number.parseInt(process.argv[2] ?? '', 10);
const resource = process.argv[3];
const issuer = `http://127.0.0.1:${port}`;
const SCOPES = 'tools:call crm.read';

const PEOPLE = {
  alice: { tenant: 'acme', groups: ['staff'], wardgate_kind: 'human' },
  bob: { tenant: 'globex', groups: ['staff'], wardgate_kind: 'human' },
  erin: { tenant: 'acme', groups: ['editors'], wardgate_kind: 'human', amr: ['pwd', 'otp'] },
  'crm-bot': { tenant: 'acme', groups: [], wardgate_kind: 'agent' },
};

const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const key = { ...privateKey.export({ format: 'jwk' }), kid: 'policy-idp-1', alg: 'ES256', use: 'sig' };

const provider = new Provider(issuer, {
  ttl: { ClientCredentials: 300 },
  clients: Object.keys(PEOPLE).map((id) => ({
    client_id: id,
    client_secret: 'policy-secret',
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    scope: SCOPES,
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'ES256',
  })),
  jwks: { keys: [key] },
  scopes: SCOPES.split(' '),
  extraTokenClaims: async (_ctx, token) => PEOPLE[token.clientId] ?? {},
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: SCOPES,
        audience: resource,
        accessTokenTTL: 300,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'ES256' } },
      }),
    },
  },
});

provider.listen(port, '127.0.0.1', () => {
  process.stdout.write(`READY ${issuer}\n`);
});
