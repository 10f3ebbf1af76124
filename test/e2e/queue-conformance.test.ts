/**
 * Queue conformance: the same checks, driven by the official npm
 * `taskcluster-client` 87.1.3, against the stand-in queue (default, in CI) or,
 * unchanged, against a real Taskcluster queue when TASKCLUSTER_ROOT_URL,
 * TASKCLUSTER_CLIENT_ID and TASKCLUSTER_ACCESS_TOKEN are set (with
 * TC_NARROW_CLIENT_ID / TC_NARROW_ACCESS_TOKEN for the 403 checks: a client
 * without queue:create-task or queue:cancel-task scopes).
 *
 * The client declares Node 22.17+ but loads and runs on Node 20 (checked
 * 2026-12-04 on v20.20.2), so the suite runs on both; should an import ever
 * fail, it skips with that reason.
 *
 * Artifacts and retries are checked on both sides: the suite plays the worker
 * itself through claimWork, createArtifact (reference and error artifacts: the
 * loopback real queue has no S3) and reportCompleted/Failed/Exception, which
 * the stand-in implements too. The stand-in's built-in worker and its
 * anonymous public-artifact reads are checked on the stand-in only (a real
 * queue has no worker here, and its anonymous scopes are the deployment's).
 *
 * What the real queue answered (taskcluster/taskcluster v106 at 9d59eb59f6, run by
 * ../shared/taskcluster-queue/up.sh on 127.0.0.1, 2026-12-04, Node 20.20.2: 21
 * passing, 5 skipped as stand-in-only; against the stand-in 26 passing on Node 20
 * and 24):
 * - createTask → 200 `{status}`: state pending, one run {runId 0, state pending,
 *   reasonCreated scheduled, scheduled}, retriesLeft 5, schedulerId "-",
 *   projectId "none", taskGroupId = taskId, priority "lowest", expires =
 *   deadline + 1 year, provisionerId/workerType split from taskQueueId.
 * - identical resend → 200 and the same status; changed definition → 409
 *   RequestConflict "taskId `…` already used by another task.\nThis could be the
 *   result of faulty idempotency!".
 * - created 20 min in the past → 400 InputError "`created` cannot be in the past
 *   (max 15min drift)"; 20 min ahead → "… in the future …"; deadline in the
 *   past → "`deadline` cannot be in the past"; deadline 6 days ahead →
 *   "`deadline` cannot be more than 5 days into the future"; expires before
 *   deadline → "`expires` cannot be before `deadline`".
 * - a body failing the schema (missing metadata, metadata.source "data:…",
 *   a 4097-character tag) → 400 InputValidationError "Schema Validation Failed!"
 *   (not InputError).
 * - narrow client → 403 InsufficientScopes "Client ID static/harness/narrow does
 *   not have sufficient scopes and is missing the following scopes:" followed by
 *   the unsatisfied expression, which names queue:create-task:project:none and
 *   queue:scheduler-id:-; no credentials → 403 "This request requires
 *   Taskcluster credentials that satisfy the following scope expression:".
 * - wrong accessToken → 401 AuthenticationFailed "Unauthorized: Bad mac";
 *   unknown clientId → 401 AuthenticationFailed.
 * - errors are `{code, message, requestInfo: {method, params, payload, time}}`;
 *   the message ends with "* errorCode:  <code>" and "* statusCode: <status>".
 * - cancel of a pending task → exception/canceled (run 0 keeps reasonCreated
 *   scheduled); again → the same status; rerun → run 1 pending, reasonCreated
 *   rerun, retriesLeft 5; rerun while pending → unchanged; cancel of an
 *   unscheduled task (dependency unresolved) → one run exception/canceled with
 *   reasonCreated "exception". Unknown taskId → 404 ResourceNotFound.
 * - past the deadline: cancel and rerun → 409 RequestConflict "can't be canceled
 *   past its deadline" / "can't be rescheduled past its deadline"; the deadline
 *   resolver makes it exception/deadline-exceeded about a minute later (its
 *   deadlineDelay); the stand-in does it at once.
 * - listTaskGroup with limit 2 over 3 tasks → 2 tasks and a continuationToken,
 *   then 1 and none; a second schedulerId in the group → 409 RequestConflict.
 * - a malformed taskId → 400 InvalidRequestArguments.
 * - claimWork → `{tasks: [{status, runId, workerGroup, workerId, takenUntil, task,
 *   credentials}]}`, the run running with workerGroup/workerId/takenUntil/started;
 *   takenUntil in the claim reads "…+00:00" (Postgres form), in the status "…Z";
 *   credentials are temporary ones with a certificate (the stand-in's have none).
 * - createArtifact reference/error → 200 `{storageType}`; getArtifact → 303 with
 *   `location` = the url and x-taskcluster-artifact-storage-type: reference, body
 *   `{storageType, url}`; error artifact → 424 `{reason, message}`; unknown name →
 *   404; an unsigned anonymous request → 403 (the harness has no anonymous role).
 * - reportCompleted → completed, the run keeping takenUntil; repeated → same status;
 *   reportFailed then → 409 "Run 0 of task `…` is not running or failed.";
 *   createArtifact after completion → 409.
 * - reportException intermittent-task → new run reasonCreated "task-retry";
 *   worker-shutdown → "retry"; each takes one from retriesLeft; with retries 0 or
 *   for malformed-payload no new run.
 * - cancel of a running run keeps workerGroup/workerId; the worker's report is 409.
 * - messages the probe compared line by line and the stand-in now copies: unknown
 *   client "Client with clientId '…' not found"; schema errors "Rejecting Schema:
 *   <rootUrl>/schemas/queue/v1/create-task-request.json#" with "data/metadata …"
 *   paths; missing dependencies "`task.dependencies` references non-existing
 *   tasks: …"; run keys in the order runId, state, reasonCreated, reasonResolved,
 *   workerGroup, workerId, takenUntil, scheduled, started, resolved.
 */
