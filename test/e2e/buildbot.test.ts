/**
 * The proxy in front of REAL Buildbot 3.7: two masters with a real worker
 * each, one as the legacy master, one standing in for a Buildbot-compatible
 * new service. Real forces through the proxy must run builds where the
 * routes say, exactly once; nothing is stubbed between client and Buildbot.
 *
 * Needs Debian's buildbot and buildbot-worker (the test command installs
 * them); without them this suite fails with the install command, unless
 * STRANGLER_SKIP_BUILDBOT=1 (then it is skipped with a warning).
 */
import { expect } from 'chai';
import request from 'supertest';
import { requireBuildbot, startBuildbotMasters, type BuildbotMaster, type BuildbotMasters } from '../support/buildbot.js';
import { routesYaml, startTestProxy, waitFor, type TestProxy } from '../support/proxy.js';

const BUILDERS = ['linux64-opt', 'win32-debug', 'android-api-15-test'];

interface Buildset {
  bsid: number;
  reason: string;
}

const force = (builderNames: string[], reason: string) => JSON.stringify({ jsonrpc: '2.0', method: 'force', id: 1, params: { builderNames, reason } });

async function buildsetsOf(master: BuildbotMaster): Promise<Buildset[]> {
  return (await master.getJson<{ buildsets: Buildset[] }>('/buildsets')).buildsets;
}

