/**
 * Hostile clients: nothing a client sends can exhaust the proxy or take
 * another client's answer. Bodies that stall (before and after the proxy
 * started sending them on), more held bodies than the budget allows, garbage
 * after a complete request, a duplicate Host, an h2c upgrade offer, a
 * Connection header naming Host. Every backend answer carries the id of the
 * request it answers, every client checks it got its own, and after each case
 * the proxy still serves normal traffic with nothing left held.
 *
 * Real sockets throughout: the proxy's listener (createProxyServer, with short
 * client timeouts) on 127.0.0.1 port 0 in front of node:http backends.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import http from 'node:http';
import net from 'node:net';
import { Writable } from 'node:stream';
import { parseConfig } from '../../src/config/load.js';
import { BuilderDirectory } from '../../src/ingress/builder-directory.js';
import { createProxyServer, type ProxyServerOptions } from '../../src/ingress/server.js';
import { createLogger } from '../../src/logging/logger.js';
import { ProxyMetrics } from '../../src/metrics/metrics.js';
import { TrafficStats } from '../../src/metrics/traffic.js';
import { CircuitBreakers } from '../../src/resilience/circuit.js';
import { Shadower } from '../../src/shadow/shadow.js';
import { Upstream } from '../../src/upstream/upstream.js';
import { waitFor } from '../support/proxy.js';
import { closeServer, listen } from '../support/servers.js';
import { FULL, send } from './kit.js';

const IDLE_MS = 1_000;
const BUDGET = 1_000_000;
const FORCE = '/api/v2/forceschedulers/force';

/** Runtimes with http.createServer's shouldUpgradeCallback serve any Upgrade request as plain HTTP themselves. */
const NATIVE_UPGRADE_CHOICE = typeof (http.createServer({ shouldUpgradeCallback: () => false } as http.ServerOptions) as unknown as { shouldUpgradeCallback?: unknown }).shouldUpgradeCallback === 'function';

let ids = 0;
const newId = (what: string) => `${what}-${process.pid}-${++ids}`;

interface Seen {
  id: string;
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  bodyBytes: number;
}

/** A backend that answers every request with its X-Request-Id in the body, and records what began, ended and broke off. */
interface Backend {
  name: string;
  url: string;
  started: string[];
  completed: Seen[];
  aborted: string[];
  close(): Promise<void>;
}

async function startBackend(name: string): Promise<Backend> {
  const b = { name, started: [] as string[], completed: [] as Seen[], aborted: [] as string[] };
  const server = http.createServer((req, res) => {
    const id = String(req.headers['x-request-id'] ?? '');
    b.started.push(id);
    let bodyBytes = 0;
    req.on('data', (c: Buffer) => (bodyBytes += c.length));
    req.on('error', () => undefined);
    req.on('close', () => {
      if (!req.complete) b.aborted.push(id);
    });
    req.on('end', () => {
      b.completed.push({ id, method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, bodyBytes });
      const body = JSON.stringify({ id, servedBy: name, url: req.url, bodyBytes });
      res.writeHead(200, { 'content-type': 'application/json', 'x-served-by': name });
      // A little later, so the answer is in progress while whatever follows the request arrives.
      setTimeout(() => res.end(body), 20);
    });
  });
  const port = await listen(server);
  return { ...b, url: `http://127.0.0.1:${port}`, close: () => closeServer(server) };
}

interface Proxy {
  port: number;
  url: string;
  metrics: ProxyMetrics;
  logs(): Array<Record<string, unknown>>;
  close(): Promise<void>;
}

async function startProxy(yaml: string, options: ProxyServerOptions): Promise<Proxy> {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  });
  const logger = createLogger({ stream, level: 'debug' });
  const table = parseConfig(Buffer.from(yaml), 'routes.yaml');
  const metrics = new ProxyMetrics({ defaultMetrics: false });
  metrics.tableLoaded(table);
  const upstream = new Upstream();
  const server = createProxyServer(
    { currentTable: () => table, upstream, builders: new BuilderDirectory(upstream), breakers: new CircuitBreakers(), health: { isDown: () => false }, shadower: new Shadower(upstream, metrics, logger), metrics, traffic: new TrafficStats(), logger },
    options,
  );
  const port = await listen(server);
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    metrics,
    logs: () => {
      logger.flushAccess();
      return lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    },
    close: async () => {
      await closeServer(server);
      await upstream.close();
    },
  };
}

interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** The connection closed (by the proxy) after the answer. */
  closed: boolean;
  /** Every byte received, for checks that nothing else followed. */
  raw: string;
}

/** The first HTTP/1.1 answer in `raw`, or undefined while it is incomplete. */
function parseAnswer(raw: string): Omit<RawAnswer, 'closed' | 'raw'> & { end: number } | undefined {
  const headEnd = raw.indexOf('\r\n\r\n');
  if (headEnd === -1) return undefined;
  const [statusLine, ...lines] = raw.slice(0, headEnd).split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(statusLine ?? '')?.[1] ?? 0);
  const length = Number(headers['content-length'] ?? 0);
  if (headers['transfer-encoding'] === 'chunked') {
    let at = headEnd + 4;
    let body = '';
    for (;;) {
      const lineEnd = raw.indexOf('\r\n', at);
      if (lineEnd === -1) return undefined;
      const size = parseInt(raw.slice(at, lineEnd), 16);
      if (raw.length < lineEnd + 2 + size + 2) return undefined;
      if (size === 0) return { status, headers, body, end: lineEnd + 4 };
      body += raw.slice(lineEnd + 2, lineEnd + 2 + size);
      at = lineEnd + 2 + size + 2;
    }
  }
  if (raw.length < headEnd + 4 + length) return undefined;
  return { status, headers, body: raw.slice(headEnd + 4, headEnd + 4 + length), end: headEnd + 4 + length };
}

/** A raw client: writes `payload` (one write), then reads until the proxy closes or `waitMs` pass. */
class RawClient {
  readonly socket: net.Socket;
  private received = '';
  private closed = false;
  private readonly opened: Promise<unknown>;
  private readonly gone: Promise<void>;

  constructor(port: number) {
    this.socket = net.connect(port, '127.0.0.1');
    this.socket.on('data', (c: Buffer) => (this.received += c.toString('latin1')));
    this.socket.on('error', () => undefined);
    this.opened = new Promise((r) => this.socket.once('connect', r));
    this.gone = new Promise((r) => this.socket.once('close', () => r()));
    void this.gone.then(() => (this.closed = true));
  }

  async write(payload: string | Buffer): Promise<this> {
    await this.opened;
    this.socket.write(payload);
    return this;
  }

  /** Waits for the first answer and, if `untilClose`, for the connection to close. */
  async answer(options: { untilClose?: boolean; waitMs?: number } = {}): Promise<RawAnswer> {
    const deadline = Date.now() + (options.waitMs ?? 5_000);
    while (Date.now() < deadline) {
      const parsed = parseAnswer(this.received);
      if (parsed !== undefined && (!options.untilClose || this.closed)) break;
      if (this.closed) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    const parsed = parseAnswer(this.received);
    return { status: parsed?.status ?? 0, headers: parsed?.headers ?? {}, body: parsed?.body ?? '', closed: this.closed, raw: this.received };
  }

  /** Resolves true once the proxy closed the connection, false after `ms`. */
  async closedWithin(ms: number): Promise<boolean> {
    return Promise.race([this.gone.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms))]);
  }

  get bytes(): string {
    return this.received;
  }

  destroy(): void {
    this.socket.destroy();
  }
}

function forceBody(builder: string, size = 0): string {
  const base = JSON.stringify({ jsonrpc: '2.0', method: 'force', id: 1, params: { builderNames: [builder], reason: 'x'.repeat(Math.max(0, size - 90)) } });
  return base;
}

function forceHead(id: string, length: number | 'chunked', extra = ''): string {
  const framing = length === 'chunked' ? 'Transfer-Encoding: chunked' : `Content-Length: ${length}`;
  return `POST ${FORCE} HTTP/1.1\r\nHost: proxy.test\r\nX-Request-Id: ${id}\r\nContent-Type: application/json\r\n${framing}\r\n${extra}\r\n`;
}

