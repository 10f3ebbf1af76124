/**
 * Crash safety of forces to a Taskcluster queue: the proxy (the built CLI, a
 * child process) is killed with SIGKILL while forces are under way, and
 * restarted on the same data directory. The stand-in queue and a Buildbot
 * look-alike (the legacy master, src/demo/standin.ts) live in this process,
 * so they outlive every kill and the queue's record is the truth.
 *
 * What each kill point proves:
 * - Before the store write (the force's body is still arriving): nothing was
 *   committed and nothing was sent, so the force leaves no task and no
 *   createTask call. It proves a force the client never finished sending
 *   cannot create work.
 * - Between the store write and the PUT: the stand-in holds createTask before
 *   reading it (fault `createDelayBeforeMs`) and drops it when its sender has
 *   died, so the queue never saw the PUT. The
 *   committed row is then the only trace of the force, and recovery at
 *   restart must create exactly one task from it with the identical body. It
 *   proves the store write precedes the PUT and recovery finishes open
 *   forces. It cannot tell a kill just before the PUT from one while the PUT
 *   was in flight; for the queue both are the same.
 * - After the PUT, before the answer: the stand-in creates the task, then
 *   holds its answer (fault `createDelayMs`). Recovery resends the identical
 *   body, which the queue answers idempotently. It proves a resend makes no
 *   second task, and that the stored ids still read back.
 * - At random instants under a steady stream of forces: the kill lands
 *   wherever it lands (allocating ids, committing, sending, answering). Over
 *   all rounds: every force the client got ids for has exactly one task and
 *   its ids read back through the restarted proxy; no buildrequest has two
 *   tasks; every createTask for one taskId carried the same body; a force that
 *   got no answer has at most one task; every task on the queue is known to
 *   the proxy. Which instants are hit is a matter of chance (the seed is
 *   printed), so a pass proves these for the instants hit, not for all.
 *
 * Sizes follow STRANGLER_RELIABILITY (kit.ts): the short form in npm test
 * kills a few random rounds, the full form more.
 */
import { seededRandom } from '../../src/standin-queue/worker.js';
import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startStandinBackend, type StandinBackend } from '../../src/demo/standin.js';
import { startStandinQueue, type StandinQueue } from '../../src/standin-queue/index.js';
import { LINK_TAGS } from '../../src/taskcluster/template.js';
import { BuildbotClient, forceIds, sleep } from '../support/buildbot-client.js';
import { requireBuiltCli } from '../support/cli-process.js';
import { waitFor } from '../support/proxy.js';
import { RestartableProxy } from '../support/proxy-process.js';
import { legacyAndQueueYaml } from '../support/tables.js';
import { freePort } from '../support/upstream.js';
import { FULL, send } from './kit.js';

const QUEUE = 'proj-crash/linux';
const TOKEN = 'crash-test-access-token';
const REASON_TAG = 'crash-test-reason';
const RANDOM_ROUNDS = FULL ? 10 : 3;
const LOOPS = 3;
/** The kill lands this long, at most, after a round's first answer: a few forces' worth of time. */
const KILL_WINDOW_MS = 300;

interface Force {
  reason: string;
  /** The ids the client was given, if it got an answer with ids. */
  ids?: { bsid: number; brid: number };
  status: number;
  error?: string;
}


const forceBody = (reason: string) => JSON.stringify({ jsonrpc: '2.0', method: 'force', id: 1, params: { builderNames: ['linux64-opt'], reason, revision: 'r1' } });

