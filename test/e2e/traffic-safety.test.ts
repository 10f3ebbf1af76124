/**
 * Moving traffic safely, end to end over real sockets: sticky splits across
 * replicas, shadow copies that never touch the client's answer, failover only
 * when a request provably never arrived, circuit breakers, safe retries.
 */
import { expect } from 'chai';
import http from 'node:http';
import request from 'supertest';
import { freePort, startUpstream, type TestUpstream } from '../support/upstream.js';
import { routesYaml, startTestProxy, waitFor, type TestProxy } from '../support/proxy.js';

const FORCE = (builder: string, extra: Record<string, unknown> = {}) => JSON.stringify({ jsonrpc: '2.0', method: 'force', id: 1, params: { builderNames: [builder], ...extra } });

describe('e2e: moving traffic safely', function () {
  let legacy: TestUpstream;
  let next: TestUpstream;
  const proxies: TestProxy[] = [];
  const start = async (routes: string, backendExtra: { legacy?: string; next?: string } = {}, settings = '') => {
    const t = await startTestProxy(
      routesYaml(
        {
          buildbot: { url: legacy.url, legacy: true, ...(backendExtra.legacy ? { extra: backendExtra.legacy } : {}) },
          taskservice: { url: next.url, ...(backendExtra.next ? { extra: backendExtra.next } : {}) },
        },
        `${settings}routes:\n${routes}`,
      ),
    );
    proxies.push(t);
    return t;
  };

  beforeEach(async () => {
    legacy = await startUpstream('buildbot');
    next = await startUpstream('taskservice');
  });
  afterEach(async () => {
    for (const t of proxies.splice(0)) await t.close();
    await legacy.close();
    await next.close();
  });

  describe('sticky splits', () => {
    const ROUTE = '  - jobType: android-*\n    split: { taskservice: 30, buildbot: 70 }\n    stickyBy: [header:X-Push-Id, query:revision, param:revision]\n';

    it('keeps every push on one backend, across two replicas and a restart', async () => {
      const a = await start(ROUTE);
      const b = await start(ROUTE);
      const pushes = Array.from({ length: 40 }, (_, i) => `push-${i}`);
      const sides = async (t: TestProxy) =>
        Promise.all(pushes.map(async (p) => (await request(t.url).get('/api/v2/builders/android-api-16-test/builds').set('X-Push-Id', p)).headers['x-strangler-backend']));
      const first = await sides(a);
      expect(await sides(b)).to.deep.equal(first);
      expect(await sides(a)).to.deep.equal(first);
      expect(new Set(first)).to.have.property('size', 2); // both sides get some pushes
      await a.close();
      proxies.splice(proxies.indexOf(a), 1);
      const restarted = await start(ROUTE);
      expect(await sides(restarted)).to.deep.equal(first);
    });

    it('reads the key from a force call\'s params, and logs which source gave it', async () => {
      const t = await start(ROUTE);
      const sides = new Set<string>();
      for (let i = 0; i < 5; i++) {
        const res = await request(t.url).post('/api/v2/forceschedulers/force').set('content-type', 'application/json').send(FORCE('android-api-15-test', { revision: 'abc123' })).expect(200);
        sides.add(String(res.headers['x-strangler-backend']));
      }
      expect(sides.size).to.equal(1);
      expect(t.logs().filter((l) => l.message === 'request').every((l) => l.sticky === 'param:revision')).to.equal(true);
    });
  });

  describe('shadow traffic', () => {
    const SHADOWED = (extra = '') => `  - jobType: linux64-*\n    backend: buildbot\n    shadow: { backend: taskservice, percent: 100, ignoreFields: [buildid]${extra} }\n`;

    it('answers the client from the primary alone, and counts and logs a copy whose answer differs', async () => {
      const t = await start(SHADOWED());
      const res = await request(t.url).get('/api/v2/builders/linux64-opt/builds').expect(200);
      expect(res.body.servedBy).to.equal('buildbot');
      await waitFor(() => next.received.length === 1, 2000, 'the shadow copy');
      expect(next.received[0]!.headers['x-strangler-shadow']).to.equal('1');
      expect(next.received[0]!.url).to.equal('/api/v2/builders/linux64-opt/builds');
      // The two stand-ins answer differently ({"servedBy": ...}): a mismatch, logged with the differing field.
      const metrics = await waitFor(async () => {
        const text = (await request(t.adminUrl).get('/metrics')).text;
        return text.includes('strangler_shadow_requests_total{backend="taskservice",job_type="linux64-opt",result="mismatch"} 1') ? text : undefined;
      }, 2000, 'the comparison');
      expect(metrics).to.be.a('string');
      const mismatch = t.logs().find((l) => l.message === 'shadow mismatch')!;
      expect(mismatch.differences).to.deep.equal([{ path: 'servedBy', primary: 'buildbot', shadow: 'taskservice' }]);
      expect(t.logs().find((l) => l.message === 'request')).to.include({ shadow: 'sent', backend: 'buildbot' });
    });

    it('counts a match when the answers agree but for ignored fields', async () => {
      const same = (id: number) => (_req: http.IncomingMessage, res: http.ServerResponse) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ builds: [{ buildid: id, number: 1, results: 0 }] }));
      };
      legacy.handle(same(1));
      next.handle(same(2));
      const t = await start(SHADOWED());
      await request(t.url).get('/api/v2/builders/linux64-opt/builds').expect(200);
      await waitFor(async () => (await request(t.adminUrl).get('/metrics')).text.includes('result="match"} 1'), 2000, 'a match');
    });

    it('does not slow the client when the shadow is slow, nor fail it when the shadow is down', async () => {
      next.handle((_req, res) => setTimeout(() => res.end('late'), 1500));
      const t = await start(SHADOWED());
      const started = Date.now();
      await request(t.url).get('/api/v2/builders/linux64-opt').expect(200);
      expect(Date.now() - started).to.be.lessThan(500);

      await next.close();
      const t2 = await start(SHADOWED());
      const again = Date.now();
      await request(t2.url).get('/api/v2/builders/linux64-opt').expect(200);
      expect(Date.now() - again).to.be.lessThan(500);
      await waitFor(async () => (await request(t2.adminUrl).get('/metrics')).text.includes('result="error"} 1'), 3000, 'the failed copy to be counted');
    });

    it('gives up on a copy whose answer stalls at the shadow timeout, counts it as an error and frees its slot', async () => {
      // Headers at once, then a body that never ends: only the proxy's own deadline can end this copy.
      next.handle((_req, res) => {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': '100' });
        res.write('{"builds":');
      });
      const t = await start(SHADOWED(), {}, 'settings:\n  shadow: { timeoutMs: 300 }\n');
      const started = Date.now();
      await request(t.url).get('/api/v2/builders/linux64-opt/builds').expect(200);
      const metrics = await waitFor(async () => {
        const text = (await request(t.adminUrl).get('/metrics')).text;
        return text.includes('strangler_shadow_requests_total{backend="taskservice",job_type="linux64-opt",result="error"} 1') ? text : undefined;
      }, 3000, 'the stalled copy to be given up');
      expect(Date.now() - started).to.be.at.least(300);
      expect(metrics).to.match(/^strangler_shadow_requests_in_flight 0$/m);
    });

    it('never copies a force unless the route says mutating calls are safe to shadow', async () => {
      const t = await start(SHADOWED());
      await request(t.url).post('/api/v2/forceschedulers/force').set('content-type', 'application/json').send(FORCE('linux64-opt')).expect(200);
      await new Promise((r) => setTimeout(r, 200));
      expect(next.received).to.have.length(0);
      expect(legacy.received).to.have.length(1);
      expect(t.logs().find((l) => l.message === 'request')).to.include({ shadow: 'skipped-mutating' });

      const t2 = await start(SHADOWED(', mutating: true'));
      await request(t2.url).post('/api/v2/forceschedulers/force').set('content-type', 'application/json').send(FORCE('linux64-opt')).expect(200);
      await waitFor(() => next.received.length === 1, 2000, 'the mutating copy');
      expect(next.received[0]!.body.toString()).to.equal(FORCE('linux64-opt'));
    });

    it('drops copies beyond the in-flight cap, and counts them', async () => {
      next.handle((_req, res) => setTimeout(() => res.end('{}'), 800));
      const t = await start(SHADOWED(), {}, 'settings:\n  shadow: { maxInFlight: 1 }\n');
      await Promise.all([0, 1, 2].map(() => request(t.url).get('/api/v2/builders/linux64-opt').expect(200)));
      const text = (await request(t.adminUrl).get('/metrics')).text;
      expect(text).to.contain('strangler_shadow_requests_total{backend="taskservice",job_type="linux64-opt",result="dropped"} 2');
    });
  });

  describe('failover', () => {
    it('sends a request whose primary refuses connections to the fallback', async () => {
      const dead = await freePort();
      legacy.handle((_req, res) => res.end('fallback answered'));
      const t = await startTestProxy(routesYaml({ buildbot: { url: legacy.url, legacy: true }, taskservice: { url: `http://127.0.0.1:${dead}` } }, 'routes:\n  - jobType: linux64-*\n    backend: taskservice\n    fallback: buildbot\n'));
      proxies.push(t);
      const res = await request(t.url).post('/api/v2/forceschedulers/force').set('content-type', 'application/json').send(FORCE('linux64-opt')).expect(200);
      expect(res.text).to.equal('fallback answered');
      expect(res.headers['x-strangler-backend']).to.equal('buildbot');
      expect(legacy.received).to.have.length(1);
      expect(t.logs().find((l) => l.message === 'request')).to.include({ fallback: 'refused', backend: 'buildbot' });
      expect((await request(t.adminUrl).get('/metrics')).text).to.contain('strangler_fallbacks_total{from="taskservice",to="buildbot",cause="refused"} 1');
    });

    it('never re-sends a force that reached its primary: the client gets an error, the force ran once', async () => {
      next.handle((req) => req.socket.destroy()); // received the whole force, then dies
      const t = await start('  - jobType: linux64-*\n    backend: taskservice\n    fallback: buildbot\n    retries: 2\n');
      const res = await request(t.url).post('/api/v2/forceschedulers/force').set('content-type', 'application/json').send(FORCE('linux64-opt')).expect(502);
      expect(res.body).to.include({ code: 'BACKEND_RESET', backend: 'taskservice' });
      expect(next.received).to.have.length(1);
      expect(legacy.received).to.have.length(0);
    });

    it('retries a safe GET where the route allows it, and never a POST', async () => {
      let calls = 0;
      next.handle((req, res) => {
        calls++;
        if (calls === 1) return void req.socket.destroy();
        res.end('second try');
      });
      const t = await start('  - jobType: linux64-*\n    backend: taskservice\n    retries: 1\n');
      expect((await request(t.url).get('/api/v2/builders/linux64-opt').expect(200)).text).to.equal('second try');
      expect(t.logs().find((l) => l.message === 'request')).to.include({ retries: 1 });
      calls = 0;
      await request(t.url).post('/api/v2/builders/linux64-opt/builds/1').set('content-type', 'application/json').send('{"method":"rebuild","id":1}').expect(502);
      expect(calls).to.equal(1);
    });

    it('opens the circuit after repeated failures: 503 with Retry-After, nothing sent, then recovers', async () => {
      next.handle((_req, res) => {
        res.writeHead(503);
        res.end('overloaded');
      });
      const t = await start('  - jobType: linux64-*\n    backend: taskservice\n', { next: 'circuit: { failureThreshold: 3, coolDownMs: 500 }' });
      for (let i = 0; i < 3; i++) await request(t.url).get('/api/v2/builders/linux64-opt').expect(503); // the backend's own 503s, passed through
      const held = await request(t.url).get('/api/v2/builders/linux64-opt').expect(503);
      expect(held.body.code).to.equal('BACKEND_UNAVAILABLE');
      expect(held.headers['retry-after']).to.equal('1');
      expect(next.received).to.have.length(3);
      expect((await request(t.adminUrl).get('/metrics')).text).to.contain('strangler_backend_circuit_state{backend="taskservice",state="open"} 1');

      next.handle((_req, res) => res.end('healthy again'));
      await new Promise((r) => setTimeout(r, 550));
      expect((await request(t.url).get('/api/v2/builders/linux64-opt').expect(200)).text).to.equal('healthy again'); // the half-open trial
      await request(t.url).get('/api/v2/builders/linux64-opt').expect(200);
    });

    it('sends to the fallback while the circuit is open', async () => {
      next.handle((req) => req.socket.destroy());
      const t = await start('  - jobType: linux64-*\n    backend: taskservice\n    fallback: buildbot\n', { next: 'circuit: { failureThreshold: 2, coolDownMs: 60000 }' });
      await request(t.url).get('/api/v2/builders/linux64-opt').expect(502);
      await request(t.url).get('/api/v2/builders/linux64-opt').expect(502);
      const res = await request(t.url).get('/api/v2/builders/linux64-opt').expect(200);
      expect(res.headers['x-strangler-backend']).to.equal('buildbot');
      expect(next.received).to.have.length(2);
      expect(t.logs().filter((l) => l.message === 'request').at(-1)).to.include({ fallback: 'circuit-open' });
    });
  });
});
