// Drives an MCP server with the official TypeScript SDK client for tests/interop/test_typescript.py.
//
//   node ts_client.mjs SDK_NODE_MODULES < plan.json > outcomes.json
//
// SDK_NODE_MODULES is the node_modules folder that holds the pinned @modelcontextprotocol/sdk
// (scripts/install-test-deps.sh puts it in .tools/interop/ts/node_modules). The plan on stdin is
//   {"target": {"command", "args", "env", "cwd"} | {"url"}, "cases": {"<id>": [step, ...], ...}}
// and each step is one client operation (see `run` below). It prints one JSON object:
//   {"client": {"sdk", "protocolVersion", "server"}, "outcomes": {"<id>": [outcome, ...]}}
// where an outcome is {"ok": true, "result": <the result as the client returns it>, ...} or
// {"ok": false, "error": {"name", "code", "message", "data"}}: a thrown error, whether the server
// sent it or the client raised it itself (a schema violation, say). One connection serves every case.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const modules = process.argv[2];
if (!modules) {
  console.error('usage: node ts_client.mjs SDK_NODE_MODULES < plan.json');
  process.exit(2);
}
const sdkRoot = join(modules, '@modelcontextprotocol', 'sdk');
const load = (path) => import(pathToFileURL(join(sdkRoot, 'dist', 'esm', path)).href);
const { Client } = await load('client/index.js');
const { StdioClientTransport } = await load('client/stdio.js');
const { StreamableHTTPClientTransport } = await load('client/streamableHttp.js');
const { ElicitRequestSchema } = await load('types.js');
const sdkVersion = JSON.parse(readFileSync(join(sdkRoot, 'package.json'), 'utf8')).version;

const plan = JSON.parse(readFileSync(0, 'utf8'));
const STEP_TIMEOUT_MS = 20000;

const client = new Client(
  { name: 'mcplane-interop-ts', version: '1.0.0' },
  { capabilities: { elicitation: { form: {} } } },
);
const elicitations = [];
const wire = []; // notifications/progress as they arrived, before the SDK dispatched them
client.setRequestHandler(ElicitRequestSchema, async (request) => {
  elicitations.push(request.params.message);
  return { action: 'accept', content: { name: 'Ada' } };
});

function describe(error) {
  return {
    name: error?.constructor?.name ?? typeof error,
    code: error?.code ?? null,
    message: String(error?.message ?? error),
    data: error?.data ?? null,
  };
}

async function attempt(fn, extra = {}) {
  try {
    return { ok: true, result: await fn(), ...extra };
  } catch (error) {
    return { ok: false, error: describe(error), ...extra };
  }
}

// One step: one client operation.
async function run(step) {
  const options = { timeout: STEP_TIMEOUT_MS };
  switch (step.op) {
    case 'listTools':
      return attempt(() => client.listTools());
    case 'callTool': {
      const params = { name: step.name, arguments: step.arguments ?? {} };
      if (step.meta) params._meta = step.meta;
      const progress = [];
      if (step.progress) options.onprogress = (p) => progress.push(p);
      const before = wire.length;
      const outcome = await attempt(() => client.callTool(params, undefined, options));
      return step.progress ? { ...outcome, progress, wireProgress: wire.slice(before) } : outcome;
    }
    case 'elicit': {
      const before = elicitations.length;
      const outcome = await attempt(() => client.callTool({ name: step.name, arguments: {} }, undefined, options));
      return { ...outcome, elicitations: elicitations.slice(before) };
    }
    case 'cancelTool': {
      // Start the call, wait until the server says it runs, abort it, then ask the server what it saw.
      const controller = new AbortController();
      const call = attempt(() =>
        client.callTool({ name: step.name, arguments: step.arguments }, undefined, {
          ...options,
          signal: controller.signal,
        }),
      );
      const started = await attempt(() =>
        client.callTool({ name: step.started.name, arguments: step.started.arguments }, undefined, options),
      );
      controller.abort('interop test cancels the call');
      const aborted = await call;
      const seen = await attempt(() =>
        client.callTool({ name: step.status.name, arguments: step.status.arguments }, undefined, options),
      );
      return { ok: seen.ok, started, aborted, result: seen.result, error: seen.error };
    }
    case 'listResources':
      return attempt(() => client.listResources());
    case 'listResourceTemplates':
      return attempt(() => client.listResourceTemplates());
    case 'readResource':
      return attempt(() => client.readResource({ uri: step.uri }, options));
    case 'listPrompts':
      return attempt(() => client.listPrompts());
    case 'getPrompt':
      return attempt(() => client.getPrompt({ name: step.name, arguments: step.arguments ?? {} }, options));
    default:
      return { ok: false, error: { name: 'PlanError', code: null, message: `unknown op ${step.op}`, data: null } };
  }
}

const target = plan.target;
const transport = target.url
  ? new StreamableHTTPClientTransport(new URL(target.url))
  : new StdioClientTransport({
      command: target.command,
      args: target.args ?? [],
      env: target.env,
      cwd: target.cwd,
      stderr: 'inherit',
    });

const report = { client: { sdk: sdkVersion, protocolVersion: null }, outcomes: {} };
// The client hands the negotiated version to a transport that takes it (HTTP); catch it for stdio too.
const setProtocolVersion = transport.setProtocolVersion?.bind(transport);
transport.setProtocolVersion = (version) => {
  report.client.protocolVersion = version;
  setProtocolVersion?.(version);
};
try {
  await client.connect(transport);
  const dispatch = transport.onmessage;
  transport.onmessage = (message, extra) => {
    if (message.method === 'notifications/progress') wire.push(message.params);
    dispatch?.(message, extra);
  };
  report.client.server = client.getServerVersion() ?? null;
  // Prime the client's output-schema validators: callTool validates structuredContent only for
  // tools it has listed, which is what every host does before calling.
  await client.listTools();
  for (const [id, steps] of Object.entries(plan.cases)) {
    const outcomes = [];
    for (const step of steps) outcomes.push(await run(step));
    report.outcomes[id] = outcomes;
  }
} catch (error) {
  report.fatal = describe(error);
} finally {
  await client.close().catch(() => {});
}
process.stdout.write(JSON.stringify(report) + '\n');
process.exit(0);
