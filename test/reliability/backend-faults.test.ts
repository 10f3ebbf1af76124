/**
 * Backend faults under load: a backend killed with SIGKILL and restarted,
 * one that resets mid-response, one that accepts and never answers, one that
 * answers slowly. Other job types keep flowing, clients hear quickly, the
 * proxy recovers by itself, and every force either reached exactly one
 * backend exactly once or the client was told it failed (counted in the
 * backends' own force logs, which survive the kill).
 */
import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort, startUpstream, type TestUpstream } from '../support/upstream.js';
import { routesYaml, startTestProxy, waitFor, type TestProxy } from '../support/proxy.js';
import { BackendProcess, FULL, send } from './kit.js';

const force = (reason: string) => JSON.stringify({ jsonrpc: '2.0', method: 'force', id: 1, params: { builderNames: ['linux64-opt'], reason } });

describe('reliability: backend faults', function () {
  this.timeout(FULL ? 240_000 : 90_000);
  let dir: string;
  let t: TestProxy | undefined;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'strangler-faults-'));
  });
  afterEach(async () => {
    await t?.close();
    t = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  it('keeps other job types flowing through a SIGKILL of one backend, tells clients fast, recovers, and runs no force twice', async () => {
    const legacy = new BackendProcess(await freePort(), 'buildbot', path.join(dir, 'legacy-forces.log'));
    const next = new BackendProcess(await freePort(), 'taskservice', path.join(dir, 'next-forces.log'));
    await Promise.all([legacy.start(), next.start()]);
    try {
      t = await startTestProxy(
        routesYaml(
          { buildbot: { url: legacy.url, legacy: true }, taskservice: { url: next.url, extra: 'connectTimeoutMs: 1000, responseTimeoutMs: 3000, circuit: { failureThreshold: 3, coolDownMs: 500 }' } },
          'routes:\n  - jobType: linux64-*\n    backend: taskservice\n',
        ),
        { quiet: true },
      );
      const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
      let stop = false;
      const others: number[] = [];
      const slowAnswers: number[] = [];
      const readers = Array.from({ length: 4 }, async () => {
        while (!stop) {
          const started = Date.now();
          const res = await send(agent, `${t!.url}/api/v2/builders/win32-debug/builds`);
          others.push(res.status);
          if (Date.now() - started > 1000) slowAnswers.push(Date.now() - started);
        }
      });
      const forces: Array<{ reason: string; status: number; ms: number }> = [];
      const forcers = Array.from({ length: 4 }, async (_, w) => {
        for (let i = 0; !stop; i++) {
          const reason = `w${w}-f${i}`;
          const started = Date.now();
          const res = await send(agent, `${t!.url}/api/v2/forceschedulers/force`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: force(reason) });
          forces.push({ reason, status: res.status, ms: Date.now() - started });
          await new Promise((r) => setTimeout(r, 10));
        }
      });

      await new Promise((r) => setTimeout(r, 700));
      await next.kill(); // SIGKILL mid-traffic
      await new Promise((r) => setTimeout(r, FULL ? 3000 : 1200));
      await next.start(); // same port
      await waitFor(async () => (await send(agent, `${t!.url}/api/v2/builders/linux64-opt`)).status === 200 || undefined, 10_000, 'the proxy to use the restarted backend');
      await new Promise((r) => setTimeout(r, 500));
      stop = true;
      await Promise.all([...readers, ...forcers]);
      agent.destroy();

      // Other job types never noticed.
      expect(others.filter((s) => s !== 200)).to.deep.equal([]);
      expect(slowAnswers).to.deep.equal([]);
      // Clients of the dead backend heard quickly, with an error they can act on.
      const failed = forces.filter((f) => f.status !== 200);
      expect(failed.length, 'some forces hit the dead backend').to.be.greaterThan(0);
      for (const f of failed) {
        expect([502, 503, 504], JSON.stringify(f)).to.include(f.status);
        expect(f.ms, JSON.stringify(f)).to.be.lessThan(3500);
      }
      // Exactly once, or told: count at the backend.
      const received = new Map<string, number>();
      for (const reason of [...next.forces(), ...legacy.forces()]) received.set(reason, (received.get(reason) ?? 0) + 1);
      for (const [reason, n] of received) expect(n, `${reason} ran ${n} times`).to.equal(1);
      for (const f of forces.filter((x) => x.status === 200)) expect(received.get(f.reason), f.reason).to.equal(1);
      expect(legacy.forces(), 'no force went to the legacy backend (no fallback route)').to.deep.equal([]);
      expect(forces.filter((f) => f.status === 200).length).to.be.greaterThan(10);
    } finally {
      await next.kill();
      await legacy.kill();
    }
  });

  describe('misbehaving backends', () => {
    let legacy: TestUpstream;
    let bad: TestUpstream | undefined;
    let silent: net.Server | undefined;
    afterEach(async () => {
      await legacy?.close();
      await bad?.close();
      silent?.close();
      bad = undefined;
      silent = undefined;
    });

    async function proxyWith(badUrl: string): Promise<TestProxy> {
      legacy = await startUpstream('buildbot');
      t = await startTestProxy(
        routesYaml({ buildbot: { url: legacy.url, legacy: true }, taskservice: { url: badUrl, extra: 'responseTimeoutMs: 500, health: { intervalMs: 0 }' } }, 'routes:\n  - jobType: linux64-*\n    backend: taskservice\n'),
        { quiet: true },
      );
      return t;
    }

    it('answers 504 within the response timeout for a backend that accepts and never answers', async () => {
      const sockets: net.Socket[] = [];
      silent = net.createServer((s) => sockets.push(s)); // accepts, reads nothing, says nothing
      await new Promise<void>((r) => silent!.listen(0, '127.0.0.1', r));
      const p = await proxyWith(`http://127.0.0.1:${(silent.address() as net.AddressInfo).port}`);
      const agent = new http.Agent({ keepAlive: true });
      const results = await Promise.all(
        Array.from({ length: 10 }, async () => {
          const started = Date.now();
          const res = await send(agent, `${p.url}/api/v2/builders/linux64-opt`);
          return { status: res.status, ms: Date.now() - started };
        }),
      );
      for (const r of results) {
        expect(r.status).to.equal(504);
        expect(r.ms).to.be.lessThan(1500);
      }
      expect((await send(agent, `${p.url}/api/v2/builders/win32-debug`)).status).to.equal(200);
      agent.destroy();
      sockets.forEach((s) => s.destroy());
    });

    it('cuts the client off promptly when a backend resets mid-response, and keeps serving', async () => {
      bad = await startUpstream('taskservice', (_req, res) => {
        res.writeHead(200, { 'content-length': '1000000' });
        res.write('x'.repeat(1000));
        setTimeout(() => res.socket?.resetAndDestroy(), 20);
      });
      const p = await proxyWith(bad.url);
      for (let i = 0; i < 10; i++) {
        const started = Date.now();
        const res = await send(new http.Agent(), `${p.url}/api/v2/builders/linux64-opt`);
        expect(res.status === 0 || res.body.length < 1_000_000, 'a truncated body is never passed off as whole').to.equal(true);
        expect(Date.now() - started).to.be.lessThan(1000);
      }
      expect((await send(new http.Agent(), `${p.url}/api/v2/builders/win32-debug`)).status).to.equal(200);
    });

    it('lets a slow backend be slow without slowing the other job types', async () => {
      bad = await startUpstream('taskservice', (_req, res) => setTimeout(() => res.end('{}'), 400));
      const p = await proxyWith(bad.url);
      const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
      const slow = Array.from({ length: 30 }, () => send(agent, `${p.url}/api/v2/builders/linux64-opt`));
      const fast: number[] = [];
      for (let i = 0; i < 20; i++) {
        const started = Date.now();
        expect((await send(agent, `${p.url}/api/v2/builders/win32-debug`)).status).to.equal(200);
        fast.push(Date.now() - started);
      }
      expect((await Promise.all(slow)).every((r) => r.status === 200)).to.equal(true);
      expect(Math.max(...fast)).to.be.lessThan(200);
      agent.destroy();
    });
  });
});
