// The peer for bench/token_throughput.py: node oidc-provider 9 with its default
// in-memory adapter, issuing JWT access tokens (ES256, RFC 9068 shape) for the
// client_credentials grant through a default resource indicator.
//
// Usage: node server.mjs PORT CLIENT_ID CLIENT_SECRET
// Listens on 127.0.0.1 only and prints "ready" once listening.
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const [port, clientId, clientSecret] = process.argv.slice(2);
if (!port || !clientId || !clientSecret) {
  console.error('usage: node server.mjs PORT CLIENT_ID CLIENT_SECRET');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;
const resource = 'urn:bastion-bench:api';

function jwk(type, options, alg, kid) {
  const { privateKey } = generateKeyPairSync(type, options);
  return { ...privateKey.export({ format: 'jwk' }), alg, use: 'sig', kid };
}

const provider = new Provider(issuer, {
  // Bastion holds an ES256 key for access tokens and an RS256 key for ID tokens; so does the peer.
  jwks: {
    keys: [
      jwk('ec', { namedCurve: 'P-256' }, 'ES256', 'es256-bench'),
      jwk('rsa', { modulusLength: 2048 }, 'RS256', 'rs256-bench'),
    ],
  },
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: 'read',
  }],
  scopes: ['read'],
  ttl: { ClientCredentials: 3600 },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, indicator) => {
        if (indicator !== resource) throw new Provider.errors.InvalidTarget();
        return {
          scope: 'read',
          audience: resource,
          accessTokenTTL: 3600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        };
      },
    },
  },
});

const server = provider.listen(Number(port), '127.0.0.1', () => {
  console.log(`ready ${issuer}`);
});
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
