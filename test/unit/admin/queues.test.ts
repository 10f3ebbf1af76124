/**
 * Work on Taskcluster queues in the admin API, the status page and explain:
 * which backends are queues (never their credentials), their recent tasks by
 * Buildbot ids, and which side owns an id. Reads come from a real embedded
 * store in a temporary folder.
 */
import { expect } from 'chai';
import request from 'supertest';
import { createAdminApp, type AdminDeps } from '../../../src/admin/app.js';
import { renderStatusPage } from '../../../src/admin/page.js';
import { backendsView, progressView, queuesView, routesView, type QueuesView } from '../../../src/admin/views.js';
import { buildPlan, formatPlan } from '../../../src/admin/report.js';
import { explainRequest, formatExplanation, tasksForceWouldCreate } from '../../../src/explain.js';
import { matchRoute, type Backend } from '../../../src/routing/table.js';
import { MINTED_ID_BASE, type Store, type TaskRecord } from '../../../src/store/store.js';
import { adminDeps, openTempStore, withClosedStore } from '../../support/admin.js';
import { legacyAndQueueYaml, tableFrom } from '../../support/tables.js';

const SECRET = 'never-show-this-access-token';
const TABLE = tableFrom(
  legacyAndQueueYaml({
    legacyUrl: 'http://127.0.0.1:8011',
    rootUrl: 'http://127.0.0.1:8013',
    task: "{ taskQueueId: proj-ci/linux, payload: { command: [echo, '${builder.name}', '${revision}'] } }",
    routes: `  - jobType: linux64-*
    backend: queue
  - jobType: linux64-debug
    backend: queue
    task: { priority: high }
  - jobType: android-api-16-test
    split: { queue: 1, buildbot: 3 }
`,
  }),
);
const BUILDBOT_ONLY = tableFrom(`backends:
  buildbot: { url: http://127.0.0.1:8011, legacy: true }
routes: []
`);

const noBuilders = { nameFor: async () => undefined };

/** Two buildsets on the queue: linux64-opt (run 0 completed, a build minted) and android-api-16-test (not seen yet); one rejected. */
async function fill(store: Store): Promise<{ opt: TaskRecord; android: TaskRecord; rejected: TaskRecord; buildid: number }> {
  const record = async (builderName: string, state: TaskRecord['state'], stateReason: string | null = null): Promise<TaskRecord> => {
    const [bsid] = await store.allocateIds('buildset', 1);
    const [brid] = await store.allocateIds('buildrequest', 1);
    const task: TaskRecord = {
      taskId: `T${brid}`.slice(0, 22),
      buildrequestId: brid!,
      buildsetId: bsid!,
      backend: 'queue',
      builderName,
      builderid: 3,
      definition: '{}',
      state,
      stateReason,
      submittedAt: Date.parse('2030-01-01T00:00:00Z'),
      status: null,
      statusAt: null,
      final: false,
    };
    await store.recordBuildset({ bsid: bsid!, backend: 'queue', reason: 'force', submittedAt: task.submittedAt, externalIdstring: null, sourcestamps: [], properties: '{}', rebuildOf: null }, [task]);
    return task;
  };
  const opt = await record('linux64-opt', 'created');
  await store.saveStatus(opt.taskId, JSON.stringify({ taskId: opt.taskId, state: 'completed', runs: [{ runId: 0, state: 'completed' }] }), true, Date.parse('2030-01-01T00:01:00Z'));
  const build = await store.buildForRun(opt.buildrequestId, 0, 'linux64-opt', 40);
  const android = await record('android-api-16-test', 'created');
  const rejected = await record('linux64-opt', 'rejected', 'the queue answered 403: <missing scope>');
  return { opt: (await store.task(opt.buildrequestId))!, android, rejected, buildid: build.buildid };
}

