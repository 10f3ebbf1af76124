/**
 * A small stand-in backend that answers the handful of Buildbot REST and
 * JSON-RPC calls the demo and the tests use, in Buildbot 3.x's shapes. It is
 * not Buildbot: tests that must prove behaviour against Buildbot itself start
 * real masters (test/support/buildbot.ts). Every answer carries
 * `X-Served-By: <name>` so one can see which side answered.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface StandinOptions {
  name: string;
  builders: readonly string[];
  port?: number;
  host?: string;
}

export interface ForceRecord {
  scheduler: string;
  builderNames: string[];
  at: number;
}

export interface StandinBackend {
  readonly name: string;
  readonly url: string;
  readonly port: number;
  /** Force calls received, in order. */
  readonly forces: ForceRecord[];
  /** Requests received, any kind. */
  requestCount(): number;
  close(): Promise<void>;
}

export async function startStandinBackend(options: StandinOptions): Promise<StandinBackend> {
  const builders = options.builders.map((name, i) => ({ builderid: i + 1, name }));
  const forces: ForceRecord[] = [];
  let requests = 0;
  let buildsetId = 0;

  const server: Server = createServer((req, res) => {
    requests++;
    res.setHeader('x-served-by', options.name);
    const url = new URL(req.url ?? '/', 'http://standin');
    if (req.method === 'POST') return void handleRpc(req, res, url.pathname);
    if (req.method !== 'GET' && req.method !== 'HEAD') return json(res, 400, { error: 'invalid HTTP method' });

    const parts = url.pathname.split('/').filter(Boolean); // api, v2, builders, x, ...
    if (parts[0] !== 'api' || parts[1] !== 'v2') return json(res, 404, { error: 'not found' });
    if (parts[2] === 'builders' && parts.length === 3) {
      return json(res, 200, { builders: builders.map(describe), meta: { total: builders.length } });
    }
    if (parts[2] === 'builders' && parts[3] !== undefined) {
      const key = decodeURIComponent(parts[3]);
      const builder = builders.find((b) => b.name === key || String(b.builderid) === key);
      if (!builder) return json(res, 404, { error: `builder ${key} not found` });
      if (parts.length === 4) return json(res, 200, { builders: [describe(builder)], meta: { total: 1 } });
      if (parts[4] === 'builds') {
        const builds = [1, 2].map((number) => ({ buildid: builder.builderid * 100 + number, builderid: builder.builderid, number, complete: true, results: 0, state_string: `build successful (on ${options.name})` }));
        return json(res, 200, { builds, meta: { total: builds.length } });
      }
    }
    return json(res, 404, { error: `no such resource: ${url.pathname}` });
  });

  function describe(builder: { builderid: number; name: string }) {
    return { ...builder, description: `${builder.name} on the ${options.name} stand-in`, masterids: [1], tags: [] };
  }

  async function handleRpc(req: IncomingMessage, res: ServerResponse, pathname: string): Promise<void> {
    const chunks: Buffer[] = [];
    try {
      for await (const chunk of req) chunks.push(chunk as Buffer);
    } catch {
      return;
    }
    if (!String(req.headers['content-type'] ?? '').startsWith('application/json')) {
      return json(res, 400, { jsonrpc: '2.0', id: null, error: { code: -32600, message: 'Invalid JSON-RPC Request' } });
    }
    let call: { id?: unknown; method?: unknown; params?: { builderNames?: unknown } };
    try {
      call = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      return json(res, 400, { jsonrpc: '2.0', id: null, error: { code: -32700, message: 'Parse error' } });
    }
    const match = /^\/api\/v2\/forceschedulers\/([^/]+)$/.exec(pathname);
    if (!match || call.method !== 'force') {
      return json(res, 404, { jsonrpc: '2.0', id: call.id ?? null, error: { code: -32601, message: 'method not found' } });
    }
    const names = Array.isArray(call.params?.builderNames) ? (call.params.builderNames as string[]) : builders.map((b) => b.name);
    forces.push({ scheduler: match[1]!, builderNames: names, at: Date.now() });
    buildsetId++;
    const requestIds: Record<string, number> = {};
    names.forEach((name, i) => {
      const builder = builders.find((b) => b.name === name);
      if (builder) requestIds[String(builder.builderid)] = buildsetId * 10 + i;
    });
    json(res, 200, { id: call.id ?? null, jsonrpc: '2.0', result: [buildsetId, requestIds] });
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    name: options.name,
    url: `http://127.0.0.1:${port}`,
    port,
    forces,
    requestCount: () => requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