describe('reliability: hostile clients', function () {
  this.timeout(FULL ? 300_000 : 120_000);
  let legacy: Backend;
  let next: Backend;
  let proxy: Proxy;
  let agent: http.Agent;

  before(async () => {
    legacy = await startBackend('buildbot');
    next = await startBackend('taskservice');
    proxy = await startProxy(
      `backends:\n  buildbot: { url: ${legacy.url}, legacy: true }\n  taskservice: { url: ${next.url} }\nroutes:\n  - jobType: linux64-*\n    backend: taskservice\nsettings:\n  bodyPeekLimitBytes: 200000\n`,
      { clientHeadersTimeoutMs: 2_000, clientBodyIdleTimeoutMs: IDLE_MS, maxHeldBodyBytes: BUDGET },
    );
    agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  });
  after(async () => {
    agent.destroy();
    await proxy.close();
    await legacy.close();
    await next.close();
  });

  const received = (id: string) => [...legacy.completed, ...next.completed].filter((s) => s.id === id);
  const startedAnywhere = (id: string) => [...legacy.started, ...next.started].filter((s) => s === id).length;
  const held = async () => (await proxy.metrics.heldBodyBytes.get()).values[0]?.value ?? -1;
  const counter = async (name: 'clientBodyTimeouts' | 'busyRejections', labels: Record<string, string> = {}) =>
    (await proxy.metrics[name].get()).values.find((v) => Object.entries(labels).every(([k, l]) => (v.labels as Record<string, unknown>)[k] === l))?.value ?? 0;

  /** Normal traffic, several requests at once on kept-alive connections: each gets its own answer, from the right backend. */
  async function stillServing(): Promise<void> {
    const answers = await Promise.all(
      Array.from({ length: 8 }, async (_, i) => {
        const id = newId('control');
        const force = i % 2 === 0;
        const res = force
          ? await send(agent, `${proxy.url}${FORCE}`, { method: 'POST', headers: { 'x-request-id': id, 'content-type': 'application/json' }, body: forceBody('linux64-opt', 500) })
          : await send(agent, `${proxy.url}/api/v2/builders/linux64-opt/builds?i=${i}`, { headers: { 'x-request-id': id } });
        return { id, res };
      }),
    );
    for (const { id, res } of answers) {
      expect(res.status, `${id}: ${res.body}`).to.equal(200);
      expect(JSON.parse(res.body).id, 'a client got an answer meant for another').to.equal(id);
      expect(res.headers['x-strangler-backend']).to.equal('taskservice');
      expect(received(id)).to.have.length(1);
    }
    await waitFor(async () => ((await held()) === 0 ? true : undefined), 5_000, 'no request body held any more');
  }

  it('answers 408 CLIENT_BODY_TIMEOUT to force bodies that stall while being read, closes them, and sends nothing on', async () => {
    const before = await counter('clientBodyTimeouts', { phase: 'reading' });
    const stalled = await Promise.all(
      [
        ...Array.from({ length: 6 }, () => ({ id: newId('stall-none'), head: (id: string) => forceHead(id, 5000) })),
        ...Array.from({ length: 6 }, () => ({ id: newId('stall-half'), head: (id: string) => forceHead(id, 5000) + '{"jsonrpc":"2.0","method":"force","par' })),
        ...Array.from({ length: 6 }, () => ({ id: newId('stall-chunked'), head: (id: string) => forceHead(id, 'chunked') + '11\r\n{"jsonrpc":"2.0",\r\n' })),
      ].map(async ({ id, head }) => ({ id, client: await new RawClient(proxy.port).write(head(id)) })),
    );
    // Normal traffic meanwhile is not held up.
    await stillServing();
    for (const { id, client } of stalled) {
      const answer = await client.answer({ untilClose: true, waitMs: IDLE_MS * 6 });
      expect(answer.status, `${id}: ${answer.raw}`).to.equal(408);
      expect(JSON.parse(answer.body)).to.include({ code: 'CLIENT_BODY_TIMEOUT', backend: null, jobType: null });
      expect(answer.headers.connection).to.equal('close');
      expect(answer.headers['x-request-id']).to.equal(id);
      expect(answer.closed, `${id}: connection left open`).to.equal(true);
      expect(startedAnywhere(id), `${id} reached a backend`).to.equal(0);
    }
    expect(await counter('clientBodyTimeouts', { phase: 'reading' })).to.equal(before + stalled.length);
    const logged = proxy.logs().filter((l) => l.message === 'request' && l.error === 'client-body-timeout');
    expect(logged.map((l) => l.requestId)).to.include.members(stalled.map((s) => s.id));
    expect(logged.every((l) => l.status === 408)).to.equal(true);
    await stillServing();
  });

  it('answers 400 to a force body whose chunked framing breaks while it is read, and sends nothing on', async () => {
    for (const broken of ['zz\r\n{}\r\n0\r\n\r\n', '2\r\n{}XX0\r\n\r\n', '5\r\n{"a":\r\n-1\r\n']) {
      const id = newId('broken-chunks');
      const answer = await (await new RawClient(proxy.port).write(forceHead(id, 'chunked') + broken)).answer({ untilClose: true });
      expect(answer.status, `${JSON.stringify(broken)}: ${answer.raw}`).to.equal(400);
      expect(answer.closed).to.equal(true);
      expect(startedAnywhere(id)).to.equal(0);
    }
    await stillServing();
  });

  it('cuts a client whose body stalls while it streams to a backend, and aborts the backend request', async () => {
    const before = await counter('clientBodyTimeouts', { phase: 'forwarding' });
    const cases = await Promise.all(
      [
        // Larger than the peek limit: streamed as it comes.
        { id: newId('stream-big-force'), head: (id: string) => forceHead(id, 400_000) + '{"jsonrpc":"2.0","method":"force","params":{"builderNames":["linux64-opt"],"reason":"' + 'x'.repeat(250_000) },
        // A body whose job type is in the path: streamed from the start.
        { id: newId('stream-path'), head: (id: string) => `PUT /api/v2/builders/linux64-opt/notes HTTP/1.1\r\nHost: proxy.test\r\nX-Request-Id: ${id}\r\nContent-Length: 1000\r\n\r\nhalf a note` },
      ].map(async ({ id, head }) => ({ id, client: await new RawClient(proxy.port).write(head(id)) })),
    );
    for (const { id, client } of cases) {
      expect(await client.closedWithin(IDLE_MS * 6), `${id}: connection left open`).to.equal(true);
      await waitFor(() => (next.aborted.includes(id) || legacy.aborted.includes(id) ? true : undefined), 5_000, `${id}'s backend request aborted`);
      expect(received(id), `${id} completed on a backend`).to.have.length(0);
      expect(parseAnswer(client.bytes)?.status ?? 0, 'no answer, only the cut').to.equal(0);
    }
    expect(await counter('clientBodyTimeouts', { phase: 'forwarding' })).to.equal(before + cases.length);
    await stillServing();
  });

  it('answers 503 PROXY_BUSY with Retry-After past the held-body budget, then the stalled ones time out and the budget is whole again', async () => {
    const size = 100_000; // under the peek limit: held whole to find builder names
    const fit = BUDGET / size;
    const busyBefore = await counter('busyRejections');
    /** Stalled forces declaring `size` bytes, one at a time so which ones fit is certain; none ever sends its body. */
    const stall = async (n: number) => {
      const out: { id: string; client: RawClient }[] = [];
      for (let i = 0; i < n; i++) {
        const id = newId('budget');
        out.push({ id, client: await new RawClient(proxy.port).write(forceHead(id, size) + '{"jsonrpc"') });
        await waitFor(async () => ((await held()) >= Math.min(BUDGET, (i + 1) * size) ? true : undefined), 2_000, `${i + 1} bodies held`);
      }
      return out;
    };
    const stalled = await stall(fit);
    const excess = await Promise.all(
      Array.from({ length: fit }, async () => {
        const id = newId('budget-excess');
        return { id, client: await new RawClient(proxy.port).write(forceHead(id, size) + '{"jsonrpc"') };
      }),
    );
    for (const { id, client } of excess) {
      const answer = await client.answer();
      expect(answer.status, `${id}: ${answer.raw}`).to.equal(503);
      expect(answer.headers['retry-after']).to.match(/^\d+$/);
      expect(JSON.parse(answer.body)).to.include({ code: 'PROXY_BUSY', backend: null, jobType: null });
    }
    expect(await counter('busyRejections')).to.equal(busyBefore + fit);
    // Normal traffic has to wait for room too: a force that does not fit is refused, not queued.
    const refused = await send(agent, `${proxy.url}${FORCE}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: forceBody('linux64-opt', 500) });
    expect(refused.status).to.equal(503);
    for (const { id, client } of stalled) {
      const answer = await client.answer({ untilClose: true, waitMs: IDLE_MS * 6 });
      expect(answer.status, `${id}: ${answer.raw}`).to.equal(408);
    }
    expect([...stalled, ...excess].every(({ id }) => startedAnywhere(id) === 0), 'nothing reached a backend').to.equal(true);
    await waitFor(async () => ((await held()) === 0 ? true : undefined), 5_000, 'the budget whole again');
    for (const { client } of excess) client.destroy();

    // A chunked body reserves as its bytes arrive: refused once they no longer fit, part-way through.
    const filler = await stall(fit - 1);
    const id = newId('budget-chunked');
    const chunk = (n: number) => `${n.toString(16)}\r\n${'y'.repeat(n)}\r\n`;
    const chunked = await new RawClient(proxy.port).write(forceHead(id, 'chunked') + chunk(size / 2));
    await waitFor(async () => ((await held()) >= BUDGET - size / 2 ? true : undefined), 2_000, 'the chunked body held so far');
    expect(parseAnswer(chunked.bytes), 'still reading').to.equal(undefined);
    chunked.socket.write(chunk(size / 2 + 1));
    const answer = await chunked.answer();
    expect(answer.status, answer.raw.slice(0, 300)).to.equal(503);
    expect(JSON.parse(answer.body)).to.include({ code: 'PROXY_BUSY' });
    expect(startedAnywhere(id)).to.equal(0);
    chunked.destroy();
    for (const { client } of filler) await client.answer({ untilClose: true, waitMs: IDLE_MS * 6 });
    await stillServing(); // the budget back to 0 in there
  });

  it('forwards a force larger than the whole budget unread, as one over the peek limit, rather than refusing it for ever', async () => {
    const small = await startProxy(`backends:\n  buildbot: { url: ${legacy.url}, legacy: true }\n  taskservice: { url: ${next.url} }\nroutes:\n  - jobType: linux64-*\n    backend: taskservice\n`, { maxHeldBodyBytes: 1_000 });
    try {
      const id = newId('over-budget');
      const body = forceBody('linux64-opt', 3_000);
      const res = await send(agent, `${small.url}${FORCE}`, { method: 'POST', headers: { 'x-request-id': id, 'content-type': 'application/json' }, body });
      expect(res.status, res.body).to.equal(200);
      expect(JSON.parse(res.body)).to.include({ id, servedBy: 'buildbot', bodyBytes: Buffer.byteLength(body) });
      const fits = newId('under-budget');
      const routed = await send(agent, `${small.url}${FORCE}`, { method: 'POST', headers: { 'x-request-id': fits, 'content-type': 'application/json' }, body: forceBody('linux64-opt', 500) });
      expect(JSON.parse(routed.body)).to.include({ id: fits, servedBy: 'taskservice' });
    } finally {
      await small.close();
    }
  });

  it('gives a request that reached a backend its answer when garbage follows it on the connection, then closes', async () => {
    for (const [what, request] of [
      ['force', (id: string) => forceHead(id, Buffer.byteLength(forceBody('linux64-opt'))) + forceBody('linux64-opt')],
      ['get', (id: string) => `GET /api/v2/builders/linux64-opt/builds HTTP/1.1\r\nHost: proxy.test\r\nX-Request-Id: ${id}\r\n\r\n`],
    ] as const) {
      for (const garbage of ['\x01\x02\x03 garbage\r\n\r\n', 'NOT HTTP AT ALL\r\n\r\n', 'GET / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n', '\r\n\r\n\0\0\0']) {
        const id = newId(`garbage-${what}`);
        const client = await new RawClient(proxy.port).write(request(id) + garbage);
        const answer = await client.answer({ untilClose: true });
        expect(answer.status, `${JSON.stringify(garbage)}: ${answer.raw}`).to.equal(200);
        expect(JSON.parse(answer.body).id).to.equal(id);
        expect(answer.closed, 'the connection closes after the answer').to.equal(true);
        expect(answer.raw.length, 'nothing after the answer').to.equal(parseAnswer(answer.raw)!.end);
        expect(received(id)).to.have.length(1);
      }
    }
    await stillServing();
  });

  it('refuses a request with two Host headers (400, nothing sent upstream), WebSocket handshakes included', async () => {
    for (const head of [
      (id: string) => `GET /api/v2/builders/linux64-opt HTTP/1.1\r\nHost: proxy.test\r\nHost: evil.test\r\nX-Request-Id: ${id}\r\n\r\n`,
      (id: string) => `GET /api/v2/builders/linux64-opt HTTP/1.1\r\nhost: proxy.test\r\nX-Request-Id: ${id}\r\nHOST: proxy.test\r\n\r\n`,
      (id: string) => forceHead(id, 2, 'Host: evil.test\r\n') + '{}',
    ]) {
      const id = newId('two-hosts');
      const answer = await (await new RawClient(proxy.port).write(head(id))).answer({ untilClose: true });
      expect(answer.status, answer.raw).to.equal(400);
      expect(JSON.parse(answer.body)).to.include({ code: 'BAD_REQUEST' });
      expect(answer.closed).to.equal(true);
      expect(startedAnywhere(id)).to.equal(0);
    }
    const ws = await (await new RawClient(proxy.port).write('GET /ws HTTP/1.1\r\nHost: proxy.test\r\nHost: evil.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n')).answer({ untilClose: true });
    expect(ws.status).to.equal(400);
    await stillServing();
  });

  it('serves an h2c upgrade offer as the plain HTTP request it also is, without passing the offer on', async () => {
    const h2c = 'Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n';
    const get = newId('h2c-get');
    const answer = await (await new RawClient(proxy.port).write(`GET /api/v2/builders/linux64-opt/builds HTTP/1.1\r\nHost: proxy.test\r\nX-Request-Id: ${get}\r\n${h2c}\r\n`)).answer();
    expect(answer.status, answer.raw).to.equal(200);
    expect(JSON.parse(answer.body).id).to.equal(get);
    const seen = received(get)[0]!;
    expect(seen.headers).not.to.have.any.keys('upgrade', 'http2-settings');
    expect(String(seen.headers.connection ?? '')).not.to.match(/upgrade/i);
    expect(seen.headers.host).to.equal('proxy.test');
    // Where the proxy serves the offer itself, the connection ends with the answer.
    if (!NATIVE_UPGRADE_CHOICE) expect(answer.headers.connection).to.equal('close');

    // With a body of declared length: the body arrives whole, in the same write or after.
    const body = forceBody('linux64-opt', 3000);
    for (const split of [body.length, 100]) {
      const id = newId('h2c-force');
      const client = await new RawClient(proxy.port).write(forceHead(id, Buffer.byteLength(body), h2c) + body.slice(0, split));
      await new Promise((r) => setTimeout(r, 50));
      if (split < body.length) client.socket.write(body.slice(split));
      const forced = await client.answer();
      expect(forced.status, forced.raw).to.equal(200);
      expect(JSON.parse(forced.body)).to.include({ id, bodyBytes: Buffer.byteLength(body), servedBy: 'taskservice' });
      client.destroy();
    }

    // A chunked body: served where node chooses upgrades itself, refused with a clear 400 where the proxy must.
    const chunked = newId('h2c-chunked');
    const reply = await (await new RawClient(proxy.port).write(forceHead(chunked, 'chunked', h2c) + `${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`)).answer();
    if (NATIVE_UPGRADE_CHOICE) {
      expect(reply.status, reply.raw).to.equal(200);
      expect(JSON.parse(reply.body).id).to.equal(chunked);
    } else {
      expect(reply.status, reply.raw).to.equal(400);
      expect(JSON.parse(reply.body)).to.include({ code: 'BAD_REQUEST' });
      expect(JSON.parse(reply.body).error).to.match(/chunked/);
      expect(startedAnywhere(chunked)).to.equal(0);
    }
    // A stalled body behind an upgrade offer times out like any other.
    const stalledId = newId('h2c-stalled');
    const stalled = await (await new RawClient(proxy.port).write(forceHead(stalledId, 5000, h2c) + '{"jsonrpc"')).answer({ untilClose: true, waitMs: IDLE_MS * 6 });
    expect(stalled.status, stalled.raw).to.equal(408);
    await stillServing();
  });

  it('sends Host on even when the Connection header names it', async () => {
    for (const connection of ['host', 'Host, X-Hop', 'keep-alive, host, content-length']) {
      const id = newId('connection-host');
      const answer = await (await new RawClient(proxy.port).write(`GET /api/v2/builders/linux64-opt/builds HTTP/1.1\r\nHost: client.test:8010\r\nConnection: ${connection}\r\nX-Hop: 1\r\nX-Request-Id: ${id}\r\n\r\n`)).answer();
      expect(answer.status, answer.raw).to.equal(200);
      expect(JSON.parse(answer.body).id).to.equal(id);
      const seen = received(id)[0]!;
      expect(seen.headers.host).to.equal('client.test:8010');
      if (/x-hop/i.test(connection)) expect(seen.headers).not.to.have.property('x-hop');
      else expect(seen.headers['x-hop']).to.equal('1');
    }
    const force = newId('connection-content-length');
    const body = forceBody('linux64-opt', 800);
    const answer = await (await new RawClient(proxy.port).write(forceHead(force, Buffer.byteLength(body), 'Connection: content-length, host\r\n') + body)).answer();
    expect(answer.status, answer.raw).to.equal(200);
    expect(received(force)[0]!.headers['content-length']).to.equal(String(Buffer.byteLength(body)));
    await stillServing();
  });

  it('holds nothing once any mix of hostile clients is gone (property)', async () => {
    const behaviour = fc.constantFrom('stall', 'stall-chunked', 'half-then-hang-up', 'complete', 'garbage-after', 'two-hosts', 'h2c', 'busy-size');
    await fc.assert(
      fc.asyncProperty(fc.array(behaviour, { minLength: 1, maxLength: 12 }), async (mix) => {
        const clients = await Promise.all(
          mix.map(async (kind) => {
            const id = newId(`mix-${kind}`);
            const body = forceBody('linux64-opt', 300);
            const payload = {
              stall: forceHead(id, 150_000) + '{"a"',
              'stall-chunked': forceHead(id, 'chunked') + '5\r\n{"a":\r\n',
              'half-then-hang-up': forceHead(id, 5000) + '{"jsonrpc":"2.0"',
              complete: forceHead(id, Buffer.byteLength(body)) + body,
              'garbage-after': forceHead(id, Buffer.byteLength(body)) + body + '\x01garbage\r\n\r\n',
              'two-hosts': forceHead(id, Buffer.byteLength(body), 'Host: b\r\n') + body,
              h2c: `GET /api/v2/builders/linux64-opt HTTP/1.1\r\nHost: proxy.test\r\nX-Request-Id: ${id}\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n`,
              'busy-size': forceHead(id, 190_000) + '{',
            }[kind];
            const client = await new RawClient(proxy.port).write(payload);
            return { id, kind, client };
          }),
        );
        await new Promise((r) => setTimeout(r, 30));
        for (const c of clients) if (c.kind === 'half-then-hang-up') c.client.destroy();
        const closing = new Set(['stall', 'stall-chunked', 'garbage-after', 'two-hosts']);
        const answers = await Promise.all(clients.map(async (c) => ({ ...c, answer: await c.client.answer({ untilClose: closing.has(c.kind), waitMs: IDLE_MS * 6 }) })));
        for (const c of clients) c.client.destroy();
        for (const { id, kind, answer } of answers) {
          if (answer.status === 200 && JSON.parse(answer.body).id !== id) return false; // someone else's answer
          if (kind === 'complete' || kind === 'garbage-after' || kind === 'h2c') {
            if (answer.status !== 200) return false;
          }
          if (kind === 'two-hosts' && (answer.status !== 400 || startedAnywhere(id) !== 0)) return false;
          if ((kind === 'stall' || kind === 'stall-chunked' || kind === 'busy-size') && ![408, 503].includes(answer.status)) return false;
        }
        await waitFor(async () => ((await held()) === 0 ? true : undefined), 5_000, 'no request body held any more');
        return true;
      }),
      { numRuns: FULL ? 25 : 6 },
    );
    await stillServing();
    const errors = proxy.logs().filter((l) => l.level === 'error');
    expect(errors.map((l) => l.message)).to.deep.equal([]);
  });
});
