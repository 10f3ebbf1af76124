/**
 * Shadowing with a Taskcluster queue as the shadow side: a copy goes through
 * the translation (a queue does not speak Buildbot's API), its answer is
 * recorded and compared like any other. A shadowed force creates a task only
 * with `mutating: true`. The legacy side is the Buildbot look-alike of the
 * demo (src/demo/standin.ts): what is under test is the proxy's copy path.
 */
import { expect } from 'chai';
import { startStandinBackend, type StandinBackend } from '../../src/demo/standin.js';
import type { Strangler } from '../../src/main.js';
import { startStandinQueue, type StandinQueue } from '../../src/standin-queue/index.js';
import { startQueueProxy, type QueueProxy } from '../support/queue-proxy.js';
import { legacyAndQueueYaml } from '../support/tables.js';

const TOKEN = 'shadow-test-access-token-0123456789';

describe('e2e: shadow copies to a Taskcluster queue', function () {
  this.timeout(30_000);
  let world: QueueProxy | undefined;
  let queue: StandinQueue;
  let legacy: StandinBackend;
  let proxy: Strangler;

  before(async () => {
    queue = await startStandinQueue({ clients: { proxy: { accessToken: TOKEN, scopes: ['*'] } }, worker: false });
    legacy = await startStandinBackend({ name: 'buildbot', builders: ['linux64-opt', 'win32-debug'] });
    const yaml = legacyAndQueueYaml({
      legacyUrl: legacy.url,
      rootUrl: queue.rootUrl,
      queue: ['health: { intervalMs: 0 }'],
      task: '{ taskQueueId: proj-shadow/linux, payload: { command: [make] } }',
      routes: `  - jobType: linux64-opt
    backend: buildbot
    shadow: { backend: queue, mutating: true }
  - jobType: win32-debug
    backend: buildbot
    shadow: { backend: queue }
`,
    });
    world = await startQueueProxy(yaml, { credentials: { clientId: 'proxy', accessToken: TOKEN } });
    proxy = world.proxy;
  });

  after(async () => {
    await world?.close();
    await queue?.close();
    await legacy?.close();
  });

  const force = (builder: string) =>
    fetch(`${proxy.proxyUrl}/api/v2/forceschedulers/force`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ jsonrpc: '2.0', method: 'force', id: 1, params: { builderNames: [builder] } }),
    });

  async function shadowCount(result: string): Promise<number> {
    const text = await (await fetch(`${proxy.adminUrl}/metrics`)).text();
    let sum = 0;
    for (const line of text.split('\n')) if (line.startsWith('strangler_shadow_requests_total{') && line.includes(`result="${result}"`) && line.includes('backend="queue"')) sum += Number(line.split(' ').at(-1));
    return sum;
  }

  async function until(check: () => Promise<boolean>, what: string): Promise<void> {
    for (let i = 0; i < 100; i++) {
      if (await check()) return;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect.fail(`timed out waiting for ${what}`);
  }

  it('a shadowed force with mutating: true creates one task on the queue; the client gets the legacy answer', async () => {
    const answer = await force('linux64-opt');
    expect(answer.headers.get('x-strangler-backend')).to.equal('buildbot');
    const body = (await answer.json()) as { result: [number, Record<string, number>] };
    expect(body.result[0]).to.be.below(1_000_000_000_000_000);
    await until(async () => queue.tasks().length === 1, 'the shadow task');
    const [task] = queue.tasks();
    expect(task!.task.tags).to.include({ 'buildbot-builder': 'linux64-opt' });
    // The ids differ by design (the queue side mints its own), so the copy is compared and found different.
    await until(async () => (await shadowCount('mismatch')) + (await shadowCount('match')) === 1, 'the comparison');
    expect(await shadowCount('error')).to.equal(0);
  });

  it('a shadowed force without mutating creates nothing on the queue', async () => {
    const before = queue.createCalls().length;
    const answer = await force('win32-debug');
    expect(answer.status).to.equal(200);
    expect(await shadowCount('skipped_mutating')).to.equal(1);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(queue.createCalls().length).to.equal(before);
  });

  it('a shadowed read of a builder listing is answered by the translation and compared', async () => {
    const compared = (await shadowCount('match')) + (await shadowCount('mismatch'));
    const answer = await fetch(`${proxy.proxyUrl}/api/v2/builders/win32-debug/builds`);
    expect(answer.status).to.equal(200);
    await until(async () => (await shadowCount('match')) + (await shadowCount('mismatch')) === compared + 1, 'the listing comparison');
    expect(await shadowCount('error')).to.equal(0);
  });
});
