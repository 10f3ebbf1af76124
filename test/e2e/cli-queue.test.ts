/**
 * `strangler-proxy explain` and `plan` for work on a Taskcluster queue, as users run them (the
 * built bin, in a child process), against a proxy running in this process with the stand-in
 * queue, a stand-in legacy master and the embedded store in a temporary folder: which side owns
 * a build, buildrequest or buildset id, and the task a force would create.
 */
import { expect } from 'chai';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { QueuesView } from '../../src/admin/views.js';
import { startStandinBackend, type StandinBackend } from '../../src/demo/standin.js';
import type { Strangler } from '../../src/main.js';
import { startStandinQueue, type StandinQueue } from '../../src/standin-queue/index.js';
import { MINTED_ID_BASE } from '../../src/store/store.js';
import { commandEnv, requireBuiltCli, runCli } from '../support/cli-process.js';
import { startQueueProxy, type QueueProxy } from '../support/queue-proxy.js';
import { legacyAndQueueYaml } from '../support/tables.js';

const ENV = commandEnv({ taskcluster: true });
const ACCESS_TOKEN = 'cli-queue-secret-access-token';

/** The command in a child process, without blocking this one (the proxy it asks runs here). */
const run = (args: string[], cwd: string) => runCli(args, { cwd, env: ENV });

const queueRoutes = (legacyUrl: string, rootUrl: string) => legacyAndQueueYaml({ legacyUrl, rootUrl, task: `{ taskQueueId: proj-ci/linux, payload: { command: [echo, '\${builder.name}', '\${revision}'] } }` });

