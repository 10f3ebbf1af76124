/**
 * Reloads under load: the routes flip back and forth while clients keep
 * sending. No request fails, and each is served by a backend that a config in
 * force while it was in flight allows (no torn state).
 */
import { expect } from 'chai';
import http from 'node:http';
import { startUpstream, type TestUpstream } from '../support/upstream.js';
import { routesYaml, startTestProxy, type TestProxy } from '../support/proxy.js';
import { FULL, send } from './kit.js';

const RELOADS = FULL ? 100 : 30;

describe('reliability: reload under load', function () {
  this.timeout(FULL ? 180_000 : 60_000);
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

  it(`keeps every request whole through ${RELOADS} reloads alternating two configs`, async () => {
    const configs = ['taskservice', 'buildbot'].map((linux) =>
      routesYaml(
        { buildbot: { url: legacy.url, legacy: true }, taskservice: { url: next.url } },
        `routes:\n  - jobType: linux64-*\n    backend: ${linux}\n  - jobType: win32-debug\n    backend: buildbot\n  - jobType: android-*\n    split: { taskservice: 50, buildbot: 50 }\n`,
      ),
    );
    // Which config was in force at each generation (a reload the watcher also saw counts twice; that's fine).
    t = await startTestProxy(configs[0]!, { quiet: true });
    const inForce: number[] = [0];
    let generation = 0;
    t.proxy.store.on('reload', (e) => {
      if (e.result !== 'success') return;
      inForce.push(e.table.source.text === configs[0] ? 0 : 1);
      generation++;
    });
    // What a config allows per job type.
    const allowed = (gen: number, jobType: string): string[] => {
      if (jobType === 'win32-debug') return ['buildbot'];
      if (jobType.startsWith('android')) return ['taskservice', 'buildbot'];
      return [inForce[gen] === 0 ? 'taskservice' : 'buildbot'];
    };

    const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
    const failures: string[] = [];
    let requests = 0;
    let stop = false;
    const jobTypes = ['linux64-opt', 'win32-debug', 'android-api-16-test'];
    const clients = Array.from({ length: 16 }, async (_, c) => {
      while (!stop) {
        const jobType = jobTypes[(requests + c) % jobTypes.length]!;
        const startGen = generation;
        const res = await send(agent, `${t.url}/api/v2/builders/${jobType}/builds`);
        const endGen = generation;
        requests++;
        if (res.status !== 200) {
          failures.push(`${jobType}: ${res.status} ${res.error ?? ''}`);
          continue;
        }
        const backend = String(res.headers['x-strangler-backend']);
        if (res.headers['x-served-by'] !== backend) failures.push(`torn: header ${backend}, served by ${res.headers['x-served-by']}`);
        const ok = [...Array(endGen - startGen + 1).keys()].some((i) => allowed(startGen + i, jobType).includes(backend));
        if (!ok) failures.push(`${jobType} served by ${backend} under generations ${startGen}..${endGen}`);
      }
    });

    for (let i = 1; i <= RELOADS; i++) {
      t.writeConfig(configs[i % 2]!);
      const event = await t.proxy.store.reload('admin');
      expect(event.result).to.equal('success');
      await new Promise((r) => setTimeout(r, 20));
    }
    stop = true;
    await Promise.all(clients);
    agent.destroy();
    expect(generation).to.be.at.least(RELOADS);
    expect(failures.slice(0, 10)).to.deep.equal([]);
    expect(requests).to.be.greaterThan(RELOADS * 10);
  });
});