describe('e2e: real Buildbot behind the proxy', function () {
  this.timeout(120_000);
  let bb: BuildbotMasters | undefined;
  let legacy: BuildbotMaster;
  let next: BuildbotMaster;
  let t: TestProxy | undefined;

  const yaml = (routes: string, extra = { legacy: '', next: '' }) =>
    routesYaml(
      {
        buildbot: { url: legacy.url, legacy: true, ...(extra.legacy ? { extra: extra.legacy } : {}) },
        taskservice: { url: next.url, ...(extra.next ? { extra: extra.next } : {}) },
      },
      `routes:\n${routes}`,
    );

  before(async function () {
    requireBuildbot(this);
    bb = await startBuildbotMasters([
      { name: 'legacy', builders: BUILDERS },
      { name: 'newservice', builders: BUILDERS },
    ]);
    legacy = bb.byName('legacy');
    next = bb.byName('newservice');
  });
  after(async () => {
    await t?.close();
    await bb?.stopAll();
  });
  afterEach(async () => {
    await t?.close();
    t = undefined;
  });

  it('runs a forced build of a migrated job type on the new master only, and follows a routes.yaml edit', async () => {
    t = await startTestProxy(yaml('  - jobType: linux64-*\n    backend: taskservice\n'));
    const [legacyBefore, nextBefore] = [(await legacy.builds()).length, (await next.builds()).length];

    const res = await request(t.url).post('/api/v2/forceschedulers/force').set('content-type', 'application/json').send(force(['linux64-opt'], 'migrated')).expect(200);
    expect(res.headers['x-strangler-backend']).to.equal('taskservice');
    expect(res.body.result[0]).to.be.a('number'); // Buildbot's own answer: [bsid, {builderid: brid}]
    const built = await next.waitForBuilds(nextBefore + 1, 30_000);
    expect(built.at(-1)!.builderid).to.equal(await next.builderId('linux64-opt'));
    expect(await legacy.builds()).to.have.length(legacyBefore);

    // Move linux64-* back: the next force runs on the legacy master.
    t.writeConfig(yaml('  - jobType: linux64-*\n    backend: buildbot\n'));
    await waitFor(async () => (await request(t!.url).get('/api/v2/builders/linux64-opt')).headers['x-strangler-backend'] === 'buildbot', 3000, 'the edit to apply');
    await request(t.url).post('/api/v2/forceschedulers/force').set('content-type', 'application/json').send(force(['linux64-opt'], 'moved back')).expect(200).expect('x-strangler-backend', 'buildbot');
    await legacy.waitForBuilds(legacyBefore + 1, 30_000);
    expect(await next.builds()).to.have.length(nextBefore + 1);
  });

  it('sends a read by builder id where the builder name routes', async () => {
    t = await startTestProxy(yaml('  - jobType: linux64-*\n    backend: taskservice\n'));
    const id = await legacy.builderId('linux64-opt'); // ids are the legacy master's
    await waitFor(async () => (await request(t!.url).get(`/api/v2/builders/${id}`)).headers['x-strangler-job-type'] === 'linux64-opt', 5000, 'the id to resolve');
    const res = await request(t.url).get(`/api/v2/builders/${id}/builds`).expect(200);
    expect(res.headers['x-strangler-backend']).to.equal('taskservice');
    expect(JSON.parse(res.text)).to.have.property('builds'); // Buildbot's collection shape (sent as text/plain), from the new master
    const other = await legacy.builderId('win32-debug');
    const stays = await request(t.url).get(`/api/v2/builders/${other}`).expect(200);
    expect(stays.headers['x-strangler-backend']).to.equal('buildbot');
    expect(JSON.parse(stays.text).builders[0].name).to.equal('win32-debug');
  });

  it('sends a force naming builders on both sides to the legacy master, whole', async () => {
    t = await startTestProxy(yaml('  - jobType: linux64-*\n    backend: taskservice\n'));
    const [legacyBefore, nextBefore] = [(await legacy.builds()).length, (await next.builds()).length];
    const res = await request(t.url).post('/api/v2/forceschedulers/force').set('content-type', 'application/json').send(force(['linux64-opt', 'win32-debug'], 'mixed')).expect(200);
    expect(res.headers['x-strangler-backend']).to.equal('buildbot');
    expect(Object.keys(res.body.result[1])).to.have.length(2); // one build request per builder
    await legacy.waitForBuilds(legacyBefore + 2, 30_000);
    expect(await next.builds()).to.have.length(nextBefore);
  });

  it('shadows reads to the other master: every copy is answered by Buildbot itself and compared', async () => {
    t = await startTestProxy(yaml('  - jobType: linux64-*\n    backend: buildbot\n    shadow: { backend: taskservice, percent: 100 }\n'));
    const paths = Array.from({ length: 60 }, (_, i) => (i % 2 ? '/api/v2/builders/linux64-opt' : `/api/v2/builders/linux64-opt/builds?limit=${i}`));
    const answers = await Promise.all(paths.map((path) => request(t!.url).get(path)));
    for (const res of answers) expect([res.status, res.headers['x-strangler-backend']]).to.deep.equal([200, 'buildbot']);
    const results = await waitFor(async () => {
      const text = (await request(t!.adminUrl).get('/metrics')).text;
      const counts: Record<string, number> = {};
      for (const m of text.matchAll(/^strangler_shadow_requests_total\{backend="taskservice",job_type="linux64-opt",result="(\w+)"\} (\d+)$/gm)) counts[m[1]!] = Number(m[2]);
      return Object.values(counts).reduce((a, b) => a + b, 0) >= paths.length ? counts : undefined;
    }, 10_000, 'every copy to be compared');
    // Pipelined on a couple of connections to Twisted's web server: each copy got its own answer, none failed.
    expect(results.error ?? 0, JSON.stringify(results)).to.equal(0);
    expect((results.match ?? 0) + (results.mismatch ?? 0), JSON.stringify(results)).to.equal(paths.length);
    expect(results.match ?? 0, 'the builds lists of two idle masters agree byte for byte').to.be.greaterThan(0);
  });

  it('loses and duplicates no force while the legacy master is stopped and restarted mid-traffic', async function () {
    this.timeout(180_000);
    t = await startTestProxy(
      yaml('  - jobType: win32-*\n    backend: buildbot\n    fallback: taskservice\n', {
        legacy: 'connectTimeoutMs: 1000, responseTimeoutMs: 5000, health: { intervalMs: 300, unhealthyThreshold: 2, healthyThreshold: 1 }, circuit: { failureThreshold: 2, coolDownMs: 1000 }',
        next: '',
      }),
    );
    const outcomes: Array<{ reason: string; status: number; backend: string; code?: string }> = [];
    let reads = 0;
    let readsFailed = 0;
    let stop = false;
    const reader = (async () => {
      while (!stop) {
        const res = await request(t!.url).get('/api/v2/builders/win32-debug/builds').ok(() => true);
        reads++;
        if (res.status !== 200) readsFailed++;
        await new Promise((r) => setTimeout(r, 50));
      }
    })();

    for (let i = 0; i < 36; i++) {
      if (i === 8) await legacy.stop(); // mid-run: the legacy master goes away
      if (i === 24) await legacy.start(); // and comes back
      const reason = `chaos-${i}`;
      const res = await request(t.url).post('/api/v2/forceschedulers/force').set('content-type', 'application/json').send(force(['win32-debug'], reason)).ok(() => true);
      outcomes.push({ reason, status: res.status, backend: String(res.headers['x-strangler-backend']), code: res.body?.code });
      await new Promise((r) => setTimeout(r, 100));
    }
    stop = true;
    await reader;

    const answered = outcomes.filter((o) => o.status === 200);
    const failed = outcomes.filter((o) => o.status !== 200);
    expect(answered.length, JSON.stringify(outcomes)).to.be.greaterThan(20);
    expect(answered.some((o) => o.backend === 'taskservice'), 'some forces failed over while the legacy master was down').to.equal(true);
    expect(answered.some((o) => o.backend === 'buildbot'), 'some forces ran on the legacy master').to.equal(true);
    // The proxy answered every failure itself with an error a client can act on.
    for (const o of failed) expect([502, 503, 504], JSON.stringify(o)).to.include(o.status);

    const sets = [...(await buildsetsOf(legacy)).map((b) => ({ ...b, on: 'buildbot' })), ...(await buildsetsOf(next)).map((b) => ({ ...b, on: 'taskservice' }))];
    // Buildbot stores the reason as "A build was forced by '<user>': <reason>".
    const byReason = new Map<string, string[]>();
    for (const s of sets) {
      const reason = /(chaos-\d+)$/.exec(s.reason)?.[1];
      if (reason) byReason.set(reason, [...(byReason.get(reason) ?? []), s.on]);
    }

    // No force ran twice, on one master or across both.
    for (const [reason, where] of byReason) expect(where, reason).to.have.length(1);
    // Every force the client was told succeeded ran exactly once, where the answer said.
    for (const o of answered) expect(byReason.get(o.reason), o.reason).to.deep.equal([o.backend]);
    // A force refused before reaching any master (502 refused, 503 unavailable) ran nowhere.
    for (const o of failed.filter((f) => f.code === 'BACKEND_REFUSED' || f.code === 'BACKEND_UNAVAILABLE')) expect(byReason.has(o.reason), o.reason).to.equal(false);
    // Nothing ran that the client was not told about: every build set is a force answered 200, or one the client got an error for.
    for (const reason of byReason.keys()) expect(outcomes.some((o) => o.reason === reason)).to.equal(true);
    expect(reads).to.be.greaterThan(20);
    expect(readsFailed).to.be.lessThan(reads);
  });
});
