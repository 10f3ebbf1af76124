/**
 * A large routes file saved while clients keep sending: 40,000 routes, parsed
 * in a worker and compiled in slices (src/config/off-thread.ts). Every request
 * succeeds, the routes move, and the store's work never holds the event loop
 * for long.
 *
 * The event-loop bound below is a stall check, not a speed target: generous
 * because this test shares a busy 2-core machine, where an idle event loop
 * alone sees delays of tens of milliseconds, yet far below the seconds that
 * parsing the file on the event loop took. It covers the store's work, from
 * the save to the new table in force, and the whole reload, up to the end of
 * its bookkeeping in src/main.ts (the plan of moved job types for history, the
 * per-route metrics), which runs in slices too. docs/performance.md has the
 * measured numbers.
 */
import { expect } from 'chai';
import http from 'node:http';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { startUpstream, type TestUpstream } from '../support/upstream.js';
import { routesYaml, startTestProxy, waitFor, type TestProxy } from '../support/proxy.js';
import { send } from './kit.js';

const ROUTES = 40_000;
/** Far below the seconds a parse on the event loop takes, far above scheduling noise. */
const STALL_BOUND_MS = 500;

/**
 * `count` routes, nearly all exact names (`job-N`), with globs and regular
 * expressions spread through them; every route sends its job types to `to`.
 */
function largeRoutes(count: number, to: string): string {
  const lines = ['routes:'];
  for (let i = 0; i < count; i++) {
    const jobType = i % 1000 === 500 ? `"/^re-${i}-(opt|debug)-\\\\d+$/"` : i % 1000 === 250 ? `"glob-${i}-*"` : `job-${i}`;
    lines.push(`  - jobType: ${jobType}`, `    backend: ${to}`);
  }
  return lines.join('\n') + '\n';
}

describe('reliability: a 40,000-route file reloaded under load', function () {
  this.timeout(180_000);
  let legacy: TestUpstream;
  let next: TestUpstream;
  let t: TestProxy;
  before(async () => {
    legacy = await startUpstream('buildbot');
    next = await startUpstream('taskservice');
  });
  after(async () => {
    await t?.close();
    await legacy.close();
    await next.close();
  });

  it('keeps every request whole while the file is saved twice, moves the routes, and never stalls the event loop for long', async () => {
    const backends = { buildbot: { url: legacy.url, legacy: true }, taskservice: { url: next.url } };
    t = await startTestProxy(routesYaml(backends, 'routes:\n  - jobType: job-1\n    backend: buildbot\n'), { quiet: true, pollIntervalMs: 500 });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
    const jobTypes = ['job-1', `job-${ROUTES - 1}`, `re-${ROUTES - 500}-opt-3`, `glob-${ROUTES - 750}-x`, 'unrouted'];
    const backendOf = async (jobType: string) => String((await send(agent, `${t.url}/api/v2/builders/${jobType}/builds`)).headers['x-strangler-backend']);

    const failures: string[] = [];
    let requests = 0;
    let slowest = 0;
    let stop = false;
    const clients = Array.from({ length: 8 }, async (_, c) => {
      while (!stop) {
        const jobType = jobTypes[(requests + c) % jobTypes.length]!;
        const started = performance.now();
        const res = await send(agent, `${t.url}/api/v2/builders/${jobType}/builds`);
        slowest = Math.max(slowest, performance.now() - started);
        requests++;
        if (res.status !== 200) failures.push(`${jobType}: ${res.status} ${res.error ?? ''}`);
      }
    });

    // Two histograms: the store's work (save to swap), and the whole reload with the listeners after the swap.
    const storeDelay = monitorEventLoopDelay({ resolution: 10 });
    const wholeDelay = monitorEventLoopDelay({ resolution: 10 });
    let applying = '';
    // Prepended: runs at the swap, before the proxy's own reload listener.
    t.proxy.store.prependListener('reload', (e) => {
      if (e.result === 'success' && e.table.source.text === applying) storeDelay.disable();
    });
    const rounds: Array<{ to: string; reloadMs: number; storeMaxDelayMs: number; wholeMaxDelayMs: number; slowestRequestMs: number; requests: number }> = [];
    for (const to of ['taskservice', 'buildbot']) {
      applying = routesYaml(backends, largeRoutes(ROUTES, to));
      await new Promise((r) => setTimeout(r, 200)); // traffic flowing before the save
      slowest = 0;
      const before = requests;
      for (const h of [storeDelay, wholeDelay]) {
        h.reset();
        h.enable();
      }
      const saved = performance.now();
      t.writeConfig(applying);
      await waitFor(() => t.proxy.store.current().source.text === applying || undefined, 120_000, `the ${ROUTES}-route file to be applied`);
      const reloadMs = performance.now() - saved;
      // And after it, until the reload's bookkeeping (the plan in history, per-route metrics) is done.
      const hash = t.proxy.store.current().source.hash;
      await waitFor(async () => ((await (await fetch(`${t.adminUrl}/history`)).text()).includes(hash) ? true : undefined), 120_000, 'the reload in history');
      await new Promise((r) => setTimeout(r, 200));
      wholeDelay.disable();
      rounds.push({
        to,
        reloadMs: Math.round(reloadMs),
        storeMaxDelayMs: Math.round(storeDelay.max / 1e6),
        wholeMaxDelayMs: Math.round(wholeDelay.max / 1e6),
        slowestRequestMs: Math.round(slowest),
        requests: requests - before,
      });
      expect(t.proxy.store.current().routes).to.have.length(ROUTES);
      for (const jobType of jobTypes.slice(0, -1)) expect(await backendOf(jobType), jobType).to.equal(to);
    }
    stop = true;
    await Promise.all(clients);
    agent.destroy();
    console.log(`      ${JSON.stringify(rounds)}`);

    expect(failures.slice(0, 10)).to.deep.equal([]);
    for (const round of rounds) {
      expect(round.requests, 'requests served during the reload').to.be.greaterThan(50);
      expect(round.storeMaxDelayMs, "longest event-loop delay during the store's work, ms").to.be.lessThan(STALL_BOUND_MS);
      expect(round.wholeMaxDelayMs, 'longest event-loop delay from the save to the end of the bookkeeping, ms').to.be.lessThan(STALL_BOUND_MS);
    }
  });
});
