/**
 * A job type moved to a Taskcluster queue, seen by a client that speaks only
 * Buildbot's API. Behind the one proxy address: a REAL Buildbot 3.7 master
 * (the legacy side, with a real worker) and the stand-in queue with its
 * worker (the new side). The same client code (test/support/buildbot-client.ts)
 * forces, polls, reads steps and logs, lists, stops, rebuilds and cancels on
 * both sides, and what it reads must have the same shapes and meanings:
 * Buildbot's key sets and types, its result codes, the legacy master's
 * builderids. Also: mixed forces go whole to the legacy master, split
 * listings merge both sides, queue errors become JSON-RPC errors a person can
 * act on, an unreachable queue falls back (or says so), and the queue's
 * credentials appear in no log line and no admin answer.
 *
 * Needs Debian's buildbot and buildbot-worker; without them this suite fails
 * with the install command, unless STRANGLER_SKIP_BUILDBOT=1 (then skipped).
 */
import { expect } from 'chai';
import net from 'node:net';
import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../../src/logging/logger.js';
import { startStandinQueue, type StandinQueue } from '../../src/standin-queue/index.js';
import { MINTED_ID_BASE } from '../../src/store/store.js';
import { requireBuildbot, startBuildbotMasters, type BuildbotMaster, type BuildbotMasters } from '../support/buildbot.js';
import { BuildbotClient, forceIds, RESULTS, sleep, type Json } from '../support/buildbot-client.js';
import { startQueueProxy, type QueueProxy } from '../support/queue-proxy.js';
import { legacyAndQueueYaml } from '../support/tables.js';

const QUEUE = 'proj-e2e/linux';
const BUILDERS = ['linux64-opt', 'linux64-fail', 'linux64-exc', 'win32-debug', 'android-split', 'scoped-opt', 'gone-fallback', 'gone-nofallback'];
const TOKEN = 'e2e-secret-access-token-0123456789';
const WEAK_TOKEN = 'e2e-weak-secret-token-9876543210';
/** Fields Buildbot fills from its own worker and master rows; documented null for queue work (docs/taskcluster.md). */
const NULL_ON_QUEUE: Record<string, string[]> = {
  build: ['masterid', 'workerid'],
  buildrequest: ['claimed_by_masterid'],
};

const keys = (o: Json) => Object.keys(o).sort();
const kinds = (o: Json) => Object.fromEntries(Object.entries(o).map(([k, v]) => [k, v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v]));

/** Same keys, and the same JSON type per key; a null on one side only where the other side's value is also allowed null by Buildbot's own data (results before completion). */
function expectSameShape(kind: string, ours: Json, theirs: Json, label = kind): void {
  expect(keys(ours), `${label} keys`).to.deep.equal(keys(theirs));
  const a = kinds(ours);
  const b = kinds(theirs);
  for (const field of Object.keys(b)) {
    if (NULL_ON_QUEUE[kind]?.includes(field)) {
      expect(a[field], `${label}.${field} is null for queue work`).to.equal('null');
      continue;
    }
    expect(a[field], `${kind}.${field}: ours ${JSON.stringify(ours[field])}, Buildbot's ${JSON.stringify(theirs[field])}`).to.equal(b[field]);
  }
}

async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** What the client saw of one build, from its force to its listing. */
interface Followed {
  builder: string;
  backend: string | null;
  bsid: number;
  brid: number;
  builderid: number;
  buildrequest: Json;
  buildset: Json;
  read: Awaited<ReturnType<BuildbotClient['readBuild']>>;
  listed: Json[];
}

/** The one piece of client code both sides run: force, poll to the end, find the build, read it all, list. */
async function followBuild(client: BuildbotClient, builder: string): Promise<Followed> {
  const answer = await client.force([builder], { revision: 'abc123' });
  const { bsid, brids } = forceIds(answer);
  expect(brids.size).to.equal(1);
  const [builderid, brid] = [...brids][0]!;
  const buildrequest = await client.waitForRequest(brid!, 60_000);
  const buildset = await client.waitForBuildset(bsid, 10_000);
  const builds = await client.buildsOf(brid!);
  expect(builds, 'one build per buildrequest').to.have.length(1);
  const read = await client.readBuild(builds[0]!.buildid as number);
  const listed = (await client.buildsOfBuilder(builder)).builds;
  return { builder, backend: answer.headers.get('x-strangler-backend'), bsid, brid: brid!, builderid: builderid!, buildrequest, buildset, read, listed };
}

