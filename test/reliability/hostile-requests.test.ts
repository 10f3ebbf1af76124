/**
 * Hostile requests: property-based paths, headers, query strings and JSON-RPC
 * bodies, oversized headers and bodies, slowloris, clients that vanish
 * mid-request and mid-response. The proxy never crashes, never answers 500
 * for its own fault, never leaks sockets or file descriptors, and nothing a
 * request carries can pollute prototypes.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import http from 'node:http';
import net from 'node:net';
import { startUpstream, type TestUpstream } from '../support/upstream.js';
import { routesYaml, startTestProxy, waitFor, type TestProxy } from '../support/proxy.js';
import { FULL, openFds, send } from './kit.js';

const RUNS = FULL ? 600 : 150;

/** Raw bytes in, whatever comes back until the server closes or 3 s pass. */
async function raw(port: number, payload: Buffer | string, options: { endAfterWrite?: boolean; hangUpAfterMs?: number } = {}): Promise<string> {
  const socket = net.connect(port, '127.0.0.1');
  let answer = '';
  socket.on('data', (c: Buffer) => (answer += c.toString('latin1')));
  socket.on('error', () => undefined);
  await new Promise((r) => socket.once('connect', r));
  socket.write(payload);
  if (options.endAfterWrite) socket.end();
  await new Promise((r) => {
    socket.once('close', r);
    setTimeout(r, options.hangUpAfterMs ?? 3000);
  });
  socket.destroy();
  return answer;
}

const statusOf = (answer: string) => Number(/^HTTP\/1\.[01] (\d{3})/.exec(answer)?.[1] ?? 0);

