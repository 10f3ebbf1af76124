/**
 * The proxy end to end, over real sockets: real proxy listeners in front of
 * upstream servers on port 0 that record exactly what reaches them.
 */
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import request from 'supertest';
import { WebSocket, WebSocketServer } from 'ws';
import { echo, freePort, startUpstream, type TestUpstream } from '../support/upstream.js';
import { routesYaml, startTestProxy, waitFor, type TestProxy } from '../support/proxy.js';

const ROUTES = `routes:
  - jobType: linux64-*
    backend: taskservice
  - jobType: win32-debug
    backend: buildbot
`;

describe('e2e: proxy', function () {
  let legacy: TestUpstream;
  let next: TestUpstream;
  let t: TestProxy;

  const restartProxy = async () => {
    await t.close();
    t = await startTestProxy(routesYaml({ buildbot: { url: legacy.url, legacy: true }, taskservice: { url: next.url } }, ROUTES));
  };
  beforeEach(async () => {
    legacy = await startUpstream('buildbot');
    next = await startUpstream('taskservice');
    t = await startTestProxy(routesYaml({ buildbot: { url: legacy.url, legacy: true }, taskservice: { url: next.url } }, ROUTES));
  });
  afterEach(async () => {
    await t.close();
    await legacy.close();
    await next.close();
  });

  describe('routing', () => {
    it('sends each job type to the backend its route names, and says so in headers', async () => {
      const moved = await request(t.url).get('/api/v2/builders/linux64-opt/builds?limit=1').expect(200);
      expect(moved.headers['x-strangler-backend']).to.equal('taskservice');
      expect(moved.headers['x-strangler-job-type']).to.equal('linux64-opt');
      expect(moved.body.servedBy).to.equal('taskservice');
      expect(next.received[0]!.url).to.equal('/api/v2/builders/linux64-opt/builds?limit=1');

      const stays = await request(t.url).get('/api/v2/builders/win32-debug').expect(200);
      expect(stays.headers['x-strangler-backend']).to.equal('buildbot');
      expect(stays.body.servedBy).to.equal('buildbot');
    });

    it('sends requests that name no job type to default, without a job-type header', async () => {
      const res = await request(t.url).get('/api/v2/builds?limit=5').expect(200);
      expect(res.headers['x-strangler-backend']).to.equal('buildbot');
      expect(res.headers).not.to.have.property('x-strangler-job-type');
    });

    it('lets the X-Job-Type header decide', async () => {
      const res = await request(t.url).get('/api/v2/builds/17').set('X-Job-Type', 'linux64-asan').expect(200);
      expect(res.headers['x-strangler-backend']).to.equal('taskservice');
      expect(res.headers['x-strangler-job-type']).to.equal('linux64-asan');
    });

    it('resolves a builder id in the path through the legacy master', async () => {
      legacy.handle((_req, res, received) => {
        if (received.url.startsWith('/api/v2/builders?')) {
          res.writeHead(200, { 'content-type': 'application/json' });
          return void res.end(JSON.stringify({ builders: [{ builderid: 7, name: 'linux64-opt' }, { builderid: 8, name: 'win32-debug' }], meta: { total: 2 } }));
        }
        res.end('legacy');
      });
      const lookups = () => legacy.probes.filter((r) => r.url.startsWith('/api/v2/builders?')).length;
      await waitFor(() => lookups() === 1, 2000, "the first proxy's startup lookup");
      const lookupsBefore = lookups();
      await restartProxy(); // its startup lookup now finds the builders
      const res = await request(t.url).get('/api/v2/builders/7/builds').expect(200);
      expect(res.headers['x-strangler-backend']).to.equal('taskservice');
      expect(res.headers['x-strangler-job-type']).to.equal('linux64-opt');
      await request(t.url).get('/api/v2/builders/8/builds').expect('x-strangler-backend', 'buildbot');
      // Both ids came from the one lookup made at startup (cached).
      expect(lookups() - lookupsBefore).to.equal(1);
    });

    it('sends a builder id to default when the lookup fails, never answering an error for it', async () => {
      legacy.handle((_req, res, received) => {
        if (received.url.startsWith('/api/v2/builders?')) {
          res.writeHead(500);
          return void res.end('boom');
        }
        res.end('legacy answered');
      });
      await restartProxy();
      await new Promise((r) => setTimeout(r, 1100)); // past the refresh rate limit: id 7 makes the proxy ask again
      const res = await request(t.url).get('/api/v2/builders/7/builds').expect(200);
      expect(res.headers['x-strangler-backend']).to.equal('buildbot');
      expect(res.text).to.equal('legacy answered');
      expect(t.logs().some((l) => l.message === 'builder id lookup failed; requests by builder id go to the default backend')).to.equal(true);
    });
  });

  describe('force calls (JSON-RPC bodies)', () => {
    const force = (params: unknown, id = 1) => JSON.stringify({ jsonrpc: '2.0', method: 'force', id, params });

    it('routes by params.builderNames and forwards the exact bytes', async () => {
      const body = `{ "jsonrpc":"2.0",  "method":"force", "id":9,\n "params":{"builderNames":["linux64-opt"], "reason":"caf\u00e9"} }`;
      const res = await request(t.url).post('/api/v2/forceschedulers/force').set('content-type', 'application/json').send(body).expect(200);
      expect(res.headers['x-strangler-backend']).to.equal('taskservice');
      expect(next.received).to.have.length(1);
      expect(next.received[0]!.body.equals(Buffer.from(body))).to.equal(true);
      expect(legacy.received).to.have.length(0);
    });

    it('sends a force whose builders span backends to the legacy backend, whole, and logs why', async () => {
      const res = await request(t.url).post('/api/v2/forceschedulers/force').set('content-type', 'application/json').send(force({ builderNames: ['linux64-opt', 'win32-debug'] })).expect(200);
      expect(res.headers['x-strangler-backend']).to.equal('buildbot');
      expect(legacy.received).to.have.length(1);
      expect(next.received).to.have.length(0);
      const line = t.logs().find((l) => l.message === 'request' && l.path === '/api/v2/forceschedulers/force');
      expect(line).to.include({ reason: 'mixed-builders', backend: 'buildbot' });
    });

    it('resolves params.builderid through the legacy master', async () => {
      legacy.handle((_req, res, received) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(received.url.startsWith('/api/v2/builders?') ? JSON.stringify({ builders: [{ builderid: 3, name: 'linux64-debug' }] }) : '{}');
      });
      await restartProxy();
      await request(t.url).post('/api/v2/forceschedulers/force').set('content-type', 'application/json').send(force({ builderid: 3 })).expect('x-strangler-backend', 'taskservice');
      expect(next.received).to.have.length(1);
    });

    it('sends malformed and oversized bodies to default unparsed, byte for byte', async () => {
      const broken = '{"jsonrpc":"2.0","method":"force","params":{"builderNames":["linux64-opt"]';
      await request(t.url).post('/api/v2/forceschedulers/force').set('content-type', 'application/json').send(broken).expect('x-strangler-backend', 'buildbot');
      expect(legacy.received[0]!.body.toString()).to.equal(broken);

      // Above the 1 MiB peek limit: not parsed, streamed through untouched.
      const big = force({ builderNames: ['linux64-opt'], padding: 'x'.repeat(1024 * 1024 + 10) });
      await request(t.url).post('/api/v2/forceschedulers/force').set('content-type', 'application/json').send(big).expect('x-strangler-backend', 'buildbot');
      expect(legacy.received[1]!.body.equals(Buffer.from(big))).to.equal(true);
      const reasons = t.logs().filter((l) => l.message === 'request').map((l) => l.reason);
      expect(reasons).to.deep.equal(['unparsed-body', 'unparsed-body']);
    });

    it('streams a chunked force body larger than the limit without losing bytes', async () => {
      const big = Buffer.from(force({ builderNames: ['linux64-opt'], padding: 'y'.repeat(3 * 1024 * 1024) }));
      const status = await new Promise<number>((resolve, reject) => {
        const req = http.request(`${t.url}/api/v2/forceschedulers/force`, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        });
        req.on('error', reject);
        for (let i = 0; i < big.length; i += 64 * 1024) req.write(big.subarray(i, i + 64 * 1024)); // no content-length: chunked
        req.end();
      });
      expect(status).to.equal(200);
      expect(legacy.received[0]!.body.equals(big)).to.equal(true);
    });
  });

  describe('transparency', () => {
    it('passes every method, the query string, headers, cookies and status codes through unchanged', async () => {
      next.handle((_req, res) => {
        res.setHeader('set-cookie', ['a=1; Path=/', 'b=2; HttpOnly']);
        res.setHeader('x-custom', 'yes');
        res.writeHead(418, 'I am a teapot');
        res.end('short and stout');
      });
      for (const method of ['GET', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'POST'] as const) {
        const res = await request(t.url)[method.toLowerCase() as 'get']('/api/v2/builders/linux64-opt/x?a=1&b=%20two&a=3')
          .set('Cookie', 'session=abc; other=1')
          .set('X-Anything', 'kept')
          .set('Authorization', 'Bearer token')
          .expect(418);
        expect(res.headers['set-cookie']).to.deep.equal(['a=1; Path=/', 'b=2; HttpOnly']);
        expect(res.headers['x-custom']).to.equal('yes');
        const got = next.received.at(-1)!;
        expect(got.method).to.equal(method);
        expect(got.url).to.equal('/api/v2/builders/linux64-opt/x?a=1&b=%20two&a=3');
        expect(got.headers).to.include({ cookie: 'session=abc; other=1', 'x-anything': 'kept', authorization: 'Bearer token' });
      }
    });

    it('adds X-Forwarded-For/-Proto/-Host and X-Request-Id, keeps Host, drops hop-by-hop headers', async () => {
      const res = await request(t.url)
        .get('/api/v2/builders/linux64-opt')
        .set('Host', 'ci.example.test')
        .set('Connection', 'keep-alive, X-Secret-Hop')
        .set('X-Secret-Hop', 'do not forward')
        .set('Proxy-Authorization', 'Basic Zm9vOmJhcg==')
        .set('TE', 'trailers')
        .set('X-Forwarded-For', '10.1.2.3')
        .set('X-Request-Id', 'abc-123')
        .expect(200);
      const got = next.received[0]!.headers;
      expect(got.host).to.equal('ci.example.test');
      expect(got['x-forwarded-for']).to.equal('10.1.2.3, 127.0.0.1');
      expect(got['x-forwarded-proto']).to.equal('http');
      expect(got['x-forwarded-host']).to.equal('ci.example.test');
      expect(got['x-request-id']).to.equal('abc-123');
      expect(got).not.to.have.property('x-secret-hop');
      expect(got).not.to.have.property('proxy-authorization');
      expect(got).not.to.have.property('te');
      expect(res.headers['x-request-id']).to.equal('abc-123');
    });

    it('makes up a request id when the client sends none or a malformed one', async () => {
      const res = await request(t.url).get('/').set('X-Request-Id', 'bad id with spaces').expect(200);
      expect(res.headers['x-request-id']).to.match(/^[0-9a-f-]{36}$/);
      expect(legacy.received[0]!.headers['x-request-id']).to.equal(res.headers['x-request-id']);
    });

    it('forwards binary bodies both ways byte for byte', async () => {
      const upload = randomBytes(3 * 1024 * 1024 + 7);
      const download = randomBytes(2 * 1024 * 1024 + 3);
      next.handle((_req, res) => {
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        res.end(download);
      });
      const res = await request(t.url)
        .put('/api/v2/builders/linux64-opt/blob')
        .set('content-type', 'application/octet-stream')
        .send(upload)
        .buffer(true)
        .parse((response, done) => {
          const chunks: Buffer[] = [];
          response.on('data', (c: Buffer) => chunks.push(c));
          response.on('end', () => done(null, Buffer.concat(chunks)));
        })
        .expect(200);
      expect(next.received[0]!.body.equals(upload)).to.equal(true);
      expect((res.body as Buffer).equals(download)).to.equal(true);
    });

    it('streams a response: the client has the first bytes before the backend has finished', async () => {
      let finishUpstream: () => void = () => undefined;
      next.handle((_req, res) => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('first chunk\n');
        finishUpstream = () => res.end('last chunk\n');
      });
      const text = await new Promise<string>((resolve, reject) => {
        http.get(`${t.url}/api/v2/builders/linux64-opt/builds/1/steps/1/logs/stdio/raw`, (res) => {
          let seen = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            seen += chunk;
            if (seen === 'first chunk\n') finishUpstream(); // only now does the backend finish
          });
          res.on('end', () => resolve(seen));
        }).on('error', reject);
      });
      expect(text).to.equal('first chunk\nlast chunk\n');
    });

    it('holds the backend back while the client reads slowly, so a large log is never buffered in the proxy', async () => {
      const chunk = Buffer.alloc(64 * 1024, 'l');
      const total = 1024; // 64 MiB
      let written = 0;
      let stalled = false;
      next.handle((_req, res) => {
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(total * chunk.length) });
        const pump = () => {
          while (written < total) {
            written++;
            if (!res.write(chunk)) return void res.once('drain', pump);
          }
          res.end();
        };
        pump();
      });
      const received = await new Promise<number>((resolve, reject) => {
        http.get(`${t.url}/api/v2/builders/linux64-opt/builds/1/steps/1/logs/stdio/raw`, (res) => {
          let bytes = 0;
          res.pause(); // the client stops reading at once
          setTimeout(() => {
            // Socket buffers on both hops hold a few MiB; the proxy must not hold the rest.
            stalled = written * chunk.length < 24 * 1024 * 1024;
            res.on('data', (c: Buffer) => (bytes += c.length));
            res.on('end', () => resolve(bytes));
            res.resume();
          }, 1000);
        }).on('error', reject);
      });
      expect(stalled, `the backend wrote ${written} of ${total} chunks while the client was not reading`).to.equal(true);
      expect(received).to.equal(total * chunk.length); // and all of it arrives once the client reads
    });

    it('streams a request body: the backend has the first bytes before the client has finished', async () => {
      let sawFirstChunk: () => void = () => undefined;
      const firstChunkArrived = new Promise<void>((resolve) => (sawFirstChunk = resolve));
      legacy.server.removeAllListeners('request');
      legacy.server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
        let size = 0;
        req.on('data', (c: Buffer) => {
          size += c.length;
          sawFirstChunk();
        });
        req.on('end', () => res.end(String(size)));
      });
      const req = http.request(`${t.url}/upload`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' } });
      const answer = new Promise<string>((resolve, reject) => {
        req.on('response', (res) => {
          let text = '';
          res.on('data', (c: Buffer) => (text += c.toString()));
          res.on('end', () => resolve(text));
        });
        req.on('error', reject);
      });
      req.write(Buffer.alloc(1000, 1));
      await firstChunkArrived; // the client has not ended its body yet
      req.end(Buffer.alloc(500, 2));
      expect(await answer).to.equal('1500');
    });

    it('proxies WebSocket upgrades (the web UI on /ws) to the routed backend', async () => {
      const wss = new WebSocketServer({ noServer: true });
      legacy.server.on('upgrade', (req, socket, head) => {
        wss.handleUpgrade(req, socket, head, (ws) => ws.on('message', (data) => ws.send(`legacy echoes ${String(data)}`)));
      });
      const ws = new WebSocket(`${t.url.replace('http', 'ws')}/ws`);
      const reply = await new Promise<string>((resolve, reject) => {
        ws.on('open', () => ws.send('hello'));
        ws.on('message', (data) => resolve(String(data)));
        ws.on('error', reject);
      });
      expect(reply).to.equal('legacy echoes hello');
      ws.close();
      wss.close();
    });
  });

  describe('names from the legacy master are data, not headers', () => {
    it('sends a builder name that is not printable ASCII percent-encoded in X-Strangler-Job-Type, and completes the request', async () => {
      legacy.handle((_req, res, received) => {
        if (received.url.startsWith('/api/v2/builders?')) {
          res.writeHead(200, { 'content-type': 'application/json' });
          return void res.end(JSON.stringify({ builders: [{ builderid: 7, name: 'ci-\u0151' }, { builderid: 8, name: 'ci-\u0001-bell' }] }));
        }
        return echo('buildbot')(_req, res, received);
      });
      for (const [id, encoded] of [
        [7, 'ci-%C5%91'],
        [8, 'ci-%01-bell'],
      ] as const) {
        const res = await request(t.url).get(`/api/v2/builders/${id}/builds`).expect(200);
        expect(res.headers['x-strangler-job-type']).to.equal(encoded);
        expect(res.body.servedBy).to.equal('buildbot');
      }
    });
  });

  describe('a fault in the proxy itself', () => {
    it('answers 500 INTERNAL, logs it with the request id, counts it, and keeps serving', async () => {
      const decided = t.proxy.metrics.decided.bind(t.proxy.metrics);
      t.proxy.metrics.decided = () => {
        throw new Error('a bug in the proxy');
      };
      try {
        const res = await request(t.url).get('/api/v2/builders/linux64-opt/builds').set('x-request-id', 'fault-1').expect(500);
        expect(res.body).to.include({ code: 'INTERNAL' });
        expect(res.headers['x-request-id']).to.equal('fault-1');
      } finally {
        t.proxy.metrics.decided = decided;
      }
      await request(t.url).get('/api/v2/builders/linux64-opt/builds').expect(200);
      const line = t.logs().find((l) => l.message === 'unexpected error in request handling');
      expect(line).to.include({ requestId: 'fault-1' });
      expect(String(line!.error)).to.contain('a bug in the proxy');
      const metrics = await request(t.adminUrl).get('/metrics').expect(200);
      expect(metrics.text).to.match(/^strangler_internal_errors_total 1$/m);
    });
  });

  describe('errors a client can act on', () => {
    it('answers 502 with a JSON body when the backend refuses connections', async () => {
      await next.close();
      const res = await request(t.url).get('/api/v2/builders/linux64-opt').expect(502);
      expect(res.body).to.include({ backend: 'taskservice', jobType: 'linux64-opt', code: 'BACKEND_REFUSED' });
      expect(res.body.error).to.match(/connection refused/);
      const warn = t.logs().find((l) => l.message === 'backend failed');
      expect(warn).to.include({ backend: 'taskservice', kind: 'refused', mayHaveReachedBackend: false });
    });

    it('answers 504 when the backend does not answer within its response timeout', async () => {
      const slow = await startUpstream('slow', () => undefined /* never answers */);
      await t.close();
      t = await startTestProxy(routesYaml({ buildbot: { url: slow.url, legacy: true, extra: 'responseTimeoutMs: 300' } }));
      const started = Date.now();
      const res = await request(t.url).get('/api/v2/builders/x').expect(504);
      expect(Date.now() - started).to.be.lessThan(3000);
      expect(res.body).to.include({ backend: 'buildbot', jobType: 'x', code: 'BACKEND_TIMEOUT' });
      await slow.close();
    });

    it('cuts the client connection when the backend breaks off mid-response', async () => {
      next.handle((_req, res) => {
        res.writeHead(200, { 'content-length': '100000' });
        res.write('partial');
        setTimeout(() => res.socket?.destroy(), 20);
      });
      const outcome = await new Promise<string>((resolve) => {
        http.get(`${t.url}/api/v2/builders/linux64-opt`, (res) => {
          res.on('data', () => undefined);
          res.on('end', () => resolve('complete'));
          res.on('aborted', () => resolve('aborted'));
          res.on('error', () => resolve('aborted'));
        }).on('error', () => resolve('aborted'));
      });
      expect(outcome).to.equal('aborted');
      await request(t.url).get('/api/v2/builders/win32-debug').expect(200); // still serving
    });

    it('answers 400 to a request target that is not a path, and 431 to oversized headers', async () => {
      const raw = await rawExchange(t.url, 'GET http://[bad HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
      expect(raw).to.match(/^HTTP\/1\.1 400 /);
      const huge = await rawExchange(t.url, `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(64 * 1024)}\r\n\r\n`);
      expect(huge).to.match(/^HTTP\/1\.1 431 /);
      await request(t.url).get('/api/v2/builders/win32-debug').expect(200);
    });

    it('survives a client that hangs up mid-body, and keeps serving', async () => {
      const socket = net.connect(Number(new URL(t.url).port), '127.0.0.1');
      await new Promise((r) => socket.once('connect', r));
      socket.write('POST /api/v2/forceschedulers/force HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"jsonrpc":"2.0","meth');
      await new Promise((r) => setTimeout(r, 50));
      socket.destroy();
      await waitFor(() => t.logs().find((l) => l.message === 'request' && l.status === 499), 2000, 'the aborted request to be logged');
      expect(legacy.received.length + next.received.length).to.equal(0); // a half-sent force reaches no backend
      await request(t.url).get('/api/v2/builders/linux64-opt').expect(200);
    });
  });

  describe('logs and metrics', () => {
    it('writes one access-log line per request with the fields that explain it', async () => {
      await request(t.url).get('/api/v2/builders/linux64-opt?token=secret').set('X-Request-Id', 'req-42').expect(200);
      const line = t.logs().find((l) => l.message === 'request')!;
      expect(line).to.include({ requestId: 'req-42', method: 'GET', path: '/api/v2/builders/linux64-opt', status: 200, backend: 'taskservice', jobType: 'linux64-opt', rule: 'linux64-*', reason: 'route', level: 'info' });
      expect(line.durationMs).to.be.a('number');
      expect(JSON.stringify(t.logs())).not.to.contain('secret'); // query strings never reach the log
    });

    it('counts requests and durations per backend and job type on the admin port', async () => {
      await request(t.url).get('/api/v2/builders/linux64-opt').expect(200);
      await request(t.url).get('/api/v2/builders/win32-debug').expect(200);
      await request(t.url).get('/api/v2/builds').expect(200);
      const metrics = (await request(t.adminUrl).get('/metrics').expect(200)).text;
      expect(metrics).to.contain('strangler_requests_total{backend="taskservice",job_type="linux64-opt",method="GET",code="200"} 1');
      expect(metrics).to.contain('strangler_requests_total{backend="buildbot",job_type="win32-debug",method="GET",code="200"} 1');
      expect(metrics).to.contain('strangler_requests_total{backend="buildbot",job_type="none",method="GET",code="200"} 1');
      expect(metrics).to.match(/strangler_request_duration_seconds_bucket\{le="0.001",backend="taskservice",job_type="linux64-opt",method="GET"\}/);
      expect(metrics).to.contain('process_cpu_seconds_total');
      const health = await request(t.adminUrl).get('/healthz').expect(200);
      expect(health.body).to.deep.equal({ status: 'ok', replica: health.headers['x-strangler-replica'] });
      expect(health.body.replica).to.be.a('string').that.is.not.empty;
      await request(t.adminUrl).get('/readyz').expect(200, { status: 'ready' });
    });
  });

  describe('hot reload', () => {
    const swapped = () =>
      routesYaml(
        { buildbot: { url: legacy.url, legacy: true }, taskservice: { url: next.url } },
        'routes:\n  - jobType: linux64-*\n    backend: buildbot\n  - jobType: win32-*\n    backend: taskservice\n',
      );
    const backendOf = async (p: string) => (await request(t.url).get(p)).headers['x-strangler-backend'];

    it('applies a saved routes.yaml within 2 s, and counts the reload', async () => {
      t.writeConfig(swapped());
      const started = Date.now();
      await waitFor(async () => (await backendOf('/api/v2/builders/linux64-opt')) === 'buildbot', 2000, 'the new routes');
      expect(Date.now() - started).to.be.lessThan(2000);
      expect(await backendOf('/api/v2/builders/win32-debug')).to.equal('taskservice');
      const metrics = (await request(t.adminUrl).get('/metrics')).text;
      expect(metrics).to.contain('strangler_config_reloads_total{result="success"} 1');
    });

    it('rejects an invalid save with file, line and reason, and keeps serving the old routes', async () => {
      t.writeConfig(`${swapped()}  - jobType: mac-*\n    backend: nowhere\n`);
      const error = await waitFor(() => t.logs().find((l) => l.message?.toString().startsWith('routes.yaml rejected')), 2000, 'the rejection');
      expect(error.error).to.match(/routes\.yaml:\d+:\d+: routes\[2\]\.backend: unknown backend "nowhere"/);
      expect(error.level).to.equal('error');
      expect(await backendOf('/api/v2/builders/linux64-opt')).to.equal('taskservice');
      const metrics = (await request(t.adminUrl).get('/metrics')).text;
      expect(metrics).to.contain('strangler_config_reloads_total{result="failure"} 1');
      // Fixing the file applies it.
      t.writeConfig(swapped());
      await waitFor(async () => (await backendOf('/api/v2/builders/linux64-opt')) === 'buildbot', 2000, 'the fixed routes');
    });

    it('never fails a request because of a reload, and never serves a torn table', async () => {
      const configs = [swapped(), routesYaml({ buildbot: { url: legacy.url, legacy: true }, taskservice: { url: next.url } }, ROUTES)];
      let stop = false;
      const failures: string[] = [];
      const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
      const load = Array.from({ length: 8 }, async () => {
        while (!stop) {
          const res = await fetchVia(agent, `${t.url}/api/v2/builders/linux64-opt`);
          if (res.status !== 200) failures.push(`status ${res.status}`);
          // Each config sends linux64-* to exactly one backend: the answer must come from the one named in the header.
          if (res.servedBy !== res.backend) failures.push(`torn: header ${res.backend}, served by ${res.servedBy}`);
        }
      });
      for (let i = 0; i < 10; i++) {
        await t.proxy.store.reload('admin'); // explicit reloads, as fast as they go, on top of the file watcher
        t.writeConfig(configs[i % 2]!);
        await new Promise((r) => setTimeout(r, 30));
      }
      stop = true;
      await Promise.all(load);
      agent.destroy();
      expect(failures).to.deep.equal([]);
      expect(legacy.received.length + next.received.length).to.be.greaterThan(50);
    });
  });
});

async function fetchVia(agent: http.Agent, url: string): Promise<{ status: number; backend: string; servedBy: string }> {
  return new Promise((resolve, reject) => {
    http.get(url, { agent }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, backend: String(res.headers['x-strangler-backend']), servedBy: String(res.headers['x-served-by']) }));
    }).on('error', reject);
  });
}

/** Sends raw bytes and returns whatever comes back before the server closes (or 2 s). */
export async function rawExchange(url: string, payload: string): Promise<string> {
  const socket = net.connect(Number(new URL(url).port), '127.0.0.1');
  let answer = '';
  socket.on('data', (c: Buffer) => (answer += c.toString('latin1')));
  socket.on('error', () => undefined);
  await new Promise((r) => socket.once('connect', r));
  socket.write(payload);
  await new Promise((r) => {
    socket.once('close', r);
    setTimeout(r, 2000);
  });
  socket.destroy();
  return answer;
}

export { freePort };