describe('e2e: a job type on a Taskcluster queue, read through Buildbot\'s API next to a real Buildbot master', function () {
  this.timeout(180_000);
  let bb: BuildbotMasters | undefined;
  let legacy: BuildbotMaster;
  let queue: StandinQueue | undefined;
  let world: QueueProxy | undefined;
  let client: BuildbotClient;
  let logger: Logger;
  let followed: { onQueue: Followed; onLegacy: Followed } | undefined;
  const logLines: string[] = [];

  before(async function () {
    requireBuildbot(this);
    bb = await startBuildbotMasters([{ name: 'legacy', builders: BUILDERS, buildSeconds: 3 }]);
    legacy = bb.byName('legacy');
    queue = await startStandinQueue({
      clients: {
        proxy: { accessToken: TOKEN, scopes: ['*'] },
        // Can read and cancel, but create nothing: its forces must come back naming the scope it lacks.
        weak: { accessToken: WEAK_TOKEN, scopes: ['queue:get-task:*', 'queue:status:*', 'queue:cancel-task:*'] },
      },
      worker: { taskQueueIds: [QUEUE], startDelayMs: 100, runMs: 2500, failureRate: 0, seed: 1 },
    });

    const gone = `http://127.0.0.1:${await closedPort()}`;
    const yaml = legacyAndQueueYaml({
      legacyUrl: legacy.url,
      rootUrl: queue.rootUrl,
      task: `{ taskQueueId: ${QUEUE}, payload: { command: [echo, 'built \${builder.name} at \${revision}'], logLines: ['e2e log line for \${builder.name}'] } }`,
      backends: `  weakqueue:
    kind: taskcluster
    rootUrl: ${queue.rootUrl}
    credentials: { clientIdEnv: E2E_WEAK_CLIENT_ID, accessTokenEnv: E2E_WEAK_ACCESS_TOKEN }
    task: { taskQueueId: ${QUEUE}, payload: {} }
  gonequeue:
    kind: taskcluster
    rootUrl: ${gone}
    connectTimeoutMs: 1000
    # No probes and no circuit: each force itself finds the queue unreachable, the case the translator must classify.
    health: { intervalMs: 0 }
    circuit: { failureThreshold: 0 }
    task: { taskQueueId: ${QUEUE}, payload: {} }
`,
      routes: `  - jobType: linux64-fail
    backend: queue
    task: { payload: { command: [make, check], exitCode: 1 } }
  - jobType: linux64-exc
    backend: queue
    task: { payload: { command: [make, check], outcome: exception } }
  - jobType: linux64-*
    backend: queue
  - jobType: android-split
    split: { queue: 50, buildbot: 50 }
  - jobType: scoped-opt
    backend: weakqueue
  - jobType: gone-fallback
    backend: gonequeue
    fallback: buildbot
  - jobType: gone-nofallback
    backend: gonequeue
`,
    });
    // Every line the proxy logs, at debug, to look for the credentials in.
    const stream = new Writable({
      write(chunk: Buffer, _encoding, done) {
        logLines.push(chunk.toString('utf8'));
        done();
      },
    });
    logger = createLogger({ stream, level: 'debug' });
    world = await startQueueProxy(yaml, {
      credentials: { clientId: 'proxy', accessToken: TOKEN },
      env: { E2E_WEAK_CLIENT_ID: 'weak', E2E_WEAK_ACCESS_TOKEN: WEAK_TOKEN },
      logger,
      queueFollowIntervalMs: 300,
      drainTimeoutMs: 2000,
    });
    client = new BuildbotClient(world.proxy.proxyUrl);
  });

  after(async () => {
    await world?.close();
    await queue?.close();
    await bb?.stopAll();
  });

  it('forces, polls, reads steps and logs, and lists a build on either side with the same client code and the same shapes', async () => {
    const [onQueue, onLegacy] = await Promise.all([followBuild(client, 'linux64-opt'), followBuild(client, 'win32-debug')]);
    expect(onQueue.backend).to.equal('queue');
    expect(onLegacy.backend).to.equal('buildbot');
    // The ids a client keeps: the queue's in the minted range, the legacy master's below it; builderids are the master's.
    expect(onQueue.brid).to.be.at.least(MINTED_ID_BASE);
    expect(onQueue.bsid).to.be.at.least(MINTED_ID_BASE);
    expect(onLegacy.brid).to.be.below(MINTED_ID_BASE);
    expect(onQueue.builderid).to.equal(await legacy.builderId('linux64-opt'));
    expect(onLegacy.builderid).to.equal(await legacy.builderId('win32-debug'));
    expect(onQueue.buildrequest.builderid).to.equal(onQueue.builderid);
    expect(onQueue.read.build.builderid).to.equal(onQueue.builderid);

    for (const f of [onQueue, onLegacy]) {
      expect(f.buildrequest, f.builder).to.include({ complete: true, results: RESULTS.SUCCESS, buildsetid: f.bsid, buildrequestid: f.brid });
      expect(f.buildset, f.builder).to.include({ complete: true, results: RESULTS.SUCCESS, bsid: f.bsid });
      expect(f.read.build, f.builder).to.include({ complete: true, results: RESULTS.SUCCESS, buildrequestid: f.brid });
      expect(f.read.raw.status, f.builder).to.equal(200);
      expect(f.read.raw.contentType, f.builder).to.match(/^text\/plain/);
      const chunks = f.read.contents.logchunks as Json[];
      expect(chunks, f.builder).to.be.an('array').that.is.not.empty;
      const listedIds = f.listed.map((b) => b.buildid);
      expect(listedIds, `${f.builder}: the listing shows the build`).to.include(f.read.build.buildid);
    }
    expect(onQueue.read.raw.body).to.include('built linux64-opt at abc123').and.to.include('e2e log line for linux64-opt');
    expect(String((onQueue.read.contents.logchunks as Json[])[0]!.content)).to.include('e2e log line for linux64-opt');
    expect(onLegacy.read.raw.body).to.include('sleep');

    // The same keys and types per object type, whichever side ran it.
    expectSameShape('buildrequest', onQueue.buildrequest, onLegacy.buildrequest);
    expectSameShape('buildset', onQueue.buildset, onLegacy.buildset);
    expectSameShape('build', onQueue.read.build, onLegacy.read.build);
    const stdioStep = (f: Followed) => f.read.steps.find((s) => f.read.logs.some((l) => l.slug === 'stdio' && l.stepid === s.stepid))!;
    expectSameShape('step', stdioStep(onQueue), stdioStep(onLegacy));
    expectSameShape('log', onQueue.read.logs.find((l) => l.slug === 'stdio')!, onLegacy.read.logs.find((l) => l.slug === 'stdio')!);
    expectSameShape('logchunk', (onQueue.read.contents.logchunks as Json[])[0]!, (onLegacy.read.contents.logchunks as Json[])[0]!);
    expectSameShape('build', onQueue.listed[0]!, onLegacy.listed[0]!, 'listed build');
    followed = { onQueue, onLegacy };
  });

  it('finds a build by its buildrequest through the builds collection (/builds?buildrequestid=) on either side', async () => {
    expect(followed, 'the first test ran').to.not.equal(undefined);
    for (const f of [followed!.onQueue, followed!.onLegacy]) {
      const byFilter = await client.get(`/builds?buildrequestid=${f.brid}`);
      expect((byFilter.builds as Json[]).map((b) => b.buildid), `${f.builder}: GET /builds?buildrequestid=${f.brid}`).to.deep.equal([f.read.build.buildid]);
    }
  });

  it('reads FAILURE (2) and EXCEPTION (4) from the queue as Buildbot\'s codes', async () => {
    const [failed, excepted] = await Promise.all(['linux64-fail', 'linux64-exc'].map(async (builder) => {
      const { brids } = forceIds(await client.force([builder]));
      const brid = [...brids.values()][0]!;
      const br = await client.waitForRequest(brid, 30_000);
      const builds = await client.buildsOf(brid);
      return { br, builds };
    }));
    expect(failed!.br).to.include({ complete: true, results: RESULTS.FAILURE });
    expect(failed!.builds.map((b) => [b.results, b.state_string])).to.deep.equal([[RESULTS.FAILURE, 'failed']]);
    expect(excepted!.br).to.include({ complete: true, results: RESULTS.EXCEPTION });
    expect(excepted!.builds.map((b) => b.results)).to.deep.equal([RESULTS.EXCEPTION]);
  });

  it('stops a running build on each side: it ends CANCELLED (6), its buildrequest complete', async () => {
    const stopOne = async (builder: string) => {
      const { brids } = forceIds(await client.force([builder]));
      const brid = [...brids.values()][0]!;
      // Buildbot's stdio step runs only after worker_preparation: stop once the build has started.
      const build = await client.waitForBuild(brid, 30_000, (b) => b.complete === false);
      const answer = await client.stop(build.buildid as number);
      expect(answer.error, `${builder}: ${JSON.stringify(answer.error)}`).to.equal(undefined);
      expect(answer.status).to.equal(200);
      const br = await client.waitForRequest(brid, 30_000);
      const after = await client.build(build.buildid as number);
      return { answer, br, after };
    };
    const [queueSide, legacySide] = await Promise.all([stopOne('linux64-opt'), stopOne('win32-debug')]);
    for (const side of [queueSide, legacySide]) {
      expect(side.answer.result ?? null).to.equal(null);
      expect(side.after).to.include({ complete: true, results: RESULTS.CANCELLED });
      expect(side.br).to.include({ complete: true, results: RESULTS.CANCELLED });
    }
  });

  it('rebuilds a finished build on each side: [bsid, {builderid: brid}], and the rebuild runs on the side that owns the build', async () => {
    const rebuildOne = async (builder: string) => {
      const { brids } = forceIds(await client.force([builder]));
      const [builderid, brid] = [...brids][0]!;
      await client.waitForRequest(brid, 60_000);
      const [build] = await client.buildsOf(brid);
      const answer = await client.rebuild(build!.buildid as number);
      const ids = forceIds(answer);
      expect([...ids.brids.keys()], builder).to.deep.equal([builderid]);
      const newBrid = ids.brids.get(builderid)!;
      expect(newBrid).to.not.equal(brid);
      const br = await client.waitForRequest(newBrid, 60_000);
      const buildset = await client.waitForBuildset(ids.bsid, 10_000);
      return { ids, br, buildset, newBrid };
    };
    const [queueSide, legacySide] = await Promise.all([rebuildOne('linux64-opt'), rebuildOne('win32-debug')]);
    expect(queueSide.newBrid).to.be.at.least(MINTED_ID_BASE);
    expect(legacySide.newBrid).to.be.below(MINTED_ID_BASE);
    for (const side of [queueSide, legacySide]) {
      expect(side.br).to.include({ complete: true, results: RESULTS.SUCCESS, buildsetid: side.ids.bsid });
      expect(side.buildset).to.include({ bsid: side.ids.bsid, complete: true });
    }
    expectSameShape('buildset', queueSide.buildset, legacySide.buildset, 'rebuilt buildset');
  });

  it('cancels a pending buildrequest on each side: complete, CANCELLED (6), no build', async () => {
    // Queue side: the worker is paused, so the task stays pending.
    queue!.faults.set({ workerPaused: true });
    // Legacy side: the master's one worker runs one build per builder at a time; the second force waits.
    const busy = forceIds(await client.force(['win32-debug']));
    try {
      const queued = forceIds(await client.force(['linux64-opt']));
      const waiting = forceIds(await client.force(['win32-debug']));
      const queueBrid = [...queued.brids.values()][0]!;
      const legacyBrid = [...waiting.brids.values()][0]!;
      await client.waitForBuild([...busy.brids.values()][0]!, 30_000, (b) => b.complete === false);
      for (const brid of [queueBrid, legacyBrid]) expect(await client.buildrequest(brid), `${brid} pending`).to.include({ complete: false, claimed: false, results: -1 });

      for (const brid of [queueBrid, legacyBrid]) {
        const answer = await client.cancel(brid);
        expect(answer.error, JSON.stringify(answer.error)).to.equal(undefined);
        expect(answer.status).to.equal(200);
      }
      const [q, l] = await Promise.all([queueBrid, legacyBrid].map((brid) => client.waitForRequest(brid, 20_000)));
      expect(q).to.include({ complete: true, results: RESULTS.CANCELLED });
      expect(l).to.include({ complete: true, results: RESULTS.CANCELLED });
      expectSameShape('buildrequest', q!, l!, 'cancelled buildrequest');
      expect(await client.buildsOf(queueBrid)).to.deep.equal([]);
      expect(await client.buildsOf(legacyBrid)).to.deep.equal([]);
      const qs = await client.buildset(queued.bsid);
      expect(qs).to.include({ complete: true, results: RESULTS.CANCELLED });
    } finally {
      queue!.faults.set({ workerPaused: false });
    }
  });

  it('sends a force naming builders of both sides whole to the legacy master', async () => {
    const answer = await client.force(['linux64-opt', 'win32-debug']);
    expect(answer.headers.get('x-strangler-backend')).to.equal('buildbot');
    const { bsid, brids } = forceIds(answer);
    expect(bsid).to.be.below(MINTED_ID_BASE);
    expect([...brids.keys()].sort()).to.deep.equal([await legacy.builderId('linux64-opt'), await legacy.builderId('win32-debug')].sort());
    for (const brid of brids.values()) expect(brid).to.be.below(MINTED_ID_BASE);
    const onMaster = await legacy.getJson<{ buildrequests: Json[] }>(`/buildrequests?buildsetid=${bsid}`);
    expect(onMaster.buildrequests).to.have.length(2);
  });

  it('lists the builds of a split builder from both sides, merged', async () => {
    const seen = new Map<string, number[]>();
    for (let i = 0; i < 16 && !(seen.has('queue') && seen.has('buildbot')); i++) {
      const answer = await client.force(['android-split']);
      const { brids } = forceIds(answer);
      const backend = answer.headers.get('x-strangler-backend') ?? '?';
      seen.set(backend, [...(seen.get(backend) ?? []), [...brids.values()][0]!]);
    }
    expect([...seen.keys()].sort(), 'forces went to both sides').to.deep.equal(['buildbot', 'queue']);
    // Buildbot collapses requests still waiting behind a running build (they end SKIPPED, with no build): every build that ran is what must be listed.
    const started = new Map<string, number[]>();
    for (const [side, brids] of seen) {
      await Promise.all(brids.map((brid) => client.waitForRequest(brid, 90_000)));
      const builds = (await Promise.all(brids.map((brid) => client.buildsOf(brid)))).flat();
      expect(builds.length, `${side} ran builds`).to.be.greaterThan(0);
      started.set(side, builds.map((b) => b.buildid as number));
    }
    const { builds, total } = await client.buildsOfBuilder('android-split');
    const listed = builds.map((b) => b.buildid as number);
    for (const [side, ids] of started) for (const id of ids) expect(listed, `${side} build ${id}`).to.include(id);
    expect(total, `listed ${JSON.stringify(builds.map((b) => [b.buildid, b.number, b.results]))}, started ${JSON.stringify([...started])}`).to.equal(builds.length);
    // Newest first as asked. Each side's numbers are its own sequence: while a job type is split the legacy master
    // keeps counting without knowing the proxy's numbers, so the two may meet (docs/taskcluster.md, Ids).
    const numbers = builds.map((b) => b.number as number);
    expect([...numbers].sort((a, b) => b - a)).to.deep.equal(numbers);
    for (const [side, ids] of started) {
      const own = builds.filter((b) => ids.includes(b.buildid as number)).map((b) => b.number as number);
      expect(new Set(own).size, `${side} numbers ${JSON.stringify(own)}`).to.equal(own.length);
    }
    for (const b of builds) expect(b.builderid).to.equal(await legacy.builderId('android-split'));
  });

  it('answers a queue 403 as a JSON-RPC error naming the missing scope', async () => {
    const answer = await client.force(['scoped-opt']);
    expect(answer.result).to.equal(undefined);
    expect(answer.error, JSON.stringify(answer)).to.be.an('object');
    expect(answer.error!.code).to.be.a('number');
    expect(answer.error!.message).to.match(/scope/i);
    expect(answer.error!.message).to.include(`queue:create-task:`);
    expect(answer.error!.message).to.include(QUEUE);
    expect(queue!.tasks().filter((t) => t.task.tags?.['buildbot-builder'] === 'scoped-opt')).to.have.length(0);
  });

  it('sends a force to the fallback when the queue is unreachable', async () => {
    const before = (await legacy.buildrequests()).length;
    const fell = await client.force(['gone-fallback']);
    expect(fell.headers.get('x-strangler-backend')).to.equal('buildbot');
    const { brids } = forceIds(fell);
    expect([...brids.keys()]).to.deep.equal([await legacy.builderId('gone-fallback')]);
    expect([...brids.values()][0]).to.be.below(MINTED_ID_BASE);
    expect((await legacy.buildrequests()).length).to.equal(before + 1);
  });

  it('answers a force to an unreachable queue without a fallback with a clear JSON-RPC error', async () => {
    const before = (await legacy.buildrequests()).length;
    const refused = await client.force(['gone-nofallback']);
    expect(refused.result).to.equal(undefined);
    expect(refused.error, `${refused.status} ${JSON.stringify(refused)}`).to.be.an('object');
    expect(refused.error!.code).to.be.a('number');
    expect(refused.error!.message).to.match(/reach|refused|unavailable/i);
    expect(refused.status).to.be.oneOf([502, 503]);
    expect((await legacy.buildrequests()).length, 'nothing ran on the legacy master').to.equal(before);
  });

  it('never shows the queue credentials in a log line or an admin answer', async () => {
    const admin = world!.proxy.adminUrl;
    const explainTarget = encodeURIComponent(`/api/v2/builds/${MINTED_ID_BASE}`);
    const answers: string[] = [];
    for (const p of ['/', '/routes', '/backends', '/queues', '/history', '/progress', '/metrics', '/healthz', '/readyz', `/explain?method=GET&path=${explainTarget}`, '/explain?method=POST&path=/api/v2/forceschedulers/force', '/queues?jobType=linux64-opt']) {
      const res = await fetch(admin + p, { headers: { accept: p === '/' ? 'text/html' : 'application/json' } });
      answers.push(`${p} ${res.status}\n${await res.text()}`);
    }
    expect(answers.find((a) => a.startsWith('/backends 200')), 'the admin API answers /backends').to.be.a('string');
    expect(answers.join('\n'), 'the admin API knows the queue backend').to.include('gonequeue');
    logger.flushAccess();
    await sleep(100);
    const logs = logLines.join('');
    expect(logs.length).to.be.greaterThan(0);
    expect(logs).to.include('queue'); // the log did record queue work
    for (const secret of [TOKEN, WEAK_TOKEN]) {
      expect(logs.includes(secret), 'an access token in the proxy log').to.equal(false);
      for (const a of answers) expect(a.includes(secret), `an access token in the admin answer ${a.split('\n')[0]}`).to.equal(false);
    }
    for (const text of [logs, ...answers]) expect(text).to.not.match(/Hawk id=|authorization":"Hawk/i);
  });
});
