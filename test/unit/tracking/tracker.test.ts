/**
 * The build tracker on its own: queue runs recorded from statuses, and a
 * Buildbot-API backend followed through its REST API. The Buildbot side here
 * is a scripted stand-in master on loopback serving only the calls the
 * follower makes (the real Buildbot 3.7 master is in test/e2e/build-tracking.test.ts);
 * it lets each case set exactly the builds a round finds. The store is the
 * real embedded one in a temporary folder.
 */
import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { parseConfig } from '../../../src/config/load.js';
import { StranglerError } from '../../../src/errors.js';
import { createLogger } from '../../../src/logging/logger.js';
import { ProxyMetrics } from '../../../src/metrics/metrics.js';
import type { RoutingTable } from '../../../src/routing/table.js';
import { openStore } from '../../../src/store/open.js';
import type { Store, TaskRecord } from '../../../src/store/store.js';
import type { QueueRun, QueueTaskStatus } from '../../../src/taskcluster/queue-types.js';
import { CANCELLED, EXCEPTION, FAILURE, RETRY, SUCCESS } from '../../../src/taskcluster/results.js';
import { nextCheckDelayMs } from '../../../src/taskcluster/reads.js';
import type { BuildbotBuild } from '../../../src/tracking/buildbot-follower.js';
import { BuildTracker, buildrequestsOfForceAnswer } from '../../../src/tracking/tracker.js';
import { Upstream } from '../../../src/upstream/upstream.js';

const quiet = () => createLogger({ stream: new Writable({ write: (_c, _e, done) => done() }) });

/** A build as the master lists it, in the fields the follower asks for. */
type FakeBuild = BuildbotBuild;

/** Just the REST calls the follower makes, over a list of builds the test edits. */
class ScriptedMaster {
  builds: FakeBuild[] = [];
  requests = new Map<number, { submitted_at: number; complete: boolean }>();
  builders = [
    { builderid: 1, name: 'bb-opt' },
    { builderid: 2, name: 'bb-nightly' },
  ];
  calls: string[] = [];
  /** When true, every answer is an HTML error page. */
  garbage = false;
  private server: Server | undefined;
  url = '';

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      const url = new URL(req.url!, 'http://x');
      this.calls.push(url.pathname + url.search);
      const send = (body: unknown) => {
        res.setHeader('content-type', 'text/plain');
        res.end(this.garbage ? '<html>Internal Server Error</html>' : JSON.stringify(body));
      };
      const q = url.searchParams;
      if (url.pathname === '/api/v2/builders') return send({ builders: this.builders, meta: { total: this.builders.length } });
      const br = /^\/api\/v2\/buildrequests\/(\d+)$/.exec(url.pathname);
      if (br) {
        const r = this.requests.get(Number(br[1]));
        return send({ buildrequests: r ? [{ submitted_at: r.submitted_at, complete: r.complete }] : [], meta: {} });
      }
      if (url.pathname === '/api/v2/builds') {
        let list = [...this.builds];
        if (q.has('buildid__gt')) list = list.filter((b) => b.buildid > Number(q.get('buildid__gt')));
        if (q.has('buildid')) list = list.filter((b) => b.buildid === Number(q.get('buildid')));
        if (q.has('buildrequestid')) list = list.filter((b) => b.buildrequestid === Number(q.get('buildrequestid')));
        if (q.get('complete') === 'false') list = list.filter((b) => !b.complete);
        list.sort((a, b) => (q.get('order') === '-buildid' ? b.buildid - a.buildid : a.buildid - b.buildid));
        if (q.has('limit')) list = list.slice(0, Number(q.get('limit')));
        return send({ builds: list, meta: { total: list.length } });
      }
      res.statusCode = 404;
      res.end('{}');
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server!.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise((resolve) => this.server?.close(resolve));
  }
}

function table(masterUrl: string, track = true): RoutingTable {
  return parseConfig(
    Buffer.from(`backends:
  buildbot: { url: ${masterUrl}, legacy: true }
routes:
  - jobType: bb-nightly
    backend: buildbot
    track: ${track}
`),
    'routes.yaml',
  );
}

