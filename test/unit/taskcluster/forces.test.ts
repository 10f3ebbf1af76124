/**
 * ForceTranslator with the embedded store and the stand-in queue, through a
 * recording forwarder that keeps the bytes the queue received and can lose a
 * request or its answer on purpose. The proxy's clock and the queue's are
 * one controllable clock, so recovery can be run inside and past the
 * queue's 15-minute `created` window.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http';
import { createServer as createTcpServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import slugid from 'slugid';
import { parseConfig } from '../../../src/config/load.js';
import { createLogger } from '../../../src/logging/logger.js';
import type { Backend, Route, RoutingTable } from '../../../src/routing/table.js';
import { startStandinQueue, type StandinQueue } from '../../../src/standin-queue/index.js';
import { openStore } from '../../../src/store/open.js';
import { StranglerError } from '../../../src/errors.js';
import { MINTED_ID_BASE, MINTED_ID_LIMIT, type BuildRecord, type Store, type TaskRecord } from '../../../src/store/store.js';
import { CREATED_WINDOW_MS, ForceTranslator, type ForceOutcome } from '../../../src/taskcluster/forces.js';
import { QueueClient } from '../../../src/taskcluster/queue-client.js';
import type { QueueTaskDefinition } from '../../../src/taskcluster/queue-types.js';
import { LINK_TAGS } from '../../../src/taskcluster/template.js';
import { Upstream } from '../../../src/upstream/upstream.js';

const CLIENT_ID = 'proxy';
const TOKEN = 'forces-test-token-0cc175b9';
const ENV = { TASKCLUSTER_CLIENT_ID: CLIENT_ID, TASKCLUSTER_ACCESS_TOKEN: TOKEN };
const MINUTE = 60_000;

/** What the forwarder does with the next requests. */
type Mode = 'pass' | 'reset-before' | 'reset-after';

/**
 * A loopback HTTP forwarder in front of the stand-in: records every request's
 * method, path and exact body bytes, and in `reset-before` mode resets the
 * connection without forwarding, in `reset-after` forwards, lets the queue act,
 * and then resets instead of answering. The Host header goes through as sent,
 * so the queue checks the Hawk signature the proxy made for this address.
 */
class Forwarder {
  mode: Mode = 'pass';
  /** Run when a request has arrived, before it is forwarded. */
  onRequest: ((method: string, path: string) => Promise<void>) | undefined;
  readonly seen: Array<{ method: string; path: string; body: Buffer; mode: Mode }> = [];
  private readonly server: Server;
  url = '';

