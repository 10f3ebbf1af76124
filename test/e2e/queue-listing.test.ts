/**
 * A builder's listing merges both sides whether the client names the builder
 * by name or by the legacy master's builderid. The legacy side is the
 * Buildbot look-alike of the demo (src/demo/standin.ts); the real-master
 * version of the merge is in test/e2e/taskcluster.test.ts.
 */
import { expect } from 'chai';
import { startStandinBackend, type StandinBackend } from '../../src/demo/standin.js';
import type { Strangler } from '../../src/main.js';
import { startStandinQueue, type StandinQueue } from '../../src/standin-queue/index.js';
import { startQueueProxy, type QueueProxy } from '../support/queue-proxy.js';
import { legacyAndQueueYaml } from '../support/tables.js';

const TOKEN = 'listing-test-access-token-0123456789';

describe('e2e: builder listings of queue work, by name and by builderid', function () {
  this.timeout(30_000);
  let world: QueueProxy | undefined;
  let queue: StandinQueue;
  let legacy: StandinBackend;
  let proxy: Strangler;

  before(async () => {
    queue = await startStandinQueue({ clients: { proxy: { accessToken: TOKEN, scopes: ['*'] } }, worker: { taskQueueIds: ['proj-list/linux'], startDelayMs: 20, runMs: 50, failureRate: 0, seed: 1 } });
    legacy = await startStandinBackend({ name: 'buildbot', builders: ['linux64-opt'] });
    const yaml = legacyAndQueueYaml({
      legacyUrl: legacy.url,
      rootUrl: queue.rootUrl,
      task: '{ taskQueueId: proj-list/linux, payload: { command: [make] } }',
      routes: '  - jobType: linux64-opt\n    backend: queue\n',
    });
    world = await startQueueProxy(yaml, { credentials: { clientId: 'proxy', accessToken: TOKEN } });
    proxy = world.proxy;
  });

  after(async () => {
    await world?.close();
    await queue?.close();
    await legacy?.close();
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