import { expect } from 'chai';
import slugid from 'slugid';
import type { StandinQueue } from '../../src/standin-queue/index.js';

// The client ships no types; the suite uses it through this narrow view.
interface TcError extends Error {
  statusCode?: number;
  code?: string;
  body?: { code?: string; message?: string; requestInfo?: Record<string, unknown> };
}
type Json = Record<string, any>;
interface QueueClient {
  ping(): Promise<Json>;
  createTask(taskId: string, def: Json): Promise<Json>;
  task(taskId: string): Promise<Json>;
  status(taskId: string): Promise<Json>;
  cancelTask(taskId: string): Promise<Json>;
  rerunTask(taskId: string): Promise<Json>;
  listTaskGroup(taskGroupId: string, query?: Json): Promise<Json>;
  getArtifact(taskId: string, runId: number, name: string): Promise<Json>;
  getLatestArtifact(taskId: string, name: string): Promise<Json>;
  listArtifacts(taskId: string, runId: number): Promise<Json>;
  claimWork(taskQueueId: string, payload: Json): Promise<Json>;
  reportCompleted(taskId: string, runId: number): Promise<Json>;
  reportFailed(taskId: string, runId: number): Promise<Json>;
  reportException(taskId: string, runId: number, payload: Json): Promise<Json>;
  createArtifact(taskId: string, runId: number, name: string, payload: Json): Promise<Json>;
  buildUrl(method: unknown, ...args: unknown[]): string;
  buildSignedUrl(method: unknown, ...args: unknown[]): string;
}
interface TcModule {
  Queue: new (options: Json) => QueueClient;
  fromNowJSON(offset: string, reference?: Date): string;
}

const env = process.env;
const REAL = Boolean(env.TASKCLUSTER_ROOT_URL && env.TASKCLUSTER_CLIENT_ID && env.TASKCLUSTER_ACCESS_TOKEN);
const TARGET = REAL ? `the real queue at ${env.TASKCLUSTER_ROOT_URL}` : 'the stand-in queue';

// A task queue no worker serves, so tasks stay pending on both sides.
const IDLE_QUEUE = 'proj-conformance/idle';
// Served by the stand-in's built-in worker.
const WORKER_QUEUE = 'proj-conformance/worker';

const STANDIN_ROOT = { clientId: 'conformance/root', accessToken: 'root-token-for-tests-only' };
const STANDIN_NARROW = { clientId: 'conformance/narrow', accessToken: 'narrow-token-for-tests-only' };

async function rejection(p: Promise<unknown>): Promise<TcError> {
  try {
    await p;
  } catch (err) {
    return err as TcError;
  }
  throw new Error('expected the call to be refused, but it succeeded');
}

