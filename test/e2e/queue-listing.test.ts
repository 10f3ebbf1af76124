/**
 * A builder's listing merges both sides whether the client names the builder
 * by name or by the legacy master's builderid. The legacy side is the
 * Buildbot look-alike of the demo (src/demo/standin.ts); the real-master
 * version of the merge is in test/e2e/taskcluster.test.ts.
 */
import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startStandinBackend, type StandinBackend } from '../../src/demo/standin.js';
import { createLogger } from '../../src/logging/logger.js';
import { startStrangler, type Strangler } from '../../src/main.js';
import { startStandinQueue, type StandinQueue } from '../../src/standin-queue/index.js';

const TOKEN = 'listing-test-access-token-0123456789';

describe('e2e: builder listings of queue work, by name and by builderid', function () {
  this.timeout(30_000);
  let dir: string;
  let queue: StandinQueue;
  let legacy: StandinBackend;
  let proxy: Strangler;
  const saved = { id: process.env.TASKCLUSTER_CLIENT_ID, token: process.env.TASKCLUSTER_ACCESS_TOKEN };

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'queue-listing-'));
    queue = await startStandinQueue({ clients: { proxy: { accessToken: TOKEN, scopes: ['*'] } }, worker: { taskQueueIds: ['proj-list/linux'], startDelayMs: 20, runMs: 50, failureRate: 0, seed: 1 } });
    legacy = await startStandinBackend({ name: 'buildbot', builders: ['linux64-opt'] });
    process.env.TASKCLUSTER_CLIENT_ID = 'proxy';
    process.env.TASKCLUSTER_ACCESS_TOKEN = TOKEN;
    const routes = path.join(dir, 'routes.yaml');
    writeFileSync(
      routes,
      `backends:
  buildbot: { url: ${legacy.url}, legacy: true }
  queue:
    kind: taskcluster
    rootUrl: ${queue.rootUrl}
    task: { taskQueueId: proj-list/linux, payload: { command: [make] } }
routes:
  - jobType: linux64-opt
    backend: queue
`,
    );
    proxy = await startStrangler({ configFile: routes, port: 0, adminPort: 0, host: '127.0.0.1', dataDir: path.join(dir, 'data'), logger: createLogger({ level: 'error' }) });
  });

  after(async () => {
    await proxy?.close();
    await queue?.close();
    await legacy?.close();
    if (saved.id === undefined) delete process.env.TASKCLUSTER_CLIENT_ID;
    else process.env.TASKCLUSTER_CLIENT_ID = saved.id;
    if (saved.token === undefined) delete process.env.TASKCLUSTER_ACCESS_TOKEN;
    else process.env.TASKCLUSTER_ACCESS_TOKEN = saved.token;
    rmSync(dir, { recursive: true, force: true });
  });

  const json = async (p: string) => (await (await fetch(`${proxy.proxyUrl}${p}`, { headers: { accept: 'application/json' } })).json()) as Record<string, unknown>;

  it('lists the queue build under /builders/{name}/builds and /builders/{builderid}/builds alike', async () => {
    const forced = await fetch(`${proxy.proxyUrl}/api/v2/forceschedulers/force`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ jsonrpc: '2.0', method: 'force', id: 1, params: { builderNames: ['linux64-opt'] } }),
    });
    const [, brids] = ((await forced.json()) as { result: [number, Record<string, number>] }).result;
    const [builderid, brid] = Object.entries(brids)[0]!;
    let builds: Array<{ buildid: number }> = [];
    for (let i = 0; i < 100 && builds.length === 0; i++) {
      builds = (await json(`/api/v2/buildrequests/${brid}/builds`)).builds as Array<{ buildid: number }>;
      if (builds.length === 0) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(builds, 'the queue build').to.have.length(1);
    const byName = (await json('/api/v2/builders/linux64-opt/builds')).builds as Array<{ buildid: number }>;
    const byId = (await json(`/api/v2/builders/${builderid}/builds`)).builds as Array<{ buildid: number }>;
    expect(byName.map((b) => b.buildid)).to.include(builds[0]!.buildid);
    expect(byId.map((b) => b.buildid)).to.deep.equal(byName.map((b) => b.buildid));
  });
});