function counted(metrics: ProxyMetrics): Promise<Record<string, number>> {
  return metrics.registry
    .getSingleMetric('strangler_builds_finished_total')!
    .get()
    .then((m) => Object.fromEntries(m.values.filter((v) => v.value > 0).map((v) => [`${v.labels.job_type}/${v.labels.backend}/${v.labels.result}`, v.value])));
}

describe('tracking/tracker', () => {
  describe('buildrequestsOfForceAnswer', () => {
    const cases: [string, string | undefined, [number, number][] | undefined][] = [
      ['a force answer', '{"id":1,"jsonrpc":"2.0","result":[7,{"3":12,"4":13}]}', [[3, 12], [4, 13]]],
      ['no body', undefined, undefined],
      ['not JSON', 'oops', undefined],
      ['a JSON-RPC error', '{"id":1,"jsonrpc":"2.0","error":{"code":-32602,"message":"no"}}', undefined],
      ['a result of another shape', '{"result":null}', undefined],
      ['ids that are not integers', '{"result":[7,{"x":12,"4":"13","5":1.5}]}', []],
    ];
    for (const [what, body, want] of cases) {
      it(`reads ${what}`, () => {
        const got = buildrequestsOfForceAnswer(body === undefined ? undefined : Buffer.from(body));
        expect(got === undefined ? undefined : [...got]).to.deep.equal(want);
      });
    }
  });

  describe('the build series', () => {
    it('exist at 0 once a build is under way, and a build under way later never resets what was observed', async () => {
      const metrics = new ProxyMetrics({ defaultMetrics: false });
      metrics.buildFinished({ jobTypeLabel: 'a', backend: 'queue', result: 'success', durationSeconds: 7, waitSeconds: 2, lagSeconds: 1 });
      metrics.buildUnderWay('a', 'queue');
      metrics.buildUnderWay('b', 'queue');
      const text = await metrics.registry.metrics();
      expect(text).to.include('strangler_build_duration_seconds_sum{job_type="a",backend="queue"} 7');
      expect(text).to.include('strangler_build_wait_seconds_sum{job_type="a",backend="queue"} 2');
      expect(text).to.include('strangler_builds_finished_total{job_type="b",backend="queue",result="failure"} 0');
      expect(text).to.include('strangler_build_duration_seconds_count{job_type="b",backend="queue"} 0');
    });
  });

  describe('nextCheckDelayMs', () => {
    it('looks at young tasks every 5 s and backs off to once a minute', () => {
      expect(nextCheckDelayMs({ submittedAt: 0 }, 1_000)).to.equal(5_000);
      expect(nextCheckDelayMs({ submittedAt: 0 }, 200_000)).to.equal(20_000);
      expect(nextCheckDelayMs({ submittedAt: 0 }, 3_600_000)).to.equal(60_000);
    });
  });

  describe('with a store', () => {
    let dir: string;
    let store: Store;
    let master: ScriptedMaster;
    let upstream: Upstream;
    let metrics: ProxyMetrics;
    let tracker: BuildTracker | undefined;
    let current: RoutingTable;
    let clock: number;

    beforeEach(async () => {
      dir = mkdtempSync(path.join(tmpdir(), 'strangler-tracker-'));
      store = await openStore(undefined, { dataDir: dir });
      master = new ScriptedMaster();
      await master.start();
      upstream = new Upstream();
      metrics = new ProxyMetrics({ defaultMetrics: false });
      current = table(master.url);
      clock = 1_800_000_000_000;
    });

    afterEach(async () => {
      await tracker?.close();
      tracker = undefined;
      await upstream.close();
      await master.close();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    });

    const newTracker = () => {
      tracker = new BuildTracker({ store, upstream, metrics, logger: quiet(), table: () => current, intervalMs: 3_600_000, now: () => clock });
      return tracker;
    };
    /** One round of every follower, as the timer would run it. */
    const round = () => (tracker as unknown as { tick(): Promise<void> }).tick();

    describe('queue runs', () => {
      const task = { taskId: 'T1', backend: 'queue', builderName: 'tc-opt' } as TaskRecord;
      const run = (runId: number, state: QueueRun['state'], extra: Partial<QueueRun> = {}): QueueRun => ({
        runId,
        state,
        reasonCreated: runId === 0 ? 'scheduled' : 'retry',
        scheduled: new Date(clock + runId * 100_000).toISOString(),
        started: new Date(clock + runId * 100_000 + 20_000).toISOString(),
        resolved: state === 'running' ? undefined : new Date(clock + runId * 100_000 + 80_000).toISOString(),
        ...extra,
      });
      const status = (...runs: QueueRun[]) => ({ taskId: 'T1', state: runs.at(-1)!.state, runs }) as unknown as QueueTaskStatus;

      it('records each finished run once, with its result, times and wait', async () => {
        const t = newTracker();
        await t.queueObserver.statusSeen!(task, undefined, status(run(0, 'running')), []);
        expect(await store.outcomes({ since: 0, until: Number.MAX_SAFE_INTEGER })).to.deep.equal([]);
        const retried = status(run(0, 'exception', { reasonResolved: 'worker-shutdown' }), run(1, 'completed'));
        await t.queueObserver.statusSeen!(task, undefined, retried, []);
        await t.queueObserver.statusSeen!(task, undefined, retried, []);
        const outcomes = await store.outcomes({ since: 0, until: Number.MAX_SAFE_INTEGER });
        expect(outcomes.map((o) => [o.buildKey, o.result, o.startedAt - o.submittedAt!, o.finishedAt - o.startedAt, o.origin])).to.deep.equal([
          ['T1/0', RETRY, 20_000, 60_000, 'proxy'],
          ['T1/1', SUCCESS, 20_000, 60_000, 'proxy'],
        ]);
        expect(await counted(metrics)).to.deep.equal({ 'tc-opt/queue/retry': 1, 'tc-opt/queue/success': 1 });
      });

      it('counts a run recorded by another process (a replica, or before a restart) not again', async () => {
        await newTracker().queueObserver.statusSeen!(task, undefined, status(run(0, 'failed')), []);
        const again = new ProxyMetrics({ defaultMetrics: false });
        const second = new BuildTracker({ store, upstream, metrics: again, logger: quiet(), table: () => current, now: () => clock });
        await second.queueObserver.statusSeen!(task, undefined, status(run(0, 'failed')), []);
        expect(await counted(metrics)).to.deep.equal({ 'tc-opt/queue/failure': 1 });
        expect(await counted(again)).to.deep.equal({});
        expect(await store.outcomes({ since: 0, until: Number.MAX_SAFE_INTEGER })).to.have.length(1);
      });

      it('leaves out a run cancelled before it started: it was never a build', async () => {
        await newTracker().queueObserver.statusSeen!(task, undefined, status(run(0, 'exception', { reasonResolved: 'canceled', started: undefined })), []);
        expect(await store.outcomes({ since: 0, until: Number.MAX_SAFE_INTEGER })).to.deep.equal([]);
      });

      it('maps a cancel while running to CANCELLED and an exception to EXCEPTION', async () => {
        const t = newTracker();
        await t.queueObserver.statusSeen!(task, undefined, status(run(0, 'exception', { reasonResolved: 'canceled' })), []);
        await t.queueObserver.statusSeen!({ ...task, taskId: 'T2' }, undefined, { ...status(run(0, 'exception', { reasonResolved: 'internal-error' })), taskId: 'T2' }, []);
        expect((await store.outcomes({ since: 0, until: Number.MAX_SAFE_INTEGER })).map((o) => o.result)).to.have.members([CANCELLED, EXCEPTION]);
      });
    });

    describe('a Buildbot-API backend', () => {
      const s = (ms: number) => Math.floor(ms / 1000);

      it('follows a forced buildrequest to its build and records it once it finishes, with the master\'s times', async () => {
        master.builds.push({ buildid: 5, builderid: 1, buildrequestid: 1, started_at: s(clock) - 100, complete: true, complete_at: s(clock) - 50, results: 0 });
        const t = newTracker();
        await t.start();
        await round();
        master.requests.set(10, { submitted_at: s(clock) + 1, complete: false });
        t.forceAnswered(current.legacy, Buffer.from('{"result":[3,{"1":10}]}'), clock);
        await waitUntil(async () => (await store.openRequests('buildbot')).length === 1);
        await round();
        expect(t.inFlight()).to.deep.equal([{ jobType: 'bb-opt', backend: 'buildbot', count: 1 }]);
        // Under way: every result's series exists at 0, so increase() will see the first build that finishes.
        const zeros = (await metrics.buildsFinished.get()).values.filter((v) => v.labels.job_type === 'bb-opt');
        expect(zeros.map((v) => [v.labels.result, v.value])).to.have.deep.members(['success', 'warnings', 'failure', 'skipped', 'exception', 'retry', 'cancelled'].map((r) => [r, 0]));

        master.builds.push({ buildid: 6, builderid: 1, buildrequestid: 10, started_at: s(clock) + 4, complete: false, complete_at: null, results: null });
        await round();
        expect(t.inFlight()).to.deep.equal([{ jobType: 'bb-opt', backend: 'buildbot', count: 1 }]);
        expect((await store.openBuilds('buildbot')).map((b) => b.buildid)).to.deep.equal([6]);

        Object.assign(master.builds[1]!, { complete: true, complete_at: s(clock) + 64, results: FAILURE });
        clock += 70_000;
        await round();
        await round();
        const outcomes = await store.outcomes({ since: 0, until: Number.MAX_SAFE_INTEGER });
        expect(outcomes.map((o) => [o.buildKey, o.jobType, o.result, (o.startedAt - o.submittedAt!) / 1000, (o.finishedAt - o.startedAt) / 1000, o.origin])).to.deep.equal([
          ['build:6', 'bb-opt', FAILURE, 3, 60, 'proxy'],
        ]);
        expect(await counted(metrics)).to.deep.equal({ 'bb-opt/buildbot/failure': 1 });
        expect(t.inFlight()).to.deep.equal([]);
        expect(await store.openRequests('buildbot')).to.deep.equal([]);
        // The master's history before the proxy (build 5) is not the comparison's.
        expect(outcomes.some((o) => o.buildKey === 'build:5')).to.equal(false);
      });

      it('follows builds the master starts on its own only for job types whose route says track: true', async () => {
        const t = newTracker();
        await t.start();
        await round();
        master.requests.set(20, { submitted_at: s(clock), complete: true });
        master.requests.set(21, { submitted_at: s(clock), complete: true });
        master.builds.push({ buildid: 1, builderid: 2, buildrequestid: 20, started_at: s(clock) + 2, complete: true, complete_at: s(clock) + 9, results: SUCCESS });
        master.builds.push({ buildid: 2, builderid: 1, buildrequestid: 21, started_at: s(clock) + 2, complete: true, complete_at: s(clock) + 9, results: SUCCESS });
        await round();
        const outcomes = await store.outcomes({ since: 0, until: Number.MAX_SAFE_INTEGER });
        expect(outcomes.map((o) => [o.buildKey, o.jobType, o.origin])).to.deep.equal([['build:1', 'bb-nightly', 'tracked']]);
      });

      it('keeps awaiting a buildrequest whose build was retried, and records the build that follows', async () => {
        const t = newTracker();
        await t.start();
        await round();
        master.requests.set(30, { submitted_at: s(clock), complete: false });
        t.forceAnswered(current.legacy, Buffer.from('{"result":[3,{"1":30}]}'), clock);
        master.builds.push({ buildid: 1, builderid: 1, buildrequestid: 30, started_at: s(clock) + 1, complete: true, complete_at: s(clock) + 2, results: RETRY });
        await waitUntil(async () => (await store.openRequests('buildbot')).length === 1);
        await round();
        expect((await store.openRequests('buildbot')).map((r) => r.buildrequestId)).to.deep.equal([30]);
        master.builds.push({ buildid: 2, builderid: 1, buildrequestid: 30, started_at: s(clock) + 3, complete: true, complete_at: s(clock) + 5, results: SUCCESS });
        await round();
        expect((await store.outcomes({ since: 0, until: Number.MAX_SAFE_INTEGER })).map((o) => [o.buildKey, o.result])).to.deep.equal([
          ['build:1', RETRY],
          ['build:2', SUCCESS],
        ]);
        expect(await store.openRequests('buildbot')).to.deep.equal([]);
      });

      it('finds at once the build of a buildrequest the scan passed before the force was answered, and stops awaiting one cancelled before it started', async () => {
        const t = newTracker();
        await t.start();
        await round();
        // Build 1 started and was scanned before the proxy heard of request 40.
        master.requests.set(40, { submitted_at: s(clock), complete: true });
        master.builds.push({ buildid: 1, builderid: 1, buildrequestid: 40, started_at: s(clock) + 1, complete: true, complete_at: s(clock) + 4, results: SUCCESS });
        await round();
        master.requests.set(41, { submitted_at: s(clock), complete: true });
        t.forceAnswered(current.legacy, Buffer.from('{"result":[3,{"1":40}]}'), clock);
        t.forceAnswered(current.legacy, Buffer.from('{"result":[4,{"1":41}]}'), clock);
        await waitUntil(async () => (await store.outcomes({ since: 0, until: Number.MAX_SAFE_INTEGER })).length === 1);
        expect((await store.outcomes({ since: 0, until: Number.MAX_SAFE_INTEGER })).map((o) => [o.buildKey, o.origin])).to.deep.equal([['build:1', 'proxy']]);
        await waitUntil(async () => (await store.openRequests('buildbot')).length === 1);
        await round();
        expect((await store.openRequests('buildbot')).map((r) => r.buildrequestId)).to.deep.equal([41]);
        // Request 41 completed without a build (cancelled while waiting): no longer awaited once quiet for 30 s.
        clock += 31_000;
        await round();
        expect(await store.openRequests('buildbot')).to.deep.equal([]);
        expect(await store.outcomes({ since: 0, until: Number.MAX_SAFE_INTEGER })).to.have.length(1);
      });

      it('after a restart, records a build that finished while the proxy was down, once', async () => {
        let t = newTracker();
        await t.start();
        await round();
        master.requests.set(50, { submitted_at: s(clock), complete: false });
        t.forceAnswered(current.legacy, Buffer.from('{"result":[3,{"1":50}]}'), clock);
        master.builds.push({ buildid: 1, builderid: 1, buildrequestid: 50, started_at: s(clock) + 1, complete: false, complete_at: null, results: null });
        await waitUntil(async () => (await store.openRequests('buildbot')).length === 1);
        await round();
        expect(await store.openBuilds('buildbot')).to.have.length(1);
        await t.close();

        Object.assign(master.builds[0]!, { complete: true, complete_at: s(clock) + 8, results: SUCCESS });
        t = newTracker();
        await t.start();
        await round();
        await round();
        expect((await store.outcomes({ since: 0, until: Number.MAX_SAFE_INTEGER })).map((o) => o.buildKey)).to.deep.equal(['build:1']);
        expect(await counted(metrics)).to.deep.equal({ 'bb-opt/buildbot/success': 1 });
      });

      it('counts a master that answers garbage as a tracking error, and follows again once it answers', async () => {
        const t = newTracker();
        await t.start();
        await round();
        master.garbage = true;
        master.builds.push({ buildid: 1, builderid: 2, buildrequestid: 1, started_at: s(clock), complete: true, complete_at: s(clock) + 1, results: SUCCESS });
        await round();
        const errors = (await metrics.buildTrackingErrors.get()).values;
        expect(errors.filter((e) => e.labels.backend === 'buildbot' && e.labels.operation === 'scan').map((e) => e.value)).to.deep.equal([1]);
        master.garbage = false;
        await round();
        expect((await store.outcomes({ since: 0, until: Number.MAX_SAFE_INTEGER })).map((o) => o.buildKey)).to.deep.equal(['build:1']);
      });

      describe('in a fleet (requests another replica stored)', () => {
        const storedByAnotherReplica = (buildrequestId: number) => store.trackRequests([{ backend: 'buildbot', buildrequestId, jobType: 'bb-opt', submittedAt: clock }]);

        it('follows a backend it had no follower for once another replica stores a force\'s buildrequest there, and records its build', async () => {
          current = table(master.url, false); // no route tracks the master: only work in the store makes it followed
          const t = newTracker();
          await t.start();
          await round();
          // The replica that answered the force set the cursor before the build, and stored the request.
          await store.setTrackingCursor('buildbot', 0);
          await storedByAnotherReplica(60);
          master.requests.set(60, { submitted_at: s(clock), complete: true });
          master.builds.push({ buildid: 1, builderid: 1, buildrequestid: 60, started_at: s(clock) + 1, complete: true, complete_at: s(clock) + 7, results: SUCCESS });
          await round();
          expect((await store.outcomes({ since: 0, until: Number.MAX_SAFE_INTEGER })).map((o) => [o.buildKey, o.origin])).to.deep.equal([['build:1', 'proxy']]);
          expect(await store.openRequests('buildbot')).to.deep.equal([]);
          expect(await counted(metrics)).to.deep.equal({ 'bb-opt/buildbot/success': 1 });
        });

        it('records a build it saw before the request was stored at the next read of the store, without waiting for the quiet-request check', async () => {
          const t = newTracker();
          await t.start();
          await round();
          master.requests.set(61, { submitted_at: s(clock), complete: true });
          master.builds.push({ buildid: 1, builderid: 1, buildrequestid: 61, started_at: s(clock) + 1, complete: true, complete_at: s(clock) + 3, results: FAILURE });
          await round();
          expect(await store.outcomes({ since: 0, until: Number.MAX_SAFE_INTEGER })).to.deep.equal([]);
          await storedByAnotherReplica(61);
          clock += 5_000;
          const callsBefore = master.calls.length;
          await round();
          expect((await store.outcomes({ since: 0, until: Number.MAX_SAFE_INTEGER })).map((o) => [o.buildKey, o.result])).to.deep.equal([['build:1', FAILURE]]);
          // Found from what the scan had seen, not by asking the master about the request.
          expect(master.calls.slice(callsBefore).filter((c) => c.includes('buildrequestid=61'))).to.deep.equal([]);
          expect(await store.openRequests('buildbot')).to.deep.equal([]);
        });
      });

      it('follows a force answered while the store was away once the store is back', async () => {
        const t = newTracker();
        await t.start();
        await round();
        const trackRequests = store.trackRequests.bind(store);
        let storeAway = true;
        store.trackRequests = async (requests) => {
          if (storeAway) throw new StranglerError('STORE_UNAVAILABLE', 'store: connection lost');
          return trackRequests(requests);
        };
        master.requests.set(70, { submitted_at: s(clock), complete: false });
        t.forceAnswered(current.legacy, Buffer.from('{"result":[3,{"1":70}]}'), clock);
        await waitUntil(async () => (await metrics.buildTrackingErrors.get()).values.some((e) => e.labels.operation === 'force' && e.value === 1));
        expect(await store.openRequests('buildbot')).to.deep.equal([]);
        storeAway = false;
        master.builds.push({ buildid: 1, builderid: 1, buildrequestid: 70, started_at: s(clock) + 1, complete: true, complete_at: s(clock) + 4, results: SUCCESS });
        await round();
        await waitUntil(async () => (await store.outcomes({ since: 0, until: Number.MAX_SAFE_INTEGER })).length === 1);
        expect((await store.outcomes({ since: 0, until: Number.MAX_SAFE_INTEGER })).map((o) => [o.buildKey, o.origin])).to.deep.equal([['build:1', 'proxy']]);
      });
    });
  });
});

async function waitUntil(probe: () => Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