function expectQueueError(err: TcError, status: number, code: string): void {
  expect(err.statusCode, err.message).to.equal(status);
  expect(err.code).to.equal(code);
  expect(err.body).to.include.keys('code', 'message', 'requestInfo');
  expect(err.body?.code).to.equal(code);
  expect(err.body?.requestInfo).to.include.keys('method', 'params', 'payload', 'time');
  expect(err.body?.message).to.contain(`* errorCode:  ${code}`).and.to.contain(`* statusCode: ${status}`);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe(`queue conformance (taskcluster-client 87.1.3) against ${TARGET}`, function () {
  this.timeout(REAL ? 120_000 : 20_000);
  let tc: TcModule;
  let standin: StandinQueue | undefined;
  let rootUrl: string;
  let queue: QueueClient;
  let narrow: QueueClient | undefined;
  let anonymous: QueueClient;
  let clientOpts: Json;

  before(async function () {
    try {
      // Imported by a variable name: the package ships no type declarations, and this file types what it uses.
      const clientPackage = 'taskcluster-client';
      tc = ((await import(clientPackage)) as { default: TcModule }).default;
    } catch (err) {
      // For the day a release stops loading on Node 20 (it declares 22.17+): skip, saying why.
      const reason = `taskcluster-client does not load on Node ${process.version}: ${(err as Error).message}`;
      if (this.test) this.test.title = `${this.test.title} (skipped: ${reason})`;
      process.stderr.write(`queue conformance skipped: ${reason}\n`);
      this.skip();
    }
    if (REAL) {
      rootUrl = env.TASKCLUSTER_ROOT_URL as string;
      clientOpts = { rootUrl, credentials: { clientId: env.TASKCLUSTER_CLIENT_ID, accessToken: env.TASKCLUSTER_ACCESS_TOKEN } };
      if (env.TC_NARROW_CLIENT_ID && env.TC_NARROW_ACCESS_TOKEN) {
        narrow = new tc.Queue({ rootUrl, retries: 0, credentials: { clientId: env.TC_NARROW_CLIENT_ID, accessToken: env.TC_NARROW_ACCESS_TOKEN } });
      }
    } else {
      const { startStandinQueue } = await import('../../src/standin-queue/index.js');
      standin = await startStandinQueue({
        clients: {
          [STANDIN_ROOT.clientId]: { accessToken: STANDIN_ROOT.accessToken, scopes: ['*'] },
          // The same scopes as the harness's narrow client.
          [STANDIN_NARROW.clientId]: { accessToken: STANDIN_NARROW.accessToken, scopes: ['queue:get-artifact:public/*', 'queue:list-task-group:*'] },
        },
        worker: { taskQueueIds: [WORKER_QUEUE], startDelayMs: 20, runMs: 100, failureRate: 0, seed: 1 },
      });
      rootUrl = standin.rootUrl;
      clientOpts = { rootUrl, credentials: STANDIN_ROOT };
      narrow = new tc.Queue({ rootUrl, retries: 0, credentials: STANDIN_NARROW });
    }
    // retries: 0 so that a 5xx shows as itself instead of five retries.
    queue = new tc.Queue({ ...clientOpts, retries: 0 });
    anonymous = new tc.Queue({ rootUrl, retries: 0, credentials: {} });
  });

  after(async () => {
    await standin?.close();
  });

  function definition(overrides: Json = {}): Json {
    return {
      taskQueueId: IDLE_QUEUE,
      created: tc.fromNowJSON('0 seconds'),
      deadline: tc.fromNowJSON('1 hour'),
      payload: { command: ['echo', 'conformance'] },
      metadata: { name: 'conformance', description: 'queue conformance suite', owner: 'conformance@example.com', source: 'https://example.com/conformance' },
      ...overrides,
    };
  }

  it('answers ping', async () => {
    const res = await queue.ping();
    expect(res.alive).to.equal(true);
  });

  describe('createTask', () => {
    it('answers the status of a new pending task, with the queue defaults', async () => {
      const taskId = slugid.nice();
      const def = definition();
      const { status } = await queue.createTask(taskId, def);
      expect(status).to.include({
        taskId,
        taskQueueId: IDLE_QUEUE,
        provisionerId: 'proj-conformance',
        workerType: 'idle',
        schedulerId: '-',
        projectId: 'none',
        taskGroupId: taskId,
        priority: 'lowest',
        retriesLeft: 5,
        state: 'pending',
      });
      expect(status.runs).to.have.length(1);
      expect(status.runs[0]).to.include({ runId: 0, state: 'pending', reasonCreated: 'scheduled' });
      expect(status.runs[0]).to.have.property('scheduled').that.is.a('string');
      const expires = new Date(def.deadline);
      expires.setFullYear(expires.getFullYear() + 1);
      expect(status.expires).to.equal(expires.toJSON());

      const task = await queue.task(taskId);
      expect(task).to.deep.include({
        taskQueueId: IDLE_QUEUE,
        provisionerId: 'proj-conformance',
        workerType: 'idle',
        dependencies: [],
        requires: 'all-completed',
        routes: [],
        retries: 5,
        scopes: [],
        tags: {},
        extra: {},
        created: def.created,
        deadline: def.deadline,
      });
    });

    it('answers the same status to an identical resend, and 409 RequestConflict to a changed one', async () => {
      const taskId = slugid.nice();
      const def = definition({ tags: { buildrequestid: '17' } });
      const first = await queue.createTask(taskId, def);
      const again = await queue.createTask(taskId, def);
      expect(again).to.deep.equal(first);
      const err = await rejection(queue.createTask(taskId, { ...def, tags: { buildrequestid: '18' } }));
      expectQueueError(err, 409, 'RequestConflict');
      expect(err.body?.message).to.contain(`taskId \`${taskId}\` already used by another task`);
    });

    it('refuses `created` outside ±15 minutes with 400 InputError', async () => {
      const past = await rejection(queue.createTask(slugid.nice(), definition({ created: tc.fromNowJSON('-20 minutes') })));
      expectQueueError(past, 400, 'InputError');
      expect(past.body?.message).to.contain('`created` cannot be in the past (max 15min drift)');
      const future = await rejection(queue.createTask(slugid.nice(), definition({ created: tc.fromNowJSON('20 minutes') })));
      expectQueueError(future, 400, 'InputError');
      expect(future.body?.message).to.contain('`created` cannot be in the future (max 15min drift)');
    });

    it('checks the created window before idempotency: an old definition resent later is 400, not its status', async function () {
      if (!standin) {
        // Needs the queue's clock moved 15 minutes on; a real queue cannot be asked to.
        this.skip();
      }
      // The stand-in takes its clock as an option; a second stand-in with a clock we move shows the rule.
      const { startStandinQueue } = await import('../../src/standin-queue/index.js');
      let offset = 0;
      const q2 = await startStandinQueue({
        clients: { [STANDIN_ROOT.clientId]: { accessToken: STANDIN_ROOT.accessToken, scopes: ['*'] } },
        clock: () => Date.now() + offset,
      });
      try {
        const c = new tc.Queue({ rootUrl: q2.rootUrl, retries: 0, credentials: STANDIN_ROOT });
        const taskId = slugid.nice();
        const def = definition();
        await c.createTask(taskId, def);
        offset = 16 * 60 * 1000;
        const err = await rejection(c.createTask(taskId, def));
        expectQueueError(err, 400, 'InputError');
        expect(err.body?.message).to.contain('`created` cannot be in the past');
      } finally {
        await q2.close();
      }
    });

    it('refuses bad deadlines and expires with 400 InputError', async () => {
      const cases: Array<[Json, string]> = [
        [{ deadline: tc.fromNowJSON('-1 minute'), created: tc.fromNowJSON('-2 minutes') }, '`deadline` cannot be in the past'],
        [{ deadline: tc.fromNowJSON('6 days') }, '`deadline` cannot be more than 5 days into the future'],
        [{ expires: tc.fromNowJSON('30 minutes') }, '`expires` cannot be before `deadline`'],
      ];
      for (const [overrides, fragment] of cases) {
        const err = await rejection(queue.createTask(slugid.nice(), definition(overrides)));
        expectQueueError(err, 400, 'InputError');
        expect(err.body?.message).to.contain(fragment);
      }
    });

    it('refuses a body that fails the schema with 400 InputValidationError', async () => {
      const { metadata: _drop, ...withoutMetadata } = definition();
      const bodies: Json[] = [
        withoutMetadata,
        definition({ metadata: { ...definition().metadata, source: 'data:text/html,hi' } }),
        definition({ tags: { big: 'x'.repeat(4097) } }),
        definition({ taskQueueId: 'no-slash' }),
        definition({ priority: 'urgent' }),
        definition({ unknownField: 1 }),
      ];
      for (const body of bodies) {
        const err = await rejection(queue.createTask(slugid.nice(), body));
        expectQueueError(err, 400, 'InputValidationError');
        expect(err.body?.message).to.contain('Schema Validation Failed');
      }
      // A 4096-character tag value is still fine.
      await queue.createTask(slugid.nice(), definition({ tags: { big: 'x'.repeat(4096) } }));
    });

    it('refuses a malformed taskId with 400 InvalidRequestArguments', async () => {
      const err = await rejection(queue.createTask('not-a-slugid', definition()));
      expectQueueError(err, 400, 'InvalidRequestArguments');
    });

    it('answers 403 InsufficientScopes naming the missing scopes', async function () {
      if (!narrow) this.skip(); // a real queue needs TC_NARROW_CLIENT_ID / TC_NARROW_ACCESS_TOKEN
      const err = await rejection((narrow as QueueClient).createTask(slugid.nice(), definition({ routes: ['index.conformance'] })));
      expectQueueError(err, 403, 'InsufficientScopes');
      const message = err.body?.message ?? '';
      expect(message).to.contain('does not have sufficient scopes and is missing the following scopes:');
      for (const scope of ['queue:create-task:project:none', 'queue:scheduler-id:-', 'queue:route:index.conformance', `queue:create-task:lowest:${IDLE_QUEUE}`]) {
        expect(message).to.contain(scope);
      }
    });

    it('answers 403 to a request without credentials, naming the scope expression', async () => {
      const err = await rejection(anonymous.createTask(slugid.nice(), definition()));
      expectQueueError(err, 403, 'InsufficientScopes');
      expect(err.body?.message).to.contain('This request requires Taskcluster credentials that satisfy the following scope expression:');
      expect(err.body?.message).to.contain('queue:create-task:project:none');
    });

    it('answers 401 AuthenticationFailed to a wrong accessToken or an unknown clientId', async () => {
      const clientId = (clientOpts.credentials as Json).clientId as string;
      const wrong = new tc.Queue({ rootUrl, retries: 0, credentials: { clientId, accessToken: 'not-the-token' } });
      const err = await rejection(wrong.createTask(slugid.nice(), definition()));
      expectQueueError(err, 401, 'AuthenticationFailed');
      expect(err.body?.message).to.contain('Bad mac');
      const unknown = new tc.Queue({ rootUrl, retries: 0, credentials: { clientId: 'no/such/client', accessToken: 'whatever' } });
      expectQueueError(await rejection(unknown.status(slugid.nice())), 401, 'AuthenticationFailed');
    });
  });

  describe('task, status, cancel, rerun', () => {
    it('answers 404 ResourceNotFound for a task that does not exist', async () => {
      const id = slugid.nice();
      expectQueueError(await rejection(queue.status(id)), 404, 'ResourceNotFound');
      expectQueueError(await rejection(queue.task(id)), 404, 'ResourceNotFound');
      expectQueueError(await rejection(queue.cancelTask(id)), 404, 'ResourceNotFound');
      expectQueueError(await rejection(queue.rerunTask(id)), 404, 'ResourceNotFound');
    });

    it('cancels a pending task (idempotently) and reruns it as a new run', async () => {
      const taskId = slugid.nice();
      await queue.createTask(taskId, definition());
      const { status: canceled } = await queue.cancelTask(taskId);
      expect(canceled.state).to.equal('exception');
      expect(canceled.runs).to.have.length(1);
      expect(canceled.runs[0]).to.include({ runId: 0, state: 'exception', reasonCreated: 'scheduled', reasonResolved: 'canceled' });
      expect(canceled.runs[0]).to.have.property('resolved').that.is.a('string');
      const { status: again } = await queue.cancelTask(taskId);
      expect(again).to.deep.equal(canceled);

      const { status: rerun } = await queue.rerunTask(taskId);
      expect(rerun.state).to.equal('pending');
      expect(rerun.retriesLeft).to.equal(5);
      expect(rerun.runs).to.have.length(2);
      expect(rerun.runs[1]).to.include({ runId: 1, state: 'pending', reasonCreated: 'rerun' });
      const { status: rerunAgain } = await queue.rerunTask(taskId);
      expect(rerunAgain).to.deep.equal(rerun);
      expect((await queue.status(taskId)).status).to.deep.equal(rerun);
    });

    it('cancels an unscheduled task with a run made for it (reasonCreated exception)', async () => {
      const dependency = slugid.nice();
      await queue.createTask(dependency, definition());
      const taskId = slugid.nice();
      const { status } = await queue.createTask(taskId, definition({ dependencies: [dependency] }));
      expect(status.state).to.equal('unscheduled');
      expect(status.runs).to.have.length(0);
      const { status: canceled } = await queue.cancelTask(taskId);
      expect(canceled.runs).to.have.length(1);
      expect(canceled.runs[0]).to.include({ state: 'exception', reasonCreated: 'exception', reasonResolved: 'canceled' });
      await queue.cancelTask(dependency);
    });

    it('answers 403 to cancel and rerun without the task scopes, naming them', async function () {
      if (!narrow) this.skip();
      const taskId = slugid.nice();
      await queue.createTask(taskId, definition());
      const err = await rejection((narrow as QueueClient).cancelTask(taskId));
      expectQueueError(err, 403, 'InsufficientScopes');
      expect(err.body?.message).to.contain(`queue:cancel-task:-/${taskId}/${taskId}`);
      const rerr = await rejection((narrow as QueueClient).rerunTask(taskId));
      expectQueueError(rerr, 403, 'InsufficientScopes');
      expect(rerr.body?.message).to.contain(`queue:rerun-task:-/${taskId}/${taskId}`);
      await queue.cancelTask(taskId);
    });

    it('refuses cancel and rerun past the deadline with 409, and resolves the task deadline-exceeded', async () => {
      const taskId = slugid.nice();
      await queue.createTask(taskId, definition({ deadline: tc.fromNowJSON('2 seconds') }));
      await sleep(2500);
      const cancel = await rejection(queue.cancelTask(taskId));
      expectQueueError(cancel, 409, 'RequestConflict');
      expect(cancel.body?.message).to.contain("can't be canceled past its deadline");
      const rerun = await rejection(queue.rerunTask(taskId));
      expectQueueError(rerun, 409, 'RequestConflict');
      expect(rerun.body?.message).to.contain("can't be rescheduled past its deadline");
      // The real queue's deadline resolver acts about a minute after the deadline.
      const until = Date.now() + (REAL ? 100_000 : 5_000);
      let status: Json = {};
      while (Date.now() < until) {
        status = (await queue.status(taskId)).status as Json;
        if (status.state !== 'pending') break;
        await sleep(REAL ? 2000 : 50);
      }
      expect(status.state).to.equal('exception');
      expect(status.runs[0]).to.include({ state: 'exception', reasonResolved: 'deadline-exceeded' });
    });
  });

  describe('listTaskGroup', () => {
    it('lists a group in pages with a continuationToken', async () => {
      const groupId = slugid.nice();
      const ids = [slugid.nice(), slugid.nice(), slugid.nice()];
      for (const id of ids) await queue.createTask(id, definition({ taskGroupId: groupId }));
      const seen: string[] = [];
      let token: string | undefined;
      let pages = 0;
      do {
        const page = await queue.listTaskGroup(groupId, token ? { limit: 2, continuationToken: token } : { limit: 2 });
        pages++;
        expect(page.taskGroupId).to.equal(groupId);
        expect(page.tasks.length).to.be.at.most(2);
        for (const t of page.tasks as Json[]) {
          expect(t.status.taskGroupId).to.equal(groupId);
          expect(t.task.taskGroupId).to.equal(groupId);
          seen.push(t.status.taskId as string);
        }
        token = page.continuationToken as string | undefined;
      } while (token && pages < 5);
      expect(pages).to.be.at.least(2);
      expect([...seen].sort()).to.deep.equal([...ids].sort());
      for (const id of ids) await queue.cancelTask(id);
    });

    it('answers 404 for an unknown group and 409 for a second schedulerId in a group', async () => {
      expectQueueError(await rejection(queue.listTaskGroup(slugid.nice())), 404, 'ResourceNotFound');
      const groupId = slugid.nice();
      const first = slugid.nice();
      await queue.createTask(first, definition({ taskGroupId: groupId }));
      const err = await rejection(queue.createTask(slugid.nice(), definition({ taskGroupId: groupId, schedulerId: 'other-scheduler' })));
      expectQueueError(err, 409, 'RequestConflict');
      await queue.cancelTask(first);
    });
  });

  describe('the worker interface: claimWork, artifacts, reports, retries', () => {
    // A task queue of this run alone, so tasks left pending by earlier runs against a real queue are not claimed.
    const taskQueueId = `proj-conformance/c${slugid.nice().toLowerCase().replace(/[^a-z0-9]/g, '').slice(0, 12)}`;
    const workerGroup = 'conformance';
    const workerId = 'worker-1';

    async function claim(taskId: string): Promise<{ runId: number; worker: QueueClient; claim: Json }> {
      const res = await queue.claimWork(taskQueueId, { tasks: 1, workerGroup, workerId });
      expect(res.tasks, 'claimWork found no task').to.have.length(1);
      const c = res.tasks[0] as Json;
      expect(c.status.taskId).to.equal(taskId);
      // The run's own credentials, as a worker would use them.
      const worker = new tc.Queue({ rootUrl, retries: 0, credentials: c.credentials });
      return { runId: c.runId as number, worker, claim: c };
    }

    it('claims a pending task (running, with worker and takenUntil), serves its artifacts, and resolves it once', async () => {
      const taskId = slugid.nice();
      await queue.createTask(taskId, definition({ taskQueueId }));
      const { runId, worker, claim: c } = await claim(taskId);
      expect(runId).to.equal(0);
      expect(c).to.include({ workerGroup, workerId });
      expect(c.takenUntil).to.be.a('string');
      expect(c.task.taskQueueId).to.equal(taskQueueId);
      expect(c.credentials).to.include.keys('clientId', 'accessToken');
      const running = (await queue.status(taskId)).status as Json;
      expect(running.state).to.equal('running');
      expect(running.runs[0]).to.include({ state: 'running', workerGroup, workerId });
      expect(running.runs[0]).to.include.keys('takenUntil', 'started');

      const expires = c.task.expires as string;
      const logUrl = 'https://example.com/conformance/live_backing.log';
      expect(
        await worker.createArtifact(taskId, runId, 'public/logs/live_backing.log', { storageType: 'reference', expires, contentType: 'text/plain', url: logUrl }),
      ).to.deep.equal({ storageType: 'reference' });
      await worker.createArtifact(taskId, runId, 'public/missing.txt', { storageType: 'error', expires, reason: 'file-missing-on-worker', message: 'no such file' });

      // Signed (a Hawk bewit in the URL): a real deployment may give anonymous requests no scopes at all.
      const redirect = await fetch(queue.buildSignedUrl((queue as unknown as Json).getLatestArtifact, taskId, 'public/logs/live_backing.log'), { redirect: 'manual' });
      expect(redirect.status).to.equal(303);
      expect(redirect.headers.get('location')).to.equal(logUrl);
      expect(redirect.headers.get('x-taskcluster-artifact-storage-type')).to.equal('reference');
      expect(await queue.getArtifact(taskId, runId, 'public/logs/live_backing.log')).to.deep.equal({ storageType: 'reference', url: logUrl });
      const failed = await fetch(queue.buildSignedUrl((queue as unknown as Json).getArtifact, taskId, runId, 'public/missing.txt'), { redirect: 'manual' });
      expect(failed.status).to.equal(424);
      expect(await failed.json()).to.deep.equal({ reason: 'file-missing-on-worker', message: 'no such file' });
      expectQueueError(await rejection(queue.getArtifact(taskId, runId, 'public/nothing-here')), 404, 'ResourceNotFound');
      const listed = (await queue.listArtifacts(taskId, runId)).artifacts as Json[];
      expect(listed.map((a) => a.name).sort()).to.deep.equal(['public/logs/live_backing.log', 'public/missing.txt']);

      const { status: done } = await worker.reportCompleted(taskId, runId);
      expect(done.state).to.equal('completed');
      expect(done.runs[0]).to.include({ state: 'completed', reasonResolved: 'completed', workerGroup, workerId });
      // The resolved run keeps the takenUntil of its last claim.
      expect(done.runs[0]).to.have.property('takenUntil');
      expect((await worker.reportCompleted(taskId, runId)).status).to.deep.equal(done);
      const conflict = await rejection(worker.reportFailed(taskId, runId));
      expectQueueError(conflict, 409, 'RequestConflict');
      expect(conflict.body?.message).to.contain('is not running or failed');
      const late = await rejection(worker.createArtifact(taskId, runId, 'public/late.txt', { storageType: 'reference', expires, contentType: 'text/plain', url: logUrl }));
      expectQueueError(late, 409, 'RequestConflict');
    });

    it('retries intermittent-task (task-retry) and worker-shutdown (retry), counting retriesLeft down', async () => {
      const taskId = slugid.nice();
      await queue.createTask(taskId, definition({ taskQueueId }));
      let { runId, worker } = await claim(taskId);
      const { status: s1 } = await worker.reportException(taskId, runId, { reason: 'intermittent-task' });
      expect(s1.state).to.equal('pending');
      expect(s1.retriesLeft).to.equal(4);
      expect(s1.runs[0]).to.include({ state: 'exception', reasonResolved: 'intermittent-task' });
      expect(s1.runs[1]).to.include({ runId: 1, state: 'pending', reasonCreated: 'task-retry' });

      ({ runId, worker } = await claim(taskId));
      expect(runId).to.equal(1);
      const { status: s2 } = await worker.reportException(taskId, runId, { reason: 'worker-shutdown' });
      expect(s2.retriesLeft).to.equal(3);
      expect(s2.runs[2]).to.include({ runId: 2, state: 'pending', reasonCreated: 'retry' });

      ({ runId, worker } = await claim(taskId));
      const { status: s3 } = await worker.reportFailed(taskId, runId);
      expect(s3.state).to.equal('failed');
      expect(s3.runs.map((r: Json) => r.state)).to.deep.equal(['exception', 'exception', 'failed']);
    });

    it('does not retry when no retries are left, nor for malformed-payload', async () => {
      const noRetries = slugid.nice();
      await queue.createTask(noRetries, definition({ taskQueueId, retries: 0 }));
      let { runId, worker } = await claim(noRetries);
      const { status } = await worker.reportException(noRetries, runId, { reason: 'worker-shutdown' });
      expect(status.state).to.equal('exception');
      expect(status.runs).to.have.length(1);

      const malformed = slugid.nice();
      await queue.createTask(malformed, definition({ taskQueueId }));
      ({ runId, worker } = await claim(malformed));
      const { status: m } = await worker.reportException(malformed, runId, { reason: 'malformed-payload' });
      expect(m.state).to.equal('exception');
      expect(m.runs).to.have.length(1);
      expect(m.retriesLeft).to.equal(5);
    });

    it('cancels a running task (the worker keeps its name on the run; its report is then 409)', async () => {
      const taskId = slugid.nice();
      await queue.createTask(taskId, definition({ taskQueueId }));
      const { runId, worker } = await claim(taskId);
      const { status } = await queue.cancelTask(taskId);
      expect(status.runs[0]).to.include({ state: 'exception', reasonResolved: 'canceled', workerGroup, workerId });
      expectQueueError(await rejection(worker.reportCompleted(taskId, runId)), 409, 'RequestConflict');
    });
  });

  describe('a worker runs tasks (stand-in only: a real queue has no worker here)', () => {
    beforeEach(function () {
      if (!standin) this.skip();
    });

    async function waitFor(taskId: string, done: (s: Json) => boolean): Promise<Json> {
      const until = Date.now() + 5000;
      for (;;) {
        const { status } = await queue.status(taskId);
        if (done(status) || Date.now() > until) return status;
        await sleep(25);
      }
    }

    it('runs a task to completed and serves its log behind a 303', async () => {
      const taskId = slugid.nice();
      await queue.createTask(taskId, definition({ taskQueueId: WORKER_QUEUE, payload: { command: ['make', 'check'], exitCode: 0 } }));
      const status = await waitFor(taskId, (s) => s.state === 'completed');
      expect(status.state).to.equal('completed');
      expect(status.runs[0]).to.include({ state: 'completed', reasonResolved: 'completed', workerGroup: 'standin' });
      expect(status.runs[0]).to.have.property('started');

      const listed = await queue.listArtifacts(taskId, 0);
      expect((listed.artifacts as Json[]).map((a) => a.name)).to.include.members(['public/logs/live.log', 'public/logs/live_backing.log']);

      const url = queue.buildUrl((queue as unknown as Json).getLatestArtifact, taskId, 'public/logs/live_backing.log');
      const redirect = await fetch(url, { redirect: 'manual' });
      expect(redirect.status).to.equal(303);
      const location = redirect.headers.get('location') as string;
      expect(location).to.be.a('string');
      const body = await (await fetch(location)).text();
      expect(body).to.contain('+ make check');
      expect(body).to.contain('exit code 0');

      const viaClient = await queue.getArtifact(taskId, 0, 'public/logs/live_backing.log');
      expect(viaClient).to.include({ url: location });
    });

    it('fails a task whose payload exits non-zero', async () => {
      const taskId = slugid.nice();
      await queue.createTask(taskId, definition({ taskQueueId: WORKER_QUEUE, payload: { exitCode: 2 } }));
      const status = await waitFor(taskId, (s) => s.state === 'failed');
      expect(status.runs[0]).to.include({ state: 'failed', reasonResolved: 'failed' });
    });

    it('retries an intermittent failure as a new run (reasonCreated task-retry)', async () => {
      const taskId = slugid.nice();
      await queue.createTask(taskId, definition({ taskQueueId: WORKER_QUEUE, payload: { outcome: ['intermittent', 'success'] } }));
      const status = await waitFor(taskId, (s) => s.state === 'completed');
      expect(status.runs).to.have.length(2);
      expect(status.runs[0]).to.include({ state: 'exception', reasonResolved: 'intermittent-task' });
      expect(status.runs[1]).to.include({ state: 'completed', reasonCreated: 'task-retry' });
      expect(status.retriesLeft).to.equal(4);
    });

    it('serves public artifacts without credentials and refuses private storage URLs without a signature', async () => {
      const taskId = slugid.nice();
      await queue.createTask(taskId, definition({ taskQueueId: WORKER_QUEUE, payload: { exitCode: 0 } }));
      await waitFor(taskId, (s) => s.state === 'completed');
      const res = await anonymous.getLatestArtifact(taskId, 'public/logs/live_backing.log');
      expect(res.url).to.be.a('string');
      const forged = `${rootUrl}/__storage__/${taskId}/0/private/secret.log`;
      expect((await fetch(forged)).status).to.equal(403);
    });
  });
});