describe('e2e: explain and plan for work on a queue (CLI)', function () {
  this.timeout(60_000);
  let queue: StandinQueue;
  let legacy: StandinBackend;
  let world: QueueProxy;
  let proxy: Strangler;
  let dir: string;
  let file: string;
  let forced: { bsid: number; brid: number; buildid: number; taskId: string };

  before(async function () {
    requireBuiltCli();
    queue = await startStandinQueue({ clients: { proxy: { accessToken: ACCESS_TOKEN, scopes: ['*'] } }, worker: { taskQueueIds: ['proj-ci/linux'], startDelayMs: 20, runMs: 50, failureRate: 0, seed: 1 } as never });
    legacy = await startStandinBackend({ name: 'buildbot', builders: ['linux64-opt', 'win32-debug'] });
    world = await startQueueProxy(queueRoutes(legacy.url, queue.rootUrl), { credentials: { clientId: 'proxy', accessToken: ACCESS_TOKEN }, queueFollowIntervalMs: 100, watch: false });
    ({ proxy, dir, configFile: file } = world);
    forced = await forceAndFinish(proxy.proxyUrl, proxy.adminUrl, 'linux64-opt');
    expect(forced.taskId).to.match(/^[A-Za-z0-9_-]{22}$/);
  });
  after(async () => {
    await world?.close();
    await queue?.close();
    await legacy?.close();
  });

  it('--build ID of a minted build: the queue that has it, its taskId and state, through the running proxy', async () => {
    const { code, stdout, stderr } = await run(['explain', '--admin', proxy.adminUrl, '--build', String(forced.buildid)], dir);
    expect(code, stderr).to.equal(0);
    expect(stdout).to.contain(`GET /api/v2/builds/${forced.buildid}`);
    expect(stdout).to.match(/backend: {2}queue \(/);
    expect(stdout).to.contain('reason:   owner');
    expect(stdout).to.contain("owner:    a queue's: queue (minted by the proxy)");
    expect(stdout).to.contain(`task:     ${forced.taskId} on queue: linux64-opt, buildset ${forced.bsid}, buildrequest ${forced.brid}, created, queue state completed`);
    expect(stdout).not.to.contain(ACCESS_TOKEN);
  });

  it('--buildrequest and --buildset, and --json', async () => {
    const br = await run(['explain', '--admin', proxy.adminUrl, '--buildrequest', String(forced.brid), '--json'], dir);
    expect(br.code, br.stderr).to.equal(0);
    const e = JSON.parse(br.stdout) as { backend: string; owner: { side: string; found: boolean; tasks: { taskId: string; queueState: string }[] } };
    expect(e.backend).to.equal('queue');
    expect(e.owner).to.deep.include({ side: 'queue', found: true });
    expect(e.owner.tasks.map((t) => [t.taskId, t.queueState])).to.deep.equal([[forced.taskId, 'completed']]);
    const bs = await run(['explain', '--admin', proxy.adminUrl, '--buildset', String(forced.bsid)], dir);
    expect(bs.code, bs.stderr).to.equal(0);
    expect(bs.stdout).to.contain(`task:     ${forced.taskId} on queue`);
  });

  it('a path with a legacy id: the legacy master\'s (ids below 10^15); a minted id nobody has: 404 from the proxy', async () => {
    const legacyId = await run(['explain', '--admin', proxy.adminUrl, 'GET', '/api/v2/builds/42/steps'], dir);
    expect(legacyId.code, legacyId.stderr).to.equal(0);
    expect(legacyId.stdout).to.contain("owner:    the legacy master's (ids below 10^15)");
    expect(legacyId.stdout).to.match(/backend: {2}buildbot/);
    const unknown = await run(['explain', '--admin', proxy.adminUrl, '--build', String(MINTED_ID_BASE + 987_654)], dir);
    expect(unknown.code, unknown.stderr).to.equal(0);
    expect(unknown.stdout).to.contain('the store has no such build: the proxy answers 404 itself');
  });

  it('offline (--config): a minted id is the proxy\'s, and it says how to ask which queue', async () => {
    const { code, stdout, stderr } = await run(['explain', '--config', file, '--build', String(forced.buildid)], dir);
    expect(code, stderr).to.equal(0);
    expect(stdout).to.contain("owner:    a queue's (minted by the proxy)");
    expect(stdout).to.contain('explain --admin');
  });

  it('explain of a force to the queue prints the task it would create', async () => {
    const body = path.join(dir, 'force.json');
    writeFileSync(body, JSON.stringify({ jsonrpc: '2.0', method: 'force', id: 1, params: { builderNames: ['linux64-debug'] } }));
    const { code, stdout, stderr } = await run(['explain', '--config', file, 'POST', '/api/v2/forceschedulers/force', '--body-file', body], dir);
    expect(code, stderr).to.equal(0);
    expect(stdout).to.contain('a force of linux64-debug would create this task on queue');
    const json = stdout.slice(stdout.indexOf('{', stdout.indexOf('would create this task')));
    const task = JSON.parse(json) as { taskQueueId: string; payload: unknown; tags: Record<string, string> };
    expect(task.taskQueueId).to.equal('proj-ci/linux');
    expect(task.payload).to.deep.equal({ command: ['echo', 'linux64-debug', '0123456789abcdef0123456789abcdef01234567'] });
    expect(task.tags['buildbot-builder']).to.equal('linux64-debug');
  });

  it('usage errors: two id options, an id that is not a number, METHOD PATH with --build', async () => {
    for (const args of [['--build', '1', '--buildset', '2'], ['--build', 'abc'], ['--build', '1', 'GET', '/x']]) {
      const { code, stderr } = await run(['explain', '--config', file, ...args], dir);
      expect(code, args.join(' ')).to.equal(2);
      expect(stderr).to.contain('(see strangler-proxy explain --help)');
    }
  });

  it('plan prints the task a force would create for a job type the new file moves to a queue', async () => {
    const next = path.join(dir, 'next.yaml');
    writeFileSync(next, queueRoutes(legacy.url, queue.rootUrl).replace('routes:\n', 'routes:\n  - jobType: win32-debug\n    backend: queue\n'));
    const { code, stdout, stderr } = await run(['plan', file, next], dir);
    expect(code, stderr).to.equal(3);
    expect(stdout).to.contain('a force of win32-debug would create this task on queue');
    expect(stdout).to.contain('"taskQueueId": "proj-ci/linux"');
  });
});

/** Forces a build of `builder` through the proxy and polls until its buildrequest completes: the ids a client keeps, and the task's id from GET /queues. */
async function forceAndFinish(proxyUrl: string, adminUrl: string, builder: string): Promise<{ bsid: number; brid: number; buildid: number; taskId: string }> {
  const res = await fetch(`${proxyUrl}/api/v2/forceschedulers/force`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', method: 'force', id: 1, params: { builderNames: [builder], revision: 'abc', reason: 'e2e' } }),
  });
  const answer = (await res.json()) as { result: [number, Record<string, number>] };
  const [bsid, brids] = answer.result;
  const brid = Object.values(brids)[0]!;
  const deadline = Date.now() + 15_000;
  for (;;) {
    const br = (await (await fetch(`${proxyUrl}/api/v2/buildrequests/${brid}`)).json()) as { buildrequests: { complete: boolean }[] };
    if (br.buildrequests[0]!.complete) break;
    if (Date.now() > deadline) throw new Error(`buildrequest ${brid} did not complete`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const builds = (await (await fetch(`${proxyUrl}/api/v2/buildrequests/${brid}/builds`)).json()) as { builds: { buildid: number }[] };
  const queues = (await (await fetch(`${adminUrl}/queues?jobType=${builder}`)).json()) as QueuesView;
  const task = queues.backends[0]!.tasks.find((t) => t.buildrequestId === brid)!;
  return { bsid, brid, buildid: builds.builds[0]!.buildid, taskId: task.taskId };
}