describe('reliability: SIGKILL of the proxy during forces to a queue', function () {
  this.timeout(180_000);
  let queue: StandinQueue;
  let legacy: StandinBackend;
  let dir: string;
  let configFile: string;
  let port: number;
  let adminPort: number;
  let proxy: RestartableProxy;
  const forces: Force[] = [];
  const seed = Number(process.env.STRANGLER_CRASH_SEED ?? Date.now() % 100_000);
  const random = seededRandom(seed);

  const url = () => `http://127.0.0.1:${port}`;

  const startProxy = () => proxy.start();
  const killProxy = () => proxy.stop('SIGKILL');

  async function force(reason: string): Promise<Force> {
    const res = await send(new http.Agent(), `${url()}/api/v2/forceschedulers/force`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: forceBody(reason) });
    const record: Force = { reason, status: res.status, ...(res.error ? { error: res.error } : {}) };
    if (res.status === 200) {
      try {
        const { bsid, brids } = forceIds({ status: 200, headers: new Headers(), result: (JSON.parse(res.body) as { result: unknown }).result });
        record.ids = { bsid, brid: [...brids.values()][0]! };
      } catch {
        // An answer without ids: counted as no answer below.
      }
    }
    forces.push(record);
    return record;
  }

  const tasksOf = (reason: string) => queue.tasks().filter((t) => t.task.tags?.[REASON_TAG] === reason);
  const callsOf = (reason: string) => queue.createCalls().filter((c) => c.body !== undefined && (JSON.parse(c.body) as { tags?: Record<string, string> }).tags?.[REASON_TAG] === reason);

  before(async function () {
    requireBuiltCli();
    console.log(`      force-crash seed: ${seed} (STRANGLER_CRASH_SEED=${seed} repeats the kill instants)`);
    queue = await startStandinQueue({ clients: { proxy: { accessToken: TOKEN, scopes: ['*'] } }, worker: { taskQueueIds: [QUEUE], startDelayMs: 50, runMs: 300, failureRate: 0, seed: 1 } });
    legacy = await startStandinBackend({ name: 'buildbot', builders: ['linux64-opt', 'win32-debug'], startDelayMs: 50, runMs: 200 });
    dir = mkdtempSync(path.join(tmpdir(), 'strangler-force-crash-'));
    configFile = path.join(dir, 'routes.yaml');
    writeFileSync(
      configFile,
      legacyAndQueueYaml({
        legacyUrl: legacy.url,
        rootUrl: queue.rootUrl,
        task: `{ taskQueueId: ${QUEUE}, payload: { command: [echo, '\${reason}'] }, tags: { ${REASON_TAG}: '\${reason}' } }`,
      }),
    );
    [port, adminPort] = [await freePort(), await freePort()];
    proxy = new RestartableProxy({ configFile, port, adminPort, dataDir: path.join(dir, 'data'), credentials: { clientId: 'proxy', accessToken: TOKEN } });
  });

  after(async () => {
    await proxy?.stop('SIGKILL');
    await queue?.close();
    await legacy?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('kill before the store write: a force whose body never finished leaves no task and no createTask', async () => {
    await startProxy();
    const reason = 'slow-body';
    const body = forceBody(reason);
    const socket = net.connect(port, '127.0.0.1');
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    let answered = '';
    socket.on('data', (d: Buffer) => (answered += d.toString()));
    socket.on('error', () => undefined);
    socket.write(`POST /api/v2/forceschedulers/force HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body.slice(0, body.length - 10)}`);
    await sleep(300);
    await killProxy();
    socket.destroy();
    forces.push({ reason, status: 0, error: 'killed while the body was arriving' });
    expect(answered).to.equal('');
    await startProxy();
    await sleep(1000); // recovery runs at start: it must find nothing of this force
    expect(tasksOf(reason)).to.have.length(0);
    expect(callsOf(reason)).to.have.length(0);
  });

  it('kill between the store write and the PUT: recovery creates exactly one task, with the identical body', async () => {
    queue.faults.set({ createDelayBeforeMs: 4000 });
    const reason = 'lost-put';
    const pending = force(reason);
    await waitFor(() => callsOf(reason).length > 0 || undefined, 10_000, 'the PUT to reach the stand-in');
    await killProxy();
    await pending;
    await waitFor(() => callsOf(reason)[0]?.fault === 'lost-before' || undefined, 10_000, 'the stand-in to drop the PUT of a dead sender');
    expect(tasksOf(reason), 'the queue never saw the PUT').to.have.length(0);
    queue.faults.reset();
    await startProxy();
    await waitFor(() => tasksOf(reason).length > 0 || undefined, 10_000, 'recovery to create the task');
    expect(tasksOf(reason)).to.have.length(1);
    const bodies = new Set(callsOf(reason).map((c) => c.body));
    expect(bodies.size, 'every createTask carried the stored body').to.equal(1);
    // The ids it was given live in the store: they read back through the restarted proxy.
    const brid = Number(tasksOf(reason)[0]!.task.tags[LINK_TAGS.buildrequest]);
    const br = await new BuildbotClient(url()).buildrequest(brid);
    expect(br.buildrequestid).to.equal(brid);
  });

  it('kill after the PUT before the answer: the resend is answered idempotently, one task', async () => {
    queue.faults.set({ createDelayMs: 4000 });
    const reason = 'unanswered-put';
    const pending = force(reason);
    await waitFor(() => callsOf(reason).some((c) => c.created) || undefined, 10_000, 'the task to be created');
    await killProxy();
    expect((await pending).ids, 'the client got no answer').to.equal(undefined);
    queue.faults.reset();
    await startProxy();
    await waitFor(() => callsOf(reason).length >= 2 || undefined, 10_000, 'recovery to resend createTask');
    expect(tasksOf(reason)).to.have.length(1);
    expect(new Set(callsOf(reason).map((c) => c.body)).size).to.equal(1);
    expect(callsOf(reason).filter((c) => c.created)).to.have.length(1);
  });

  it(`kill at random instants under a steady stream of forces (${RANDOM_ROUNDS} rounds), then every answered id reads back and no force has two tasks`, async () => {
    let counter = 0;
    for (let round = 0; round < RANDOM_ROUNDS; round++) {
      if (proxy.current === undefined) await startProxy();
      let stop = false;
      const before = forces.filter((f) => f.ids !== undefined).length;
      const loops = Array.from({ length: LOOPS }, async (_, l) => {
        for (let i = 0; !stop; i++) await force(`stream-${round}-${l}-${i}-${counter++}`);
      });
      // Once the stream flows (a cold process answers its first force late), the kill lands at a random instant within it.
      await waitFor(() => forces.filter((f) => f.ids !== undefined).length > before || undefined, 20_000, 'the first answer of the round');
      await sleep(Math.floor(random() * KILL_WINDOW_MS));
      stop = true;
      await killProxy();
      await Promise.all(loops);
    }
    await startProxy();

    const answered = forces.filter((f) => f.ids !== undefined);
    const unanswered = forces.filter((f) => f.ids === undefined);
    expect(answered.length, `some forces were answered with ids: ${JSON.stringify(forces)}`).to.be.greaterThan(0);
    // Recovery at start settles what the kills left open: wait until the queue's record stops moving.
    await waitFor(() => answered.every((f) => tasksOf(f.reason).length > 0) || undefined, 15_000, 'a task for every answered force');
    let calls = queue.createCalls().length;
    await waitFor(async () => {
      await sleep(1500);
      const now = queue.createCalls().length;
      const still = now === calls;
      calls = now;
      return still || undefined;
    }, 20_000, 'createTask calls to stop');

    const report = `seed ${seed}; forces: ${JSON.stringify(forces.map((f) => [f.reason, f.status, f.ids?.brid ?? f.error ?? null]))}`;
    for (const f of answered) {
      const tasks = tasksOf(f.reason);
      expect(tasks, `${f.reason}: one task (${report})`).to.have.length(1);
      expect(tasks[0]!.task.tags[LINK_TAGS.buildrequest], f.reason).to.equal(String(f.ids!.brid));
      expect(tasks[0]!.task.tags[LINK_TAGS.buildset], f.reason).to.equal(String(f.ids!.bsid));
    }
    for (const f of unanswered) expect(tasksOf(f.reason).length, `${f.reason}: at most one task (${report})`).to.be.at.most(1);
    const recovered = unanswered.filter((f) => tasksOf(f.reason).length === 1).length;
    console.log(`      ${forces.length} forces: ${answered.length} answered with ids, ${recovered} unanswered with one task, ${unanswered.length - recovered} unanswered with none`);

    // No buildrequest id has two tasks, and every task on the queue is one the proxy stored before sending it.
    const byBrid = new Map<string, string[]>();
    for (const t of queue.tasks()) {
      const brid = t.task.tags?.[LINK_TAGS.buildrequest];
      expect(brid, `task ${t.taskId} carries its buildrequest id`).to.be.a('string');
      byBrid.set(brid!, [...(byBrid.get(brid!) ?? []), t.taskId]);
    }
    for (const [brid, taskIds] of byBrid) expect(taskIds, `buildrequest ${brid}`).to.have.length(1);
    // Every createTask for one taskId carried one body: the proxy only ever resends what it stored.
    const bodies = new Map<string, Set<string>>();
    for (const c of queue.createCalls()) if (c.body !== undefined) bodies.set(c.taskId, (bodies.get(c.taskId) ?? new Set()).add(c.body));
    for (const [taskId, set] of bodies) expect(set.size, `bodies sent for ${taskId}`).to.equal(1);

    // Every id a client was given reads back through the restarted proxy, and its build once the task ran.
    const client = new BuildbotClient(url());
    for (const f of answered) {
      const br = await client.buildrequest(f.ids!.brid);
      expect(br, f.reason).to.include({ buildrequestid: f.ids!.brid, buildsetid: f.ids!.bsid });
      const bs = await client.buildset(f.ids!.bsid);
      expect(bs.bsid, f.reason).to.equal(f.ids!.bsid);
    }
    for (const [brid] of byBrid) {
      const br = await client.buildrequest(Number(brid));
      expect(br.buildrequestid, `task of buildrequest ${brid} is known to the proxy`).to.equal(Number(brid));
    }
    for (const f of answered) {
      const build = await client.waitForBuild(f.ids!.brid, 30_000, (b) => b.complete === true);
      expect(build, f.reason).to.include({ buildrequestid: f.ids!.brid, results: 0 });
      expect((await client.build(build.buildid as number)).buildid).to.equal(build.buildid);
    }
  });
});