function depsWith(store: Store | undefined, overrides: Partial<AdminDeps> = {}): AdminDeps {
  return adminDeps(TABLE, {
    knownJobTypes: () => ['linux64-opt', 'android-api-16-test', 'win32-debug'],
    explain: (input) => explainRequest(TABLE, input, noBuilders, { store }),
    queues: { store: () => store, hasCredentials: (b: Backend) => b.name === 'queue' },
    ...overrides,
  });
}

describe('admin: queues', () => {
  let temp: Awaited<ReturnType<typeof openTempStore>>;
  let store: Store;
  let filled: Awaited<ReturnType<typeof fill>>;

  before(async () => {
    temp = await openTempStore();
    store = temp.store;
    filled = await fill(store);
  });
  after(async () => {
    await temp?.close();
  });

  describe('queuesView', () => {
    it('lists only the queues, with rootUrl, whether credentials are set, and the job types routed there', () => {
      const view = queuesView(TABLE, new Map(), { store: 'embedded', jobType: null, limit: 20, hasCredentials: () => false, knownJobTypes: ['linux64-opt'] });
      expect(view.backends).to.have.length(1);
      expect(view.backends[0]).to.deep.include({ name: 'queue', kind: 'taskcluster', rootUrl: 'http://127.0.0.1:8013', tasks: [] });
      expect(view.backends[0]!.credentials).to.deep.equal({ set: false, clientIdEnv: 'TASKCLUSTER_CLIENT_ID', accessTokenEnv: 'TASKCLUSTER_ACCESS_TOKEN' });
      expect(view.backends[0]!.jobTypes).to.deep.equal([
        { jobType: 'android-api-16-test', share: 0.25, rule: 'android-api-16-test' },
        { jobType: 'linux64-debug', share: 1, rule: 'linux64-*' },
        { jobType: 'linux64-opt', share: 1, rule: 'linux64-*' },
      ]);
    });

    it('has no queues for a table without one', () => {
      expect(queuesView(BUILDBOT_ONLY, new Map(), { store: null, jobType: null, limit: 20, hasCredentials: () => true }).backends).to.deep.equal([]);
    });
  });

  describe('backendsView', () => {
    it('gives each backend its kind from the table', () => {
      const status = (name: string) => ({ name, url: 'x', legacy: false, isDefault: false, up: null, lastProbeAt: null, lastProbeError: null, circuit: 'closed' as const, inFlight: 0 });
      expect(backendsView([status('buildbot'), status('queue')], [], TABLE).map((b) => [b.name, b.kind])).to.deep.equal([
        ['buildbot', 'buildbot'],
        ['queue', 'taskcluster'],
      ]);
    });
  });

  describe('GET /queues', () => {
    it('answers each queue with its newest tasks by Buildbot ids, their builds and last queue state', async () => {
      const res = await request(createAdminApp(depsWith(store))).get('/queues').expect(200);
      const view = res.body as QueuesView;
      expect(view).to.deep.include({ store: 'embedded', jobType: null, limit: 20 });
      const [queue] = view.backends;
      expect(queue!.credentials.set).to.equal(true);
      expect(queue!.tasks.map((t) => t.buildrequestId)).to.deep.equal([filled.rejected.buildrequestId, filled.android.buildrequestId, filled.opt.buildrequestId]);
      const opt = queue!.tasks[2]!;
      expect(opt).to.deep.equal({
        taskId: filled.opt.taskId,
        buildsetId: filled.opt.buildsetId,
        buildrequestId: filled.opt.buildrequestId,
        builderName: 'linux64-opt',
        builderid: 3,
        state: 'created',
        stateReason: null,
        submittedAt: '2030-01-01T00:00:00.000Z',
        queueState: 'completed',
        runs: 1,
        statusAt: '2030-01-01T00:01:00.000Z',
        final: true,
        builds: [{ buildid: filled.buildid, number: 40, runId: 0 }],
      });
      expect(opt.buildsetId).to.be.at.least(MINTED_ID_BASE);
      expect(queue!.tasks[1]).to.deep.include({ queueState: null, runs: null, builds: [] });
      expect(queue!.tasks[0]).to.deep.include({ state: 'rejected', stateReason: 'the queue answered 403: <missing scope>' });
    });

    it('filters to one job type (its builder\'s tasks, newest first) and honours limit', async () => {
      const app = createAdminApp(depsWith(store));
      const one = (await request(app).get('/queues?jobType=linux64-opt').expect(200)).body as QueuesView;
      expect(one.jobType).to.equal('linux64-opt');
      // The rejected force made no task: it is not one of the builder's.
      expect(one.backends[0]!.tasks.map((t) => t.taskId)).to.deep.equal([filled.opt.taskId]);
      expect(one.backends[0]!.jobTypes.map((j) => j.jobType)).to.deep.equal(['linux64-opt']);
      const limited = (await request(app).get('/queues?limit=1').expect(200)).body as QueuesView;
      expect(limited.backends[0]!.tasks.map((t) => t.buildrequestId)).to.deep.equal([filled.rejected.buildrequestId]);
    });

    it('refuses unknown parameters and bad limits with 400', async () => {
      const app = createAdminApp(depsWith(store));
      expect((await request(app).get('/queues?job=x').expect(400)).body).to.include({ code: 'BAD_REQUEST' });
      expect((await request(app).get('/queues?limit=0').expect(400)).body.error).to.contain('"limit" must be an integer from 1 to 100');
      expect((await request(app).get('/queues?jobType=a%01b').expect(400)).body.error).to.contain('jobType');
      await request(app).post('/queues').expect(405);
    });

    it('says no store yet, and no tasks, before the store is open', async () => {
      const view = (await request(createAdminApp(depsWith(undefined))).get('/queues').expect(200)).body as QueuesView;
      expect(view.store).to.equal(null);
      expect(view.backends[0]!.tasks).to.deep.equal([]);
    });

    it('follows the read-token rules of the other reads', async () => {
      const app = createAdminApp(depsWith(store, { auth: { token: 'admin-token-0123456789', protectReads: true } }));
      expect((await request(app).get('/queues').expect(401)).body).to.include({ code: 'ADMIN_UNAUTHORIZED' });
      await request(app).get('/queues').set('authorization', 'Bearer wrong').expect(401);
      await request(app).get('/queues').set('authorization', 'Bearer admin-token-0123456789').expect(200);
    });

    it('never answers the credentials, even when they are set', async () => {
      const saved = { ...process.env };
      process.env.TASKCLUSTER_CLIENT_ID = 'proxy-client';
      process.env.TASKCLUSTER_ACCESS_TOKEN = SECRET;
      try {
        const res = await request(createAdminApp(depsWith(store))).get('/queues').expect(200);
        expect(res.text).not.to.contain(SECRET);
        expect(res.text).not.to.contain('proxy-client');
        const page = await request(createAdminApp(depsWith(store))).get('/').expect(200);
        expect(page.text).not.to.contain(SECRET);
      } finally {
        process.env = saved;
      }
    });

    it('answers 503 STORE_UNAVAILABLE naming the failure when the store cannot be read, and the page says so', async () => {
      await withClosedStore(async (closed) => {
        const deps = depsWith(closed);
        const res = await request(createAdminApp(deps)).get('/queues').expect(503);
        expect(res.body.code).to.equal('STORE_UNAVAILABLE');
        expect(res.body.error).to.match(/^recent tasks could not be read from the store: /);
        expect((await deps.metrics.registry.getSingleMetricAsString('strangler_store_errors_total'))).to.contain('operation="admin"} 1');
        const page = await request(createAdminApp(depsWith(closed))).get('/').expect(200);
        expect(page.text).to.contain('data-col="store-error"');
      });
    });
  });

  describe('status page section', () => {
    const page = (queues: QueuesView | { error: string }) =>
      renderStatusPage(
        {
          routes: routesView(TABLE),
          progress: progressView(TABLE, [], { '5m': [], '1h': [], all: [] }, new Date(0), new Date(0)),
          backends: [],
          history: [],
          queues,
          builds: { window: '24h', off: 'build tracking is off' },
          jobType: null,
          now: new Date('2030-01-01T00:02:00Z'),
          postsEnabled: false,
          refreshMs: 2000,
          replica: { name: 'replica-under-test', store: null },
        },
        'nonce',
      );

    it('shows each queue, whether credentials are set, and its tasks with their Buildbot ids, escaped', async () => {
      const tasks = new Map([['queue', [{ task: { ...filled.opt, builderName: '<img src=x onerror=alert(1)>' }, builds: [] }]]]);
      const html = page(queuesView(TABLE, tasks, { store: 'embedded', jobType: null, limit: 10, hasCredentials: () => false }));
      expect(html).to.contain('<section id="queues"');
      expect(html).to.contain('data-queue="queue"');
      expect(html).to.contain('data-set="false">no credentials</span>');
      expect(html).to.contain(`data-task-id="${filled.opt.taskId}" data-buildrequest="${filled.opt.buildrequestId}" data-state="created" data-queue-state="completed"`);
      expect(html).to.contain(`<td class="num" data-col="buildset">${filled.opt.buildsetId}</td>`);
      expect(html).not.to.contain('<img src=x');
      expect(html).to.contain('&lt;img src=x onerror=alert(1)&gt;');
    });

    it('is absent without queues, and shows a store failure', () => {
      expect(page(queuesView(BUILDBOT_ONLY, new Map(), { store: null, jobType: null, limit: 10, hasCredentials: () => true }))).not.to.contain('id="queues"');
      expect(page({ error: 'recent tasks could not be read from the store: <gone>' })).to.contain('&lt;gone&gt;');
    });
  });

  describe('explain: which side owns an id', () => {
    const explain = (p: string) => explainRequest(TABLE, { method: 'GET', path: p }, noBuilders, { store, draw: 0 });

    it('a minted build id: the queue that has it, with its taskId, states and run', async () => {
      const e = await explain(`/api/v2/builds/${filled.buildid}`);
      expect(e).to.deep.include({ backend: 'queue', backendUrl: 'http://127.0.0.1:8013', reason: 'owner', jobType: 'linux64-opt' });
      expect(e.owner).to.deep.include({ kind: 'build', id: filled.buildid, side: 'queue', backend: 'queue', found: true, build: { number: 40, runId: 0, builderName: 'linux64-opt' } });
      expect(e.owner!.tasks).to.deep.equal([
        { taskId: filled.opt.taskId, backend: 'queue', buildsetId: filled.opt.buildsetId, buildrequestId: filled.opt.buildrequestId, builderName: 'linux64-opt', state: 'created', queueState: 'completed' },
      ]);
      const text = formatExplanation(e);
      expect(text).to.contain(`task:     ${filled.opt.taskId} on queue`);
      expect(text).to.contain('queue state completed');
      // A step or log of that build is the same build.
      expect((await explain(`/api/v2/steps/${filled.buildid}/logs`)).owner).to.deep.include({ kind: 'step', found: true, backend: 'queue' });
    });

    it('a minted buildrequest and buildset id', async () => {
      expect((await explain(`/api/v2/buildrequests/${filled.android.buildrequestId}`)).owner!.tasks.map((t) => t.taskId)).to.deep.equal([filled.android.taskId]);
      const bs = await explain(`/api/v2/buildsets/${filled.opt.buildsetId}`);
      expect(bs.owner).to.deep.include({ kind: 'buildset', side: 'queue', found: true });
      expect(bs.owner!.tasks.map((t) => t.taskId)).to.deep.equal([filled.opt.taskId]);
    });

    it('a minted id the store lacks: the proxy answers 404 itself', async () => {
      const e = await explain(`/api/v2/builds/${MINTED_ID_BASE + 999_999}`);
      expect(e.owner).to.deep.include({ side: 'queue', found: false, backend: null });
      expect(e.reason).to.equal('owner');
      expect(e.why).to.contain('404');
    });

    it('an id below 10^15: the legacy master\'s, and it goes there whatever the default is', async () => {
      const e = await explain('/api/v2/builds/12');
      expect(e.owner).to.deep.include({ side: 'legacy', backend: 'buildbot' });
      expect(e.owner!.why).to.contain("the legacy master's (ids below 10^15)");
      expect(e).to.deep.include({ backend: 'buildbot', reason: 'owner' });
    });

    it('a minted id without a store: the proxy\'s, which queue unknown', async () => {
      const e = await explainRequest(TABLE, { method: 'GET', path: `/api/v2/builds/${MINTED_ID_BASE + 5}` }, noBuilders);
      expect(e.owner).to.deep.include({ side: 'queue', found: null, backend: null });
      expect(e.reason).to.equal('default');
    });
  });

  describe('the task a force would create', () => {
    it('explain renders the route\'s template over the backend\'s with a sample force', async () => {
      const body = Buffer.from(JSON.stringify({ jsonrpc: '2.0', method: 'force', id: 1, params: { builderNames: ['linux64-debug'] } }));
      const e = await explainRequest(TABLE, { method: 'POST', path: '/api/v2/forceschedulers/force', headers: { 'content-type': 'application/json' }, body }, noBuilders);
      expect(e.backend).to.equal('queue');
      expect(e.tasks).to.have.length(1);
      const [w] = e.tasks;
      expect(w).to.deep.include({ builder: 'linux64-debug', backend: 'queue', error: null });
      // routes[1] never applies (linux64-* matches first), so the backend's template alone: priority stays the default.
      expect(w!.task).to.deep.include({ taskQueueId: 'proj-ci/linux', priority: 'lowest' });
      expect(w!.task!.payload).to.deep.equal({ command: ['echo', 'linux64-debug', '0123456789abcdef0123456789abcdef01234567'] });
      expect(w!.task!.tags).to.include({ 'buildbot-builder': 'linux64-debug', 'created-by': 'strangler-proxy' });
      expect(formatExplanation(e)).to.contain('a force of linux64-debug would create this task on queue');
    });

    it('a split shows the queue side\'s task whichever side this request drew', async () => {
      const e = await explainRequest(TABLE, { method: 'GET', path: '/api/v2/builders/android-api-16-test' }, noBuilders, { draw: 0.99 });
      expect(e.backend).to.equal('buildbot');
      expect(e.tasks.map((w) => [w.builder, w.backend])).to.deep.equal([['android-api-16-test', 'queue']]);
    });

    it('a route\'s own template replaces the backend\'s top-level keys', () => {
      const table = tableFrom(TABLE.source.text.replace('  - jobType: linux64-*\n    backend: queue\n', ''));
      const [w] = tasksForceWouldCreate(matchRoute(table, 'linux64-debug'), [table.backends.get('queue')!], ['linux64-debug']);
      expect(w!.task).to.deep.include({ priority: 'high', taskQueueId: 'proj-ci/linux' });
    });

    it('nothing for a job type on a Buildbot backend', async () => {
      expect((await explainRequest(TABLE, { method: 'GET', path: '/api/v2/builders/win32-debug' }, noBuilders)).tasks).to.deep.equal([]);
    });

    it('plan shows it for a job type the new file moves to a queue', () => {
      const next = tableFrom(TABLE.source.text.replace('routes:\n', 'routes:\n  - jobType: win32-debug\n    backend: queue\n'));
      const report = buildPlan({ mode: 'files', current: TABLE, next, currentSource: 'a.yaml', nextSource: 'b.yaml', extraJobTypes: [], considered: 'test' });
      expect(report.queueTasks.map((w) => [w.builder, w.backend, w.task?.taskQueueId])).to.deep.equal([['win32-debug', 'queue', 'proj-ci/linux']]);
      expect(formatPlan(report)).to.contain('a force of win32-debug would create this task on queue');
    });
  });
});
