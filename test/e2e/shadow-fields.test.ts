/**
 * Shadow comparison by JSON fields against REAL Buildbot 3.7 masters, which
 * serve their JSON as text/plain. Two masters ran the same builds at
 * different seconds, the second after other work, so their builds lists
 * differ in ids and timestamps only: a shadowed read is counted as a match
 * when the route ignores those fields, and as a mismatch when a field it
 * does not ignore differs. The same holds with a Taskcluster queue as the
 * shadow side, whose copy the translation answers in Buildbot's shape (its
 * builds listing is the legacy master's merged with the queue's own).
 *
 * Needs Debian's buildbot and buildbot-worker (see test/support/buildbot.ts).
 */
import { expect } from 'chai';
import { Writable } from 'node:stream';
import { createLogger } from '../../src/logging/logger.js';
import type { Strangler } from '../../src/main.js';
import { startStandinQueue, type StandinQueue } from '../../src/standin-queue/index.js';
import { requireBuildbot, startBuildbotMasters, type BuildbotMaster, type BuildbotMasters } from '../support/buildbot.js';
import { waitFor } from '../support/proxy.js';
import { startQueueProxy, type QueueProxy } from '../support/queue-proxy.js';
import { legacyAndQueueYaml } from '../support/tables.js';

const TOKEN = 'shadow-fields-access-token-0123456789';
/** What a route comparing two masters leaves out: what each master numbers or clocks for itself. */
const IGNORED = ['buildid', 'buildrequestid', 'builderid', 'masterid', 'started_at', 'complete_at'];

