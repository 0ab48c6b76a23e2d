// The official TypeScript SDK client logging in to an OAuth-protected server, for
// tests/oauth/server/test_typescript.py.
//
//   node ts_oauth_client.mjs SDK_NODE_MODULES SERVER_URL REDIRECT_URI
//
// It connects; the SDK discovers the authorization server from the 401, registers and calls
// redirectToAuthorization: this prints {"authorize": URL} and reads one line from stdin, the URL
// the browser was sent back to. It checks `state` and `iss` (RFC 9207) itself, finishes the
// login with the code, connects again, calls `whoami` and prints {"result": text, "tokens": {...}}.

import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [modules, serverUrl, redirectUri] = process.argv.slice(2);
const sdkRoot = join(modules, '@modelcontextprotocol', 'sdk');
const load = (path) => import(pathToFileURL(join(sdkRoot, 'dist', 'esm', path)).href);
const { Client } = await load('client/index.js');
const { StreamableHTTPClientTransport } = await load('client/streamableHttp.js');
const { UnauthorizedError } = await load('client/auth.js');

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const say = (value) => process.stdout.write(JSON.stringify(value) + '\n');

let clientInformation;
let tokens;
let verifier;
let expectedState;
let issuer;
const provider = {
  get redirectUrl() { return redirectUri; },
  get clientMetadata() {
    return {
      client_name: 'TypeScript SDK client',
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  },
  state() { expectedState = crypto.randomUUID(); return expectedState; },
  clientInformation() { return clientInformation; },
  saveClientInformation(info) { clientInformation = info; },
  tokens() { return tokens; },
  saveTokens(value) { tokens = value; },
  saveCodeVerifier(value) { verifier = value; },
  codeVerifier() { return verifier; },
  async redirectToAuthorization(url) {
    issuer = new URL(url).origin;
    say({ authorize: url.href });
  },
};

const connect = async () => {
  const transport = new StreamableHTTPClientTransport(new URL(serverUrl), { authProvider: provider });
  const client = new Client({ name: 'mcplane-oauth-ts', version: '1.0.0' });
  await client.connect(transport);
  return { client, transport };
};

try {
  await connect();
  throw new Error('the server let an unauthenticated client in');
} catch (error) {
  if (!(error instanceof UnauthorizedError)) throw error;
}
const back = new URL((await lines.next()).value.trim());
if (back.searchParams.get('state') !== expectedState) throw new Error('state mismatch');
if (back.searchParams.get('iss') !== issuer) throw new Error(`iss mismatch: ${back.searchParams.get('iss')}`);
const pending = new StreamableHTTPClientTransport(new URL(serverUrl), { authProvider: provider });
await pending.finishAuth(back.searchParams.get('code'));
const { client } = await connect();
const result = await client.callTool({ name: 'whoami', arguments: {} });
say({ result: result.content[0].text, tokens: { access: tokens.access_token, refresh: tokens.refresh_token } });
await client.close();
process.exit(0);
