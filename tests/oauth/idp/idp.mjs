// The test identity provider: oidc-provider on a free loopback port, with two users, dynamic client
// registration, PKCE required, JWT access tokens for resource indicators, and RFC 8693 token
// exchange. Prints one JSON line {"issuer": ...} on stdout when it is ready; stops on SIGTERM.
//
// Test-only routes (never part of a real provider): POST /test/sign signs the JSON body's claims
// with the provider's own key (so tests can hand mcplane a well-signed token with a wrong issuer,
// audience, nonce or expiry); GET /test/stats counts the token exchanges answered.
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { randomUUID } from 'node:crypto';

const require = createRequire(process.env.OIDC_PROVIDER_MODULES + '/');
const { default: Provider, errors } = await import(require.resolve('oidc-provider'));
const jose = await import(require.resolve('jose'));

const USERS = {
  alice: {
    email: 'alice@example.com', email_verified: true, name: 'Alice',
    roles: ['admin'], groups: ['engineering', 'oncall'], tenant: 'acme',
    org: { roles: 'reader writer' },
  },
  bob: {
    email: 'bob@other.example', email_verified: true, name: 'Bob',
    roles: [], groups: [], tenant: 'acme',
  },
  mallory: {
    email: 'mallory@example.com', email_verified: false, name: 'Mallory',
    roles: [], groups: [], tenant: 'evil',
  },
};

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const JWT_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
let exchanges = 0;
const EXCHANGED_TTL = Number(process.env.IDP_EXCHANGED_TTL || 300);

const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
const signingJwk = { ...(await jose.exportJWK(privateKey)), kid: 'idp-1', alg: 'RS256', use: 'sig' };
const publicJwks = jose.createLocalJWKSet({
  keys: [{ kty: signingJwk.kty, n: signingJwk.n, e: signingJwk.e, kid: 'idp-1', alg: 'RS256', use: 'sig' }],
});

const server = createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  jwks: { keys: [signingJwk] },
  clients: [],
  cookies: { keys: [randomUUID()] },
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'roles', 'groups', 'tenant', 'org'],
  },
  features: {
    devInteractions: { enabled: true },
    registration: { enabled: true },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async (_ctx, _client, oneOf) => oneOf,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (_ctx, resource) => ({
        audience: resource, scope: 'mcp', accessTokenFormat: 'jwt', accessTokenTTL: 600,
      }),
    },
  },
  ttl: { IdToken: 600 },
  async findAccount(_ctx, id) {
    const user = USERS[id];
    if (!user) return undefined;
    return { accountId: id, async claims() { return { sub: id, ...user }; } };
  },
});

// RFC 8693: the subject token must be an access token this provider signed (a JWT); the answer is
// a JWT access token for the requested audience/resource, for the same subject.
provider.registerGrantType(TOKEN_EXCHANGE, async (ctx) => {
  const { params, client } = ctx.oidc;
  exchanges += 1;
  if (params.subject_token_type !== ACCESS_TOKEN_TYPE && params.subject_token_type !== JWT_TOKEN_TYPE) {
    throw new errors.InvalidRequest('unsupported subject_token_type');
  }
  let subject;
  try {
    ({ payload: subject } = await jose.jwtVerify(params.subject_token, publicJwks, { issuer }));
  } catch {
    throw new errors.InvalidGrant('subject_token is not valid');
  }
  const audience = params.audience || params.resource;
  if (!audience) throw new errors.InvalidTarget('audience or resource is required');
  const now = Math.floor(Date.now() / 1000);
  const claims = {
    iss: issuer, sub: subject.sub, aud: audience, iat: now, exp: now + EXCHANGED_TTL,
    jti: randomUUID(), client_id: client.clientId, scope: params.scope || subject.scope || 'mcp',
    act: { sub: client.clientId },
  };
  if (USERS[subject.sub]) claims.roles = USERS[subject.sub].roles;
  const token = await new jose.SignJWT(claims)
    .setProtectedHeader({ alg: 'RS256', kid: 'idp-1', typ: 'at+jwt' })
    .sign(privateKey);
  ctx.body = {
    access_token: token,
    issued_token_type: ACCESS_TOKEN_TYPE,
    token_type: 'Bearer',
    expires_in: EXCHANGED_TTL,
    scope: claims.scope,
  };
}, ['subject_token', 'subject_token_type', 'audience', 'resource', 'scope', 'requested_token_type', 'actor_token', 'actor_token_type']);

const providerCallback = provider.callback();
server.on('request', async (req, res) => {
  if (req.method === 'POST' && req.url === '/test/sign') {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const claims = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    const token = await new jose.SignJWT(claims)
      .setProtectedHeader({ alg: 'RS256', kid: 'idp-1' })
      .sign(privateKey);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ token }));
    return;
  }
  if (req.method === 'GET' && req.url === '/test/stats') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ exchanges }));
    return;
  }
  providerCallback(req, res);
});

process.on('SIGTERM', () => server.close(() => process.exit(0)));
process.stdout.write(JSON.stringify({ issuer }) + '\n');
