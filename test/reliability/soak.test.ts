/**
 * Soak: the real process under moderate load for a bounded time, with a
 * routes.yaml reload every 2 s and a backend restart (SIGKILL) every 7 s.
 * Memory and file descriptors stay flat. 20 s measured in npm test; 10
 * minutes in npm run test:reliability (STRANGLER_SOAK_SECONDS overrides).
 *
 * The measured time follows a warm-up under the same load: the process's
 * heap grows to its working size first (on Node 24 for 20-40 s, on Node 20
 * for a few), and that growth is not a leak. A leak keeps growing past it.
 */
import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort } from '../support/upstream.js';
import { startCli } from '../support/cli-process.js';
import { routesYaml, waitFor } from '../support/proxy.js';
import { BackendProcess, FULL, openFds, rssMiB, send } from './kit.js';

const SECONDS = Number(process.env.STRANGLER_SOAK_SECONDS ?? (FULL ? 600 : 20));
const WARMUP_SECONDS = 40;

describe('reliability: soak', function () {
  this.timeout((WARMUP_SECONDS + SECONDS + 60) * 1000);

  it(`holds memory and file descriptors flat for ${SECONDS} s of load, reloads and backend restarts, after ${WARMUP_SECONDS} s of the same`, async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'strangler-soak-'));
    const legacy = new BackendProcess(await freePort(), 'buildbot', path.join(dir, 'a.log'));
    const next = new BackendProcess(await freePort(), 'taskservice', path.join(dir, 'b.log'));
    await Promise.all([legacy.start(), next.start()]);
    const file = path.join(dir, 'routes.yaml');
    const configs = ['taskservice', 'buildbot'].map((b) =>
      routesYaml({ buildbot: { url: legacy.url, legacy: true }, taskservice: { url: next.url, extra: 'circuit: { failureThreshold: 3, coolDownMs: 300 }' } }, `routes:\n  - jobType: linux64-*\n    backend: ${b}\n  - jobType: android-*\n    split: { taskservice: 50, buildbot: 50 }\n    stickyBy: [header:X-Push-Id]\n`),
    );
    writeFileSync(file, configs[0]!);
    const [port, adminPort] = [await freePort(), await freePort()];
    const proxy = startCli(['--config', file, '--port', String(port), '--admin-port', String(adminPort), '--host', '127.0.0.1', '--log-level', 'warn'], { keepLast: 20_000 });
    const url = `http://127.0.0.1:${port}`;
    try {
      await waitFor(async () => (await send(new http.Agent(), `${url}/api/v2/builders/x`)).status === 200 || undefined, 15_000, 'the proxy to start');
      const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
      const measureFrom = Date.now() + WARMUP_SECONDS * 1000;
      const deadline = measureFrom + SECONDS * 1000;
      const statuses = new Map<number, number>();
      const clients = Array.from({ length: 8 }, async (_, c) => {
        for (let i = 0; Date.now() < deadline; i++) {
          const jobType = ['linux64-opt', 'android-api-16-test', 'win32-debug'][i % 3];
          const res = await send(agent, `${url}/api/v2/builders/${jobType}/builds`, { headers: { 'x-push-id': `p${c}-${i % 50}` } });
          statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
          await new Promise((r) => setTimeout(r, 2));
        }
      });
      const samples: Array<{ rss: number; fds: number }> = [];
      const sampler = setInterval(() => {
        if (Date.now() >= measureFrom) samples.push({ rss: rssMiB(proxy.child.pid!), fds: openFds(proxy.child.pid!) });
      }, 1000);
      let n = 0;
      const reloader = setInterval(() => writeFileSync(file, configs[++n % 2]!), 2000);
      const restarter = (async () => {
        while (Date.now() < deadline - 3000) {
          await new Promise((r) => setTimeout(r, 7000));
          if (Date.now() >= deadline - 3000) break;
          await next.kill();
          await new Promise((r) => setTimeout(r, 300));
          await next.start();
        }
      })();
      await Promise.all([...clients, restarter]);
      clearInterval(sampler);
      clearInterval(reloader);
      agent.destroy();

      const total = [...statuses.values()].reduce((a, b) => a + b, 0);
      expect(statuses.get(0) ?? 0, `statuses: ${JSON.stringify([...statuses])}`).to.equal(0); // the proxy never dropped a connection on its clients
      expect(statuses.get(200) ?? 0).to.be.greaterThan(total * 0.8);
      for (const code of statuses.keys()) expect([200, 502, 503, 504], `unexpected status ${code}`).to.include(code);
      // Flat: the last quarter of the measured time is not above its first quarter by more than a margin.
      const q = Math.floor(samples.length / 4);
      const early = samples.slice(0, q);
      const late = samples.slice(-q);
      const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
      const rssGrowth = mean(late.map((s) => s.rss)) - mean(early.map((s) => s.rss));
      const fdGrowth = Math.max(...late.map((s) => s.fds)) - Math.max(...early.map((s) => s.fds));
      console.log(`      soak: ${total} requests in ${WARMUP_SECONDS} + ${SECONDS} s, rss ${mean(early.map((s) => s.rss)).toFixed(1)} -> ${mean(late.map((s) => s.rss)).toFixed(1)} MiB, fds ${Math.max(...early.map((s) => s.fds))} -> ${Math.max(...late.map((s) => s.fds))}`);
      expect(rssGrowth, 'RSS growth (MiB)').to.be.lessThan(FULL ? 30 : 15);
      expect(fdGrowth, 'file descriptor growth').to.be.at.most(8);
      expect(proxy.child.exitCode, proxy.output()).to.equal(null); // still running
    } finally {
      await proxy.stop('SIGTERM');
      await next.kill();
      await legacy.kill();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