describe('e2e: shadowed reads of real Buildbot masters compared by JSON fields', function () {
  this.timeout(180_000);
  let bb: BuildbotMasters | undefined;
  let legacy: BuildbotMaster;
  let next: BuildbotMaster;
  let queue: StandinQueue | undefined;
  let proxy: Strangler | undefined;
  let world: QueueProxy | undefined;
  const lines: Array<Record<string, unknown>> = [];

  before(async function () {
    requireBuildbot(this);
    bb = await startBuildbotMasters([
      { name: 'legacy', builders: ['linux64-opt', 'win32-debug', 'android-api-16-test'] },
      { name: 'next', builders: ['linux64-opt', 'win32-debug', 'android-api-16-test'] },
    ]);
    legacy = bb.byName('legacy');
    next = bb.byName('next');
    // The same two builds on each master; the second master runs something else first (its ids move on)
    // and starts a second later (its timestamps differ).
    await legacy.forceDirect(['linux64-opt']);
    await legacy.forceDirect(['win32-debug']);
    await legacy.waitForBuilds(2, 60_000);
    await next.forceDirect(['android-api-16-test']);
    await next.waitForBuilds(1, 60_000);
    const second = Math.floor(Date.now() / 1000);
    await waitFor(() => Math.floor(Date.now() / 1000) > second || undefined, 2000, 'the next second');
    await next.forceDirect(['linux64-opt']);
    await next.forceDirect(['win32-debug']);
    await next.waitForBuilds(3, 60_000);

    queue = await startStandinQueue({ clients: { proxy: { accessToken: TOKEN, scopes: ['*'] } }, worker: false });
    const shadow = (backend: string) => `{ backend: ${backend}, ignoreFields: [${IGNORED.join(', ')}] }`;
    const yaml = legacyAndQueueYaml({
      legacyUrl: legacy.url,
      rootUrl: queue.rootUrl,
      queue: ['health: { intervalMs: 0 }'],
      task: '{ taskQueueId: proj-shadow/linux, payload: { command: [make] } }',
      backends: `  next: { url: ${next.url} }\n`,
      routes: `  - jobType: linux64-opt
    backend: buildbot
    shadow: ${shadow('next')}
  - jobType: win32-debug
    backend: next
    shadow: ${shadow('queue')}
`,
    });
    const stream = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString('utf8').split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    world = await startQueueProxy(yaml, { credentials: { clientId: 'proxy', accessToken: TOKEN }, logger: createLogger({ stream, level: 'warn' }) });
    proxy = world.proxy;
  });

  after(async () => {
    await world?.close();
    await queue?.close();
    await bb?.stopAll();
  });

  /** strangler_shadow_requests_total by result, for one shadow backend and job type. */
  async function shadowCounts(backend: string, jobType: string): Promise<Record<string, number>> {
    const text = await (await fetch(`${proxy!.adminUrl}/metrics`)).text();
    const counts: Record<string, number> = {};
    const pattern = new RegExp(`^strangler_shadow_requests_total\\{backend="${backend}",job_type="${jobType}",result="(\\w+)"\\} (\\d+)$`, 'gm');
    for (const m of text.matchAll(pattern)) counts[m[1]!] = Number(m[2]);
    return counts;
  }

  /** Reads through the proxy and waits for its copy's comparison to be counted. */
  async function shadowedRead(apiPath: string, backend: string, jobType: string, primary: string): Promise<Record<string, number>> {
    const before = await shadowCounts(backend, jobType);
    const answer = await fetch(`${proxy!.proxyUrl}/api/v2${apiPath}`);
    expect(answer.status).to.equal(200);
    expect(answer.headers.get('x-strangler-backend')).to.equal(primary);
    expect(answer.headers.get('content-type'), 'Buildbot serves JSON as text/plain').to.match(/^text\/plain/);
    await answer.arrayBuffer();
    const total = (c: Record<string, number>) => Object.values(c).reduce((a, b) => a + b, 0);
    const after = await waitFor(async () => {
      const now = await shadowCounts(backend, jobType);
      return total(now) > total(before) ? now : undefined;
    }, 10_000, `the comparison of ${apiPath}`);
    const added: Record<string, number> = {};
    for (const [result, n] of Object.entries(after)) if (n !== (before[result] ?? 0)) added[result] = n - (before[result] ?? 0);
    return added;
  }

  const mismatchLogs = () => lines.filter((l) => l['message'] === 'shadow mismatch');

  /** The two masters' own answers differ as bytes, and only in ignored fields: what makes a match below a comparison by fields. */
  async function differOnlyInIgnoredFields(a: BuildbotMaster, b: BuildbotMaster, apiPath: string): Promise<void> {
    const [x, y] = await Promise.all([a, b].map(async (m) => (await fetch(`${m.apiUrl}${apiPath}`)).text()));
    expect(x, 'the masters answer different bytes').to.not.equal(y);
    const builds = (text: string) => (JSON.parse(text) as { builds: Array<Record<string, unknown>> }).builds;
    const [bx, by] = [builds(x!), builds(y!)];
    expect(bx.length).to.be.above(0);
    expect(bx.length).to.equal(by.length);
    const strip = (build: Record<string, unknown>) => Object.fromEntries(Object.entries(build).filter(([key]) => !IGNORED.includes(key)));
    expect(bx.map(strip)).to.deep.equal(by.map(strip));
    const differing = Object.keys(bx[0]!).filter((key) => JSON.stringify(bx[0]![key]) !== JSON.stringify(by[0]![key]));
    expect(differing, 'ids and timestamps differ').to.include.members(['buildid', 'started_at']);
  }

  describe('between two Buildbot masters', () => {
    it('counts a read whose answers differ only in ignored fields as a match', async () => {
      await differOnlyInIgnoredFields(legacy, next, '/builders/linux64-opt/builds');
      expect(await shadowedRead('/builders/linux64-opt/builds', 'next', 'linux64-opt', 'buildbot')).to.deep.equal({ match: 1 });
      expect(mismatchLogs()).to.deep.equal([]);
    });

    it('counts a read whose answers differ in a field the route does not ignore as a mismatch, and logs that field', async () => {
      await next.forceDirect(['linux64-opt']);
      await next.waitForBuilds(4, 60_000);
      // The newest build: number 1 on the legacy master, 2 on the other.
      expect(await shadowedRead('/builders/linux64-opt/builds?order=-number&limit=1', 'next', 'linux64-opt', 'buildbot')).to.deep.equal({ mismatch: 1 });
      const logged = await waitFor(() => mismatchLogs().find((l) => l['shadow'] === 'next'), 2000, 'the mismatch log');
      expect(logged).to.include({ compared: 'json', jobType: 'linux64-opt' });
      const paths = (logged['differences'] as Array<{ path: string }>).map((d) => d.path);
      expect(paths).to.include('builds[0].number');
      for (const p of paths) expect(IGNORED, p).to.not.include(p.split('.').at(-1));
    });
  });

  describe('with a Taskcluster queue as the shadow side', () => {
    it("counts the translation's Buildbot-shaped answer, differing only in ignored fields, as a match", async () => {
      await differOnlyInIgnoredFields(next, legacy, '/builders/win32-debug/builds');
      expect(await shadowedRead('/builders/win32-debug/builds', 'queue', 'win32-debug', 'next')).to.deep.equal({ match: 1 });
      expect(mismatchLogs().filter((l) => l['shadow'] === 'queue')).to.deep.equal([]);
    });

    it('counts it as a mismatch when a field the route does not ignore differs', async () => {
      await next.forceDirect(['win32-debug']);
      await next.waitForBuilds(5, 60_000);
      expect(await shadowedRead('/builders/win32-debug/builds?order=-number&limit=1', 'queue', 'win32-debug', 'next')).to.deep.equal({ mismatch: 1 });
      const logged = await waitFor(() => mismatchLogs().find((l) => l['shadow'] === 'queue'), 2000, 'the mismatch log');
      expect(logged).to.include({ compared: 'json', primary: 'next' });
      expect((logged['differences'] as Array<{ path: string }>).map((d) => d.path)).to.include('builds[0].number');
    });
  });
});