describe('reliability: hostile requests', function () {
  this.timeout(FULL ? 300_000 : 120_000);
  let legacy: TestUpstream;
  let next: TestUpstream;
  let t: TestProxy;
  let port: number;
  let agent: http.Agent;

  before(async () => {
    legacy = await startUpstream('buildbot');
    next = await startUpstream('taskservice');
    t = await startTestProxy(
      routesYaml(
        { buildbot: { url: legacy.url, legacy: true }, taskservice: { url: next.url } },
        'routes:\n  - jobType: linux64-*\n    backend: taskservice\n  - jobType: android-*\n    split: { taskservice: 50, buildbot: 50 }\n    stickyBy: [header:X-Push-Id, query:rev, param:revision]\n',
      ),
      { quiet: true, clientHeadersTimeoutMs: 1500 },
    );
    port = Number(new URL(t.url).port);
    agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  });
  after(async () => {
    agent.destroy();
    await t.close();
    await legacy.close();
    await next.close();
  });

  /** The proxy is up and routing: a control request after every attack. */
  async function stillServing(): Promise<void> {
    const res = await send(agent, `${t.url}/api/v2/builders/linux64-opt`);
    expect(res.status).to.equal(200);
    expect(res.headers['x-strangler-backend']).to.equal('taskservice');
  }

  it('answers arbitrary request targets and headers without a 500 of its own', async () => {
    const target = fc.oneof(
      fc.webPath().map((p) => p || '/'),
      fc.string({ unit: 'binary', maxLength: 300 }).map((s) => '/api/v2/builders/' + encodeURIComponent(s)),
      fc.string({ unit: 'binary-ascii', maxLength: 200 }).map((s) => '/api/v2/builders/' + s.replace(/[\s]/g, '')),
      fc.array(fc.constantFrom('%', '%%', '%zz', '%00', '..', '//', '?', '#', ';', 'builders', '12', 'linux64-opt', '\u00e9'), { maxLength: 12 }).map((p) => '/api/v2/' + p.join('/')),
    );
    const headerName = fc.stringMatching(/^[A-Za-z][A-Za-z0-9-]{0,30}$/);
    const headerValue = fc.string({ unit: 'grapheme-ascii', maxLength: 200 }).map((s) => s.replace(/[\r\n\u0000-\u001f\u007f]/g, ''));
    const query = fc.dictionary(fc.string({ maxLength: 10 }), fc.string({ maxLength: 30 }), { maxKeys: 5 }).map((d) => new URLSearchParams(d).toString());
    let served = 0;
    await fc.assert(
      fc.asyncProperty(target, fc.dictionary(headerName, headerValue, { maxKeys: 8 }), query, fc.constantFrom('GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH'), async (path, headers, q, method) => {
        const lines = [`${method} ${path.replace(/[\s]/g, '')}${q ? `?${q}` : ''} HTTP/1.1`, 'Host: proxy.test', 'Connection: close', ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)];
        const answer = await raw(port, lines.join('\r\n') + '\r\n\r\n');
        const status = statusOf(answer);
        if (status !== 0) served++;
        // 400/431 from the HTTP layer, 404 and friends from the backend, 502-504 never for these (backends are up).
        return status !== 500 && status !== 0 ? status < 500 : true;
      }),
      { numRuns: RUNS },
    );
    expect(served).to.be.greaterThan(RUNS / 2);
    await stillServing();
  });

  it('reads hostile JSON-RPC force bodies safely and never lets them pollute prototypes', async () => {
    const nested = (depth: number) => '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);
    const fixed = [
      '{"method":"force","params":' + nested(100_000) + '}',
      '{"method":"force","params":{"builderNames":' + JSON.stringify(Array.from({ length: 200_000 }, (_, i) => `b${i}`)) + '}}',
      '{"method":"force","params":{"__proto__":{"polluted":true},"builderNames":["linux64-opt"]}}',
      '{"method":"force","params":{"constructor":{"prototype":{"polluted":true}},"builderNames":["linux64-opt"]}}',
      '{"__proto__":{"polluted":true}}',
      '{"method":"force","params":{"builderNames":"linux64-opt"}}',
      '{"method":"force","params":{"builderNames":[null,1,{"a":1}]}}',
      '{"method":"force","params":{"builderid":"1e400"}}',
      '{"method":"force","params":{"builderid":-7}}',
    ];
    const invalidUtf8 = Buffer.concat([Buffer.from('{"method":"force","params":{"builderNames":["'), Buffer.from([0xc3, 0x28, 0xa0, 0xa1, 0xff]), Buffer.from('"]}}')]);
    for (const body of [...fixed.map((b) => Buffer.from(b)), invalidUtf8]) {
      const res = await send(agent, `${t.url}/api/v2/forceschedulers/force`, { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': String(body.length) }, body });
      expect(res.status, body.subarray(0, 80).toString()).to.equal(200);
    }
    await fc.assert(
      fc.asyncProperty(fc.anything({ withObjectString: true, withNullPrototype: true, maxDepth: 6 }), async (params) => {
        const body = JSON.stringify({ jsonrpc: '2.0', method: 'force', id: 1, params }) ?? 'null';
        const res = await send(agent, `${t.url}/api/v2/forceschedulers/force`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
        return res.status === 200;
      }),
      { numRuns: RUNS },
    );
    expect(({} as Record<string, unknown>).polluted).to.equal(undefined);
    expect(Object.prototype).not.to.have.property('polluted');
    await stillServing();
  });

  it('answers 431 to oversized headers and streams an oversized body through', async () => {
    expect(statusOf(await raw(port, `GET / HTTP/1.1\r\nHost: x\r\n${'X-Big: ' + 'a'.repeat(40 * 1024)}\r\n\r\n`))).to.equal(431);
    expect(statusOf(await raw(port, `GET / HTTP/1.1\r\nHost: x\r\n${Array.from({ length: 5000 }, (_, i) => `X-H${i}: v`).join('\r\n')}\r\n\r\n`))).to.equal(431);
    const big = Buffer.alloc(40 * 1024 * 1024, 0x61);
    const res = await new Promise<number>((resolve) => {
      const req = http.request(`${t.url}/api/v2/forceschedulers/force`, { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': big.length } }, (r) => {
        r.resume();
        r.on('end', () => resolve(r.statusCode ?? 0));
      });
      req.on('error', () => resolve(0));
      req.end(big);
    });
    expect(res).to.equal(200);
    expect(legacy.received.at(-1)!.body.length).to.equal(big.length);
    await stillServing();
  });

  it('closes slowloris connections after the header timeout while serving everyone else', async () => {
    const slow = await Promise.all(
      Array.from({ length: 50 }, async () => {
        const socket = net.connect(port, '127.0.0.1');
        socket.on('error', () => undefined);
        socket.resume(); // read the 408 and the end of the stream, so the close is seen
        await new Promise((r) => socket.once('connect', r));
        socket.write('GET /api/v2/builders/linux64-opt HTTP/1.1\r\nHost: x\r\n');
        return socket;
      }),
    );
    const drip = setInterval(() => slow.forEach((s) => s.writable && s.write('X-Drip: 1\r\n')), 200);
    await stillServing(); // others are served meanwhile
    const closed = await Promise.all(slow.map((s) => new Promise<boolean>((r) => (s.destroyed ? r(true) : s.once('close', () => r(true))))));
    clearInterval(drip);
    expect(closed.every(Boolean)).to.equal(true);
    await stillServing();
  });

  it('survives clients vanishing mid-request and mid-response, leaking no sockets or file descriptors', async () => {
    next.handle((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      let sent = 0;
      const pump = () => {
        while (sent < 20 * 1024 * 1024 && !res.destroyed) {
          sent += 64 * 1024;
          if (!res.write(Buffer.alloc(64 * 1024, 0x62))) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
    });
    await stillServing();
    await new Promise((r) => setTimeout(r, 500));
    const baseline = openFds();
    for (let i = 0; i < (FULL ? 200 : 60); i++) {
      if (i % 2 === 0) {
        // Half a force body, then gone.
        await raw(port, 'POST /api/v2/forceschedulers/force HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{"method":"force","par', { hangUpAfterMs: 30 });
      } else {
        // Read a little of a 20 MiB download, then gone.
        await new Promise<void>((resolve) => {
          const req = http.get(`${t.url}/api/v2/builders/linux64-opt/builds/1/steps/1/logs/stdio/raw`, (res) => {
            res.once('data', () => {
              req.destroy();
              resolve();
            });
          });
          req.on('error', () => resolve());
        });
      }
    }
    // The proxy must have let go of every client socket and every upstream exchange.
    await waitFor(() => (openFds() <= baseline + 4 ? true : undefined), 10_000, `file descriptors back near ${baseline} (now ${openFds()})`);
    next.handle((_req, res) => res.end('{}'));
    await stillServing();
    const errors = t.logs().filter((l) => l.level === 'error');
    expect(errors.map((l) => l.message)).to.deep.equal([]);
  });
});
