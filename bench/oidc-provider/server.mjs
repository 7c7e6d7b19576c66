// Reference server for bench/compare.sh: a minimal node oidc-provider configured to do the
// same work as `identity-server demo` on the benchmarked path: client_credentials grants
// for `demo-eservice` authenticated with client_secret_basic, answered with an ES256-signed
// JWT access token, plus the discovery document.
//
// Usage: NODE_ENV=production node bench/oidc-provider/server.mjs [port]   (or PORT=...)
// Listens on 127.0.0.1 only.
import { createServer } from 'node:http';
import { generateKeyPairSync, randomBytes } from 'node:crypto';

import Provider, { errors } from 'oidc-provider';

const port = Number(process.argv[2] ?? process.env.PORT ?? 18090);
const host = '127.0.0.1';
const issuer = `http://${host}:${port}`;

// oidc-provider only issues JWT access tokens for a resource server (RFC 8707), so the
// benchmark needs exactly one. It is also returned as the default resource, so a request
// with just `grant_type=client_credentials` works and wrk can send byte-for-byte the same
// body to both servers.
const RESOURCE = 'urn:bench:api';

// A fresh P-256 signing key per process: no private key is ever written to the repository,
// and a benchmark does not need key continuity across restarts.
const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const signingJwk = {
  ...privateKey.export({ format: 'jwk' }),
  kid: 'bench-es256',
  alg: 'ES256',
  use: 'sig',
};

const configuration = {
  clients: [
    {
      client_id: 'demo-eservice',
      client_secret: 'demo-eservice-secret',
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['client_credentials'],
      // A machine client: no front-channel flows at all.
      response_types: [],
      redirect_uris: [],
    },
  ],
  jwks: { keys: [signingJwk] },
  // The keystore holds only an EC key; without this the provider would default ID token
  // (and unconfigured JWT) signing to RS256, for which there is no key.
  clientDefaults: { id_token_signed_response_alg: 'ES256' },
  // Signed cookie keys are unused on this path; set one so the provider does not warn.
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  features: {
    // Interactive login pages are irrelevant here and are not meant for production.
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => RESOURCE,
      getResourceServerInfo: async (_ctx, resourceIndicator) => {
        if (resourceIndicator !== RESOURCE) throw new errors.InvalidTarget();
        return {
          // Same lifetime as the demo's tokens (600 s). `signing` is the scope the demo
          // client gets; oidc-provider only puts it in the token when the request asks.
          scope: 'signing',
          audience: RESOURCE,
          accessTokenTTL: 600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        };
      },
    },
  },
  ttl: { ClientCredentials: 600 },
  // No `adapter`: the default in-memory adapter. JWT access tokens are not stored by the
  // provider at all, so nothing is persisted per grant.
};

const provider = new Provider(issuer, configuration);

createServer(provider.callback()).listen(port, host, () => {
  console.log(`oidc-provider listening on ${issuer} (NODE_ENV=${process.env.NODE_ENV ?? ''})`);
});