  constructor(private readonly targetPort: number) {
    this.server = createServer((req, res) => {
      void this.handle(req, res);
    });
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** Bodies of createTask calls for one taskId, as received. */
  putsOf(taskId: string): string[] {
    return this.seen.filter((r) => r.method === 'PUT' && r.path === `/api/queue/v1/task/${taskId}`).map((r) => r.body.toString('utf8'));
  }

  private async handle(req: IncomingMessage, res: import('node:http').ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    const mode = this.mode;
    this.seen.push({ method: req.method!, path: req.url!, body, mode });
    await this.onRequest?.(req.method!, req.url!);
    if (mode === 'reset-before') {
      req.socket.resetAndDestroy();
      return;
    }
    const forwarded = httpRequest({ host: '127.0.0.1', port: this.targetPort, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      const parts: Buffer[] = [];
      answer.on('data', (c: Buffer) => parts.push(c));
      answer.on('end', () => {
        if (mode === 'reset-after') {
          req.socket.resetAndDestroy();
          return;
        }
        res.writeHead(answer.statusCode!, answer.headers).end(Buffer.concat(parts));
      });
    });
    forwarded.on('error', () => req.socket.resetAndDestroy());
    forwarded.end(body);
  }
}

function routesYaml(rootUrl: string): string {
  return `backends:
  buildbot: { url: http://127.0.0.1:9, legacy: true }
  queue:
    kind: taskcluster
    rootUrl: ${rootUrl}
    responseTimeoutMs: 5000
    task:
      taskQueueId: { $if: 'builder.name == "forbidden"', then: proj-denied/linux, else: proj-ci/linux }
      payload: { command: [make, '\${revision}'], flavour: { $eval: 'properties' } }
routes:
  - jobType: linux64-*
    backend: queue
  - jobType: timed-*
    backend: queue
    task:
      deadline: { $fromNow: { $if: '"wait" in properties', then: '\${properties.wait}', else: '1 day' } }
`;
}

function tableFor(rootUrl: string): RoutingTable {
  return parseConfig(Buffer.from(routesYaml(rootUrl)), 'routes.yaml');
}

async function closedPort(): Promise<number> {
  const server = createTcpServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

const OPT = { name: 'linux64-opt', id: 3 };
const DEBUG = { name: 'linux64-debug', id: 4 };
const FORBIDDEN = { name: 'forbidden', id: 5 };

function isMintedRange(id: number): boolean {
  return Number.isSafeInteger(id) && id >= MINTED_ID_BASE && id <= MINTED_ID_LIMIT;
}

function accepted(outcome: ForceOutcome): Extract<ForceOutcome, { kind: 'accepted' }> {
  expect(outcome.kind, JSON.stringify(outcome)).to.equal('accepted');
  return outcome as Extract<ForceOutcome, { kind: 'accepted' }>;
}

describe('taskcluster/forces: ForceTranslator', function () {
  let dataDir: string;
  let store: Store;
  let queue: StandinQueue;
  let forwarder: Forwarder;
  let upstream: Upstream;
  let table: RoutingTable;
  let backend: Backend;
  let route: Route;
  let clock: number;
  let created: string[];
  let logLines: string[];
  let forces: ForceTranslator;

  function translator(): ForceTranslator {
    const logger = createLogger({ stream: new Writable({ write: (chunk, _enc, done) => (logLines.push(String(chunk)), done()) }) });
    return new ForceTranslator(store, new QueueClient(upstream, () => undefined, ENV), logger, (t) => created.push(t.backend), () => clock);
  }

  beforeEach(async () => {
    dataDir = mkdtempSync(path.join(tmpdir(), 'strangler-forces-'));
    store = await openStore(undefined, { dataDir });
    clock = Date.now();
    queue = await startStandinQueue({
      clients: {
        [CLIENT_ID]: {
          accessToken: TOKEN,
          scopes: ['queue:create-task:project:none', 'queue:scheduler-id:-', 'queue:create-task:lowest:proj-ci/*', 'queue:cancel-task:*', 'queue:get-task:*', 'queue:status:*'],
        },
      },
      worker: false,
      clock: () => clock,
    });
    forwarder = new Forwarder(queue.port);
    await forwarder.start();
    upstream = new Upstream();
    table = tableFor(forwarder.url);
    backend = table.backends.get('queue')!;
    route = table.routes[0]!;
    created = [];
    logLines = [];
    forces = translator();
  });

  afterEach(async () => {
    await upstream.close();
    await forwarder.close();
    await queue.close();
    await store.close();
    rmSync(dataDir, { recursive: true, force: true });
    expect(logLines.join('')).to.not.contain(TOKEN);
  });

  describe('force', () => {
    it('creates one task per builder, answers ids from the minted range, and stores exactly the bytes the queue received', async () => {
      const outcome = accepted(
        await forces.force({ backend, route, builders: [OPT, DEBUG], params: { builderNames: ['linux64-opt', 'linux64-debug'], reason: 'nightly', revision: 'abc123', username: 'dev@example.com', flavour: 'asan' } }),
      );
      expect(isMintedRange(outcome.bsid)).to.equal(true);
      expect([...outcome.brids.keys()]).to.deep.equal([3, 4]);
      const brids = [...outcome.brids.values()];
      expect(new Set(brids).size).to.equal(2);
      for (const brid of brids) expect(isMintedRange(brid), String(brid)).to.equal(true);

      const rows = await store.tasksOfBuildset(outcome.bsid);
      expect(rows.map((r) => [r.builderName, r.builderid, r.buildrequestId, r.state])).to.have.deep.members([
        ['linux64-opt', 3, outcome.brids.get(3), 'created'],
        ['linux64-debug', 4, outcome.brids.get(4), 'created'],
      ]);
      expect(queue.tasks().map((t) => t.taskId)).to.have.members(rows.map((r) => r.taskId));
      for (const row of rows) {
        expect(forwarder.putsOf(row.taskId)).to.deep.equal([row.definition]);
        expect(row.status, 'the createTask answer is kept').to.not.equal(null);
        const task = queue.tasks().find((t) => t.taskId === row.taskId)!.task;
        expect(task.tags).to.include({ [LINK_TAGS.buildset]: String(outcome.bsid), [LINK_TAGS.buildrequest]: String(row.buildrequestId), [LINK_TAGS.builder]: row.builderName, [LINK_TAGS.builderid]: String(row.builderid) });
        expect(task.payload).to.deep.equal({ command: ['make', 'abc123'], flavour: { flavour: 'asan' } });
        expect(task.metadata).to.include({ description: 'nightly', owner: 'dev@example.com' });
      }
      expect(created).to.deep.equal(['queue', 'queue']);

      const buildset = await store.buildset(outcome.bsid);
      expect(buildset).to.include({ bsid: outcome.bsid, backend: 'queue', reason: 'nightly', rebuildOf: null, submittedAt: clock });
      expect(JSON.parse(buildset!.properties)).to.deep.equal({ flavour: ['asan', 'Force Build Form'], reason: ['nightly', 'Force Build Form'], owner: ['dev@example.com', 'Force Build Form'] });
      expect(buildset!.sourcestamps).to.deep.equal([{ revision: 'abc123', branch: null, repository: '', project: '', codebase: '' }]);
    });

    it('after a 5xx before creating, sends the identical body again and makes one task', async () => {
      queue.faults.set({ failCreatesBefore: 1 });
      const outcome = accepted(await forces.force({ backend, route, builders: [OPT], params: { revision: 'r1' } }));
      const [row] = await store.tasksOfBuildset(outcome.bsid);
      expect(row!.state).to.equal('created');
      expect(forwarder.putsOf(row!.taskId)).to.deep.equal([row!.definition, row!.definition]);
      expect(queue.createCalls().map((c) => [c.status, c.created])).to.deep.equal([
        [500, false],
        [200, true],
      ]);
      expect(queue.tasks()).to.have.length(1);
    });

    it('after a 5xx from a queue that did create, sends the identical body again, which the queue answers as the same task', async () => {
      queue.faults.set({ failCreatesAfter: 1 });
      const outcome = accepted(await forces.force({ backend, route, builders: [OPT], params: {} }));
      const [row] = await store.tasksOfBuildset(outcome.bsid);
      expect(forwarder.putsOf(row!.taskId)).to.deep.equal([row!.definition, row!.definition]);
      expect(queue.createCalls().map((c) => [c.status, c.created])).to.deep.equal([
        [500, true],
        [200, false],
      ]);
      expect(queue.tasks().map((t) => t.taskId)).to.deep.equal([row!.taskId]);
    });

    it('after a lost answer, sends the identical body again and makes one task', async () => {
      queue.faults.set({ dropCreatesAfter: 1 });
      const outcome = accepted(await forces.force({ backend, route, builders: [OPT], params: {} }));
      const [row] = await store.tasksOfBuildset(outcome.bsid);
      expect(row!.state).to.equal('created');
      expect(forwarder.putsOf(row!.taskId)).to.deep.equal([row!.definition, row!.definition]);
      expect(queue.tasks()).to.have.length(1);
    });

    it('a 4xx marks the task rejected and refuses the force with the queue\'s reason', async () => {
      const outcome = await forces.force({ backend, route, builders: [FORBIDDEN], params: {} });
      expect(outcome.kind).to.equal('refused');
      if (outcome.kind !== 'refused') return;
      expect(outcome.status).to.equal(403);
      expect(outcome.message).to.match(/^the queue refused: the proxy's credentials lack a scope \(InsufficientScopes\): /);
      expect(outcome.message).to.contain('queue:create-task:lowest:proj-denied/linux');
      const [row] = await rowsOfState('rejected');
      expect(row!.state).to.equal('rejected');
      expect(row!.stateReason).to.equal(outcome.message);
      expect(forwarder.putsOf(row!.taskId)).to.have.length(1);
      expect(queue.tasks()).to.have.length(0);
      expect(created).to.deep.equal([]);
    });

    it('an unreachable queue marks the task abandoned and says so, after trying three times', async () => {
      const closed = tableFor(`http://127.0.0.1:${await closedPort()}`);
      const outcome = await forces.force({ backend: closed.backends.get('queue')!, route: closed.routes[0], builders: [OPT], params: {} });
      expect(outcome.kind).to.equal('unreachable');
      expect(outcome.kind === 'unreachable' && outcome.message).to.match(/^the queue at http:\/\/127\.0\.0\.1:\d+ could not be reached: connection refused \(refused\)$/);
      const [row] = await rowsOfState('abandoned');
      expect(row!.stateReason).to.match(/^queue unreachable: /);
      expect(await store.pendingTasks(10)).to.deep.equal([]);
    });

    it('a queue that fails every time and has no such task: abandoned, and the force failed', async () => {
      queue.faults.set({ failCreatesBefore: 3 });
      const outcome = await forces.force({ backend, route, builders: [OPT], params: {} });
      expect(outcome.kind).to.equal('failed');
      expect(outcome.kind === 'failed' && outcome.message).to.match(/^the queue failed to create the task: 500 /);
      const [row] = await rowsOfState('abandoned');
      expect(forwarder.putsOf(row!.taskId)).to.deep.equal([row!.definition, row!.definition, row!.definition]);
      expect(forwarder.seen.filter((r) => r.method === 'GET').map((r) => r.path)).to.deep.equal([`/api/queue/v1/task/${row!.taskId}`]);
      expect(queue.tasks()).to.have.length(0);
    });

    it('a multi-builder force with one builder refused calls the others off: created siblings are cancelled and abandoned', async () => {
      const outcome = await forces.force({ backend, route, builders: [OPT, FORBIDDEN, DEBUG], params: {} });
      expect(outcome.kind).to.equal('refused');
      expect(outcome.kind === 'refused' && outcome.status).to.equal(403);
      const rows = [...(await rowsOfState('abandoned')), ...(await rowsOfState('rejected'))];
      expect(rows.map((r) => [r.builderName, r.state])).to.have.deep.members([
        ['linux64-opt', 'abandoned'],
        ['linux64-debug', 'abandoned'],
        ['forbidden', 'rejected'],
      ]);
      for (const row of rows.filter((r) => r.state === 'abandoned')) {
        expect(row.stateReason).to.equal('another builder of its buildset was refused; cancelled');
        const status = queue.tasks().find((t) => t.taskId === row.taskId)!.status;
        expect(status.runs.at(-1)).to.include({ state: 'exception', reasonResolved: 'canceled' });
      }
      expect(queue.tasks()).to.have.length(2);
    });

    it('a template that does not render for this force refuses it before anything is stored or sent', async () => {
      const timed = table.routes[1]!;
      const outcome = await forces.force({ backend, route: timed, builders: [{ name: 'timed-job', id: 9 }], params: { wait: '6 days' } });
      expect(outcome).to.deep.equal({ kind: 'refused', status: 400, message: 'the task template for timed-job did not render: deadline must be within 5 days of the time the task is created (the queue refuses later ones)' });
      expect(await store.tasksOfBuilder('timed-job', { limit: 10, offset: 0, newestFirst: true })).to.deep.equal([]);
      expect(forwarder.seen).to.deep.equal([]);
      const ok = accepted(await forces.force({ backend, route: timed, builders: [{ name: 'timed-job', id: 9 }], params: { wait: '3 hours' } }));
      const [row] = await store.tasksOfBuildset(ok.bsid);
      expect((JSON.parse(row!.definition) as QueueTaskDefinition).deadline).to.equal(new Date(clock + 3 * 3600_000).toISOString());
    });

    it('a backend without any template refuses the force', async () => {
      const bare = parseConfig(Buffer.from(`backends:\n  buildbot: { url: http://127.0.0.1:9, legacy: true }\n  queue: { kind: taskcluster, rootUrl: '${forwarder.url}' }\n`), 'routes.yaml');
      const outcome = await forces.force({ backend: bare.backends.get('queue')!, route: undefined, builders: [OPT], params: {} });
      expect(outcome).to.deep.equal({ kind: 'refused', status: 400, message: 'no task template for backend queue' });
    });

    it('answers with ids when neither a create nor the check settles it, and leaves the task pending for recovery', async () => {
      forwarder.mode = 'reset-before';
      const outcome = accepted(await forces.force({ backend, route, builders: [OPT], params: {} }));
      const [row] = await store.tasksOfBuildset(outcome.bsid);
      expect(row!.state).to.equal('pending');
      expect(forwarder.putsOf(row!.taskId)).to.deep.equal([row!.definition, row!.definition, row!.definition]);
      expect(logLines.join('')).to.contain('createTask unsettled; recovery will finish it');
      expect(queue.tasks()).to.have.length(0);
    });

    it('answers with ids when the store goes away right after the queue created the task, and recovery marks it created without a second one', async () => {
      const setTaskState = store.setTaskState.bind(store);
      let storeAway = false;
      store.setTaskState = async (...args) => {
        if (storeAway) throw new StranglerError('STORE_UNAVAILABLE', 'store: connection lost');
        return setTaskState(...args);
      };
      forwarder.onRequest = async (method) => {
        if (method === 'PUT') storeAway = true;
      };
      const outcome = accepted(await forces.force({ backend, route, builders: [OPT], params: {} }));
      forwarder.onRequest = undefined;
      storeAway = false;
      const [row] = await store.tasksOfBuildset(outcome.bsid);
      expect(row!.state).to.equal('pending');
      expect(queue.tasks().map((t) => t.taskId)).to.deep.equal([row!.taskId]);
      expect(logLines.join('')).to.contain('a created task could not be marked created; recovery will');
      const calls = queue.createCalls().length;
      expect(await translator().recover(table.backends)).to.equal(1);
      expect((await store.taskById(row!.taskId))!.state).to.equal('created');
      expect(queue.tasks()).to.have.length(1);
      expect(queue.createCalls().length - calls).to.be.at.most(1);
    });
  });

  describe('rebuild', () => {
    it('makes a new buildset and task from the stored definition, with fresh dates and the new ids in its tags', async () => {
      const first = accepted(await forces.force({ backend, route, builders: [OPT], params: { revision: 'r1', reason: 'first' } }));
      const [original] = await store.tasksOfBuildset(first.bsid);
      const build = await store.buildForRun(original!.buildrequestId, 0, OPT.name, 1);
      clock += 30 * MINUTE;
      const outcome = accepted(await forces.rebuild(backend, original!, JSON.parse(original!.definition) as QueueTaskDefinition, await store.buildset(first.bsid), build.buildid));
      expect(outcome.bsid).to.be.greaterThan(first.bsid);
      const [row] = await store.tasksOfBuildset(outcome.bsid);
      expect(row!.taskId).to.not.equal(original!.taskId);
      expect([...outcome.brids]).to.deep.equal([[3, row!.buildrequestId]]);
      const before = JSON.parse(original!.definition) as QueueTaskDefinition;
      const after = JSON.parse(row!.definition) as QueueTaskDefinition;
      expect(after.created).to.equal(new Date(clock).toISOString());
      expect(Date.parse(after.deadline) - Date.parse(before.deadline)).to.equal(30 * MINUTE);
      expect(after.payload).to.deep.equal(before.payload);
      expect(after.tags).to.include({ [LINK_TAGS.buildset]: String(outcome.bsid), [LINK_TAGS.buildrequest]: String(row!.buildrequestId), [LINK_TAGS.builder]: OPT.name });
      expect(forwarder.putsOf(row!.taskId)).to.deep.equal([row!.definition]);
      expect(await store.buildset(outcome.bsid)).to.include({ reason: 'rebuild', rebuildOf: build.buildid });
    });
  });

  describe('recover', () => {
    const backendsOf = () => table.backends;

    async function pendingForce(mode: Mode): Promise<TaskRecord> {
      forwarder.mode = mode;
      const outcome = accepted(await forces.force({ backend, route, builders: [OPT], params: { revision: 'r' } }));
      forwarder.mode = 'pass';
      const [row] = await store.tasksOfBuildset(outcome.bsid);
      expect(row!.state).to.equal('pending');
      return row!;
    }

    it('within the window, sends the stored definition again, byte for byte, and makes one task', async () => {
      const row = await pendingForce('reset-before');
      clock += 13 * MINUTE;
      const restarted = translator();
      expect(await restarted.recover(backendsOf())).to.equal(1);
      expect((await store.taskById(row.taskId))!.state).to.equal('created');
      const puts = forwarder.putsOf(row.taskId);
      expect(puts).to.have.length(4);
      expect(new Set(puts)).to.deep.equal(new Set([row.definition]));
      expect(queue.tasks().map((t) => t.taskId)).to.deep.equal([row.taskId]);
      expect(await store.pendingTasks(10)).to.deep.equal([]);
    });

    it('past the window, with the task already on the queue: marks it created without a second createTask', async () => {
      const row = await pendingForce('reset-after');
      expect(queue.tasks().map((t) => t.taskId)).to.deep.equal([row.taskId]);
      const callsBefore = queue.createCalls().length;
      const seenBefore = forwarder.seen.length;
      clock += CREATED_WINDOW_MS + 5 * MINUTE;
      expect(await translator().recover(backendsOf())).to.equal(1);
      expect((await store.taskById(row.taskId))!.state).to.equal('created');
      expect(queue.createCalls()).to.have.length(callsBefore);
      expect(forwarder.seen.slice(seenBefore).map((r) => `${r.method} ${r.path}`)).to.deep.equal([`GET /api/queue/v1/task/${row.taskId}`]);
      expect(queue.tasks()).to.have.length(1);
    });

    it('past the window, with no task on the queue: creates it under the same taskId with fresh dates, stored before it is sent', async () => {
      const row = await pendingForce('reset-before');
      const old = JSON.parse(row.definition) as QueueTaskDefinition;
      clock += 20 * MINUTE;
      const storedWhenSent: string[] = [];
      forwarder.onRequest = async (method) => {
        if (method === 'PUT') storedWhenSent.push((await store.taskById(row.taskId))!.definition);
      };
      expect(await translator().recover(backendsOf())).to.equal(1);
      expect(storedWhenSent).to.deep.equal([forwarder.putsOf(row.taskId).at(-1)]);
      const after = (await store.taskById(row.taskId))!;
      expect(after.state).to.equal('created');
      const fresh = JSON.parse(after.definition) as QueueTaskDefinition;
      expect(fresh.created).to.equal(new Date(clock).toISOString());
      expect(Date.parse(fresh.deadline) - Date.parse(old.deadline)).to.equal(20 * MINUTE);
      expect({ ...fresh, created: old.created, deadline: old.deadline }).to.deep.equal(old);
      expect(forwarder.putsOf(row.taskId).at(-1)).to.equal(after.definition);
      expect(queue.tasks().map((t) => [t.taskId, t.task.created])).to.deep.equal([[row.taskId, fresh.created]]);
    });

    it('leaves a task pending while the queue stays unreachable, and for a backend no longer configured', async () => {
      const row = await pendingForce('reset-before');
      forwarder.mode = 'reset-before';
      clock += 20 * MINUTE;
      expect(await translator().recover(backendsOf())).to.equal(0);
      expect((await store.taskById(row.taskId))!.state).to.equal('pending');
      forwarder.mode = 'pass';
      expect(await translator().recover(new Map())).to.equal(0);
      expect((await store.taskById(row.taskId))!.state).to.equal('pending');
      expect(queue.tasks()).to.have.length(0);
    });

    it('past the window, a check the queue refuses (401) settles nothing: the task stays pending and nothing is created', async () => {
      const row = await pendingForce('reset-before');
      clock += 20 * MINUTE;
      const callsBefore = queue.createCalls().length;
      const wrongToken = new ForceTranslator(store, new QueueClient(upstream, () => undefined, { TASKCLUSTER_CLIENT_ID: CLIENT_ID, TASKCLUSTER_ACCESS_TOKEN: 'not-the-token' }), createLogger({ stream: new Writable({ write: (_c, _e, done) => done() }) }), () => undefined, () => clock);
      expect(await wrongToken.recover(table.backends)).to.equal(0);
      expect((await store.taskById(row.taskId))!.state).to.equal('pending');
      expect(queue.createCalls()).to.have.length(callsBefore);
      expect(await translator().recover(table.backends)).to.equal(1);
      expect(queue.tasks().map((t) => t.taskId)).to.deep.equal([row.taskId]);
    });
  });

  /** Stored tasks in a state (all on the backend named queue), oldest first. */
  async function rowsOfState(state: TaskRecord['state']): Promise<TaskRecord[]> {
    return (await store.recentTasks('queue', 100)).filter((t) => t.state === state).reverse();
  }
});

describe('taskcluster/forces: property of the id mapping', function () {
  this.timeout(180_000);
  let queue: StandinQueue;
  let upstream: Upstream;
  let table: RoutingTable;

  before(async () => {
    queue = await startStandinQueue({ clients: { [CLIENT_ID]: { accessToken: TOKEN, scopes: ['*'] } }, worker: false });
    upstream = new Upstream();
    table = tableFor(queue.rootUrl);
  });
  after(async () => {
    await upstream.close();
    await queue.close();
  });

  const BUILDERS = [OPT, DEBUG, { name: 'linux64-asan', id: 6 }];
  type Command =
    | { kind: 'force'; builders: number[] }
    | { kind: 'rebuild'; pick: number }
    | { kind: 'run'; pick: number; runId: number; floor: number };
  const command: fc.Arbitrary<Command> = fc.oneof(
    fc.record({ kind: fc.constant('force' as const), builders: fc.uniqueArray(fc.integer({ min: 0, max: 2 }), { minLength: 1, maxLength: 3 }) }),
    fc.record({ kind: fc.constant('rebuild' as const), pick: fc.nat() }),
    fc.record({ kind: fc.constant('run' as const), pick: fc.nat(), runId: fc.integer({ min: 0, max: 3 }), floor: fc.integer({ min: 1, max: 40 }) }),
  );

  it('any sequence of forces, rebuilds and runs gives unique ids per kind in [MINTED_ID_BASE, 2^53), the same after reopening the store, and build numbers unique per builder and at least the floor', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(command, { minLength: 1, maxLength: 10 }), async (commands) => {
        const dataDir = mkdtempSync(path.join(tmpdir(), 'strangler-forces-prop-'));
        let store = await openStore(undefined, { dataDir });
        try {
          const forces = new ForceTranslator(store, new QueueClient(upstream, () => undefined, ENV), createLogger({ stream: new Writable({ write: (_c, _e, done) => done() }) }));
          const backend = table.backends.get('queue')!;
          const bsids: number[] = [];
          const tasks: TaskRecord[] = [];
          const builds: Array<{ build: BuildRecord; floor: number }> = [];
          for (const c of commands) {
            if (c.kind === 'force') {
              const outcome = accepted(await forces.force({ backend, route: table.routes[0], builders: c.builders.map((i) => BUILDERS[i]!), params: { revision: slugid.nice() } }));
              bsids.push(outcome.bsid);
              tasks.push(...(await store.tasksOfBuildset(outcome.bsid)));
            } else if (c.kind === 'rebuild') {
              if (builds.length === 0) continue;
              const { build } = builds[c.pick % builds.length]!;
              const original = tasks.find((t) => t.buildrequestId === build.buildrequestId)!;
              const outcome = accepted(await forces.rebuild(backend, original, JSON.parse(original.definition) as QueueTaskDefinition, await store.buildset(original.buildsetId), build.buildid));
              bsids.push(outcome.bsid);
              tasks.push(...(await store.tasksOfBuildset(outcome.bsid)));
            } else {
              if (tasks.length === 0) continue;
              const task = tasks[c.pick % tasks.length]!;
              const build = await store.buildForRun(task.buildrequestId, c.runId, task.builderName, c.floor);
              const known = builds.find((b) => b.build.buildrequestId === task.buildrequestId && b.build.runId === c.runId);
              if (known !== undefined) expect(build, 'one run, one build').to.deep.equal(known.build);
              else builds.push({ build, floor: c.floor });
            }
          }

          const brids = tasks.map((t) => t.buildrequestId);
          const buildids = builds.map((b) => b.build.buildid);
          for (const ids of [bsids, brids, buildids]) {
            expect(new Set(ids).size, 'unique').to.equal(ids.length);
            for (const id of ids) expect(isMintedRange(id), String(id)).to.equal(true);
          }
          expect(new Set(tasks.map((t) => t.taskId)).size).to.equal(tasks.length);
          for (const name of BUILDERS.map((b) => b.name)) {
            const numbers = builds.filter((b) => b.build.builderName === name).map((b) => b.build.number);
            expect(new Set(numbers).size, `numbers of ${name}`).to.equal(numbers.length);
          }
          for (const { build, floor } of builds) expect(build.number).to.be.at.least(floor);
          for (const task of tasks) {
            const onQueue = queue.tasks().find((t) => t.taskId === task.taskId);
            expect(onQueue?.task.tags, 'the task links back to its ids').to.include({ [LINK_TAGS.buildrequest]: String(task.buildrequestId), [LINK_TAGS.buildset]: String(task.buildsetId) });
          }

          await store.close();
          store = await openStore(undefined, { dataDir });
          for (const bsid of bsids) expect((await store.buildset(bsid))?.bsid).to.equal(bsid);
          for (const task of tasks) {
            const again = await store.task(task.buildrequestId);
            expect(again && [again.taskId, again.buildsetId, again.builderName, again.definition]).to.deep.equal([task.taskId, task.buildsetId, task.builderName, task.definition]);
          }
          for (const { build } of builds) expect(await store.build(build.buildid)).to.deep.equal(build);
          for (const [kind, ids] of [['buildset', bsids], ['buildrequest', brids], ['build', buildids]] as const) {
            const [next] = await store.allocateIds(kind, 1);
            expect(next, `a ${kind} id after reopening is new`).to.be.greaterThan(Math.max(MINTED_ID_BASE - 1, ...ids));
          }
        } finally {
          await store.close();
          rmSync(dataDir, { recursive: true, force: true });
        }
      }),
      { numRuns: 25 },
    );
  });
});
