/**
 * One contract for every Store: the same suite runs against the embedded file
 * and against PostgreSQL (a private cluster from test/support/postgres.ts).
 */
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import Database from 'libsql';
import pg from 'pg';
import { isStranglerError } from '../../../src/errors.js';
import { EMBEDDED_FILE_NAME, openEmbeddedStore, type EmbeddedStore } from '../../../src/store/embedded.js';
import { LATEST_VERSION } from '../../../src/store/migrations.js';
import { openStore } from '../../../src/store/open.js';
import { openPostgresStore, redactUrl, type PostgresStore } from '../../../src/store/postgres.js';
import { MINTED_ID_BASE, type BuildsetRecord, type Store, type TaskRecord } from '../../../src/store/store.js';
import { OUTCOME_COLUMNS, outcomesSql } from '../../../src/store/tracking-rows.js';
import type { BuildOutcome, OpenBuild, TrackedRequest } from '../../../src/tracking/outcome.js';
import { startPostgres, type PostgresCluster } from '../../support/postgres.js';

const OPEN_URL = pathToFileURL(path.resolve('src/store/open.ts')).href;

/** How the suite reaches one implementation. */
interface Harness {
  /** A fresh, empty store location; returns its spec for openStore and its data dir. */
  fresh(): Promise<{ spec: string | undefined; dataDir: string }>;
  /** Opens the location at an older schema version (upgrade tests). */
  openAt(location: { spec: string | undefined; dataDir: string }, version: number): Promise<Store & { schemaVersion(): Promise<number> }>;
  /** Whether two Store instances may share one location at once (replicas). */
  shared: boolean;
  /** A second, plain connection to the location's database, beside the store (bulk rows, query plans). */
  raw(location: { spec: string | undefined; dataDir: string }): Promise<RawConnection>;
}

interface RawConnection {
  exec(text: string): Promise<void>;
  /** The plan the engine chooses for a query, one line per step. */
  plan(text: string, params: unknown[]): Promise<string>;
  /** The dialect's n-th (1-based) parameter placeholder. */
  placeholder(n: number): string;
  close(): Promise<void>;
}

let seq = 0;
interface TaskSpec {
  brid: number;
  builder: string;
  state?: TaskRecord['state'];
  at?: number;
  backend?: string;
  final?: boolean;
  status?: string;
}
function buildsetOf(bsid: number, tasks: TaskSpec[]): [BuildsetRecord, TaskRecord[]] {
  const buildset: BuildsetRecord = {
    bsid,
    backend: 'queue',
    reason: 'force',
    submittedAt: 1_700_000_000_000,
    externalIdstring: null,
    sourcestamps: [{ revision: 'abc', branch: 'main', repository: 'https://hg/repo', project: 'p', codebase: '' }],
    properties: JSON.stringify({ owner: ['me', 'Force Build Form'] }),
    rebuildOf: null,
  };
  const records = tasks.map((t): TaskRecord => ({
    taskId: `task-${process.pid}-${++seq}`,
    buildrequestId: t.brid,
    buildsetId: bsid,
    backend: t.backend ?? 'queue',
    builderName: t.builder,
    builderid: 7,
    definition: JSON.stringify({ taskQueueId: 'proj/linux', payload: { n: seq } }),
    state: t.state ?? 'pending',
    stateReason: null,
    submittedAt: t.at ?? 1_700_000_000_000 + seq,
    status: t.status ?? null,
    statusAt: t.status === undefined ? null : 1_700_000_000_500,
    final: t.final ?? false,
  }));
  return [buildset, records];
}

/** A finished build on the legacy master (by default), with times around `finishedAt`. */
function outcomeOf(buildKey: string, finishedAt: number, fields: Partial<BuildOutcome> = {}): BuildOutcome {
  return {
    backend: 'legacy', buildKey, jobType: 'linux64', result: 0, submittedAt: finishedAt - 3_000, startedAt: finishedAt - 2_000, finishedAt,
    origin: 'proxy', recordedAt: finishedAt + 500, ...fields,
  };
}

function openBuildOf(buildid: number, startedAt: number, fields: Partial<OpenBuild> = {}): OpenBuild {
  return { backend: 'legacy', buildid, buildrequestId: buildid + 1_000, jobType: 'linux64', submittedAt: startedAt - 100, startedAt, origin: 'tracked', ...fields };
}

function requestOf(buildrequestId: number, submittedAt: number, fields: Partial<TrackedRequest> = {}): TrackedRequest {
  return { backend: 'legacy', buildrequestId, jobType: 'linux64', submittedAt, ...fields };
}

/** Starts a child that opens the store, writes buildsets one by one and prints each brid once its write resolved. */
function writerChild(spec: string | undefined, dataDir: string): ReturnType<typeof spawn> {
  const code = `
    const { openStore } = await import(${JSON.stringify(OPEN_URL)});
    const store = await openStore(${JSON.stringify(spec ?? null)} ?? undefined, { dataDir: ${JSON.stringify(dataDir)} });
    for (let i = 0; ; i++) {
      const [bsid] = await store.allocateIds('buildset', 1);
      const [brid] = await store.allocateIds('buildrequest', 1);
      await store.recordBuildset(
        { bsid, backend: 'queue', reason: 'r', submittedAt: Date.now(), externalIdstring: null, sourcestamps: [], properties: '{}', rebuildOf: null },
        [{ taskId: 'child-' + process.pid + '-' + i, buildrequestId: brid, buildsetId: bsid, backend: 'queue', builderName: 'b', builderid: 1,
           definition: '{}', state: 'pending', stateReason: null, submittedAt: Date.now(), status: null, statusAt: null, final: false }]);
      process.stdout.write(brid + '\\n');
    }`;
  return spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'pipe'] });
}

function contract(name: string, harness: () => Harness): void {
  describe(`store contract: ${name}`, function () {
    this.timeout(60_000);
    let h: Harness;
    let location: { spec: string | undefined; dataDir: string };
    let store: Store;
    const opened: Store[] = [];
    const open = async () => {
      const s = await openStore(location.spec, { dataDir: location.dataDir });
      opened.push(s);
      return s;
    };

    beforeEach(async function () {
      h = harness();
      location = await h.fresh();
      store = await open();
    });
    afterEach(async () => {
      for (const s of opened.splice(0)) await s.close();
    });

    it('allocates ids above MINTED_ID_BASE, unique and ascending', async () => {
      const a = await store.allocateIds('buildset', 5);
      const b = await store.allocateIds('buildset', 3);
      const all = [...a, ...b];
      expect(all.every((id) => Number.isSafeInteger(id) && id >= MINTED_ID_BASE)).to.equal(true);
      expect(a).to.deep.equal([...a].sort((x, y) => x - y));
      expect(new Set(all).size).to.equal(8);
      expect(Math.min(...b)).to.be.greaterThan(Math.max(...a));
    });

    it('never hands out one id twice to many allocations in parallel (two instances where the implementation is shared)', async () => {
      const other = h.shared ? await open() : store;
      const calls = Array.from({ length: 60 }, (_, i) => (i % 2 === 0 ? store : other).allocateIds('buildrequest', 1 + (i % 4)));
      const results = await Promise.all(calls);
      for (const ids of results) expect(ids).to.deep.equal([...ids].sort((x, y) => x - y));
      const all = results.flat();
      expect(new Set(all).size).to.equal(all.length);
      expect(all.every((id) => id >= MINTED_ID_BASE)).to.equal(true);
    });

    it('records a buildset with its tasks and reads them back every way', async () => {
      const [bsid] = await store.allocateIds('buildset', 1);
      const brids = await store.allocateIds('buildrequest', 2);
      const [buildset, tasks] = buildsetOf(bsid!, [{ brid: brids[0]!, builder: 'linux64' }, { brid: brids[1]!, builder: 'win64' }]);
      await store.recordBuildset(buildset, tasks);
      expect(await store.buildset(bsid!)).to.deep.equal(buildset);
      expect(await store.tasksOfBuildset(bsid!)).to.deep.equal(tasks);
      expect(await store.task(brids[0]!)).to.deep.equal(tasks[0]);
      expect(await store.taskById(tasks[1]!.taskId)).to.deep.equal(tasks[1]);
      expect(await store.buildset(bsid! + 1_000)).to.equal(undefined);
      expect(await store.task(1)).to.equal(undefined);
      expect(await store.taskById('nope')).to.equal(undefined);
      expect(await store.recentTasks('queue', 10)).to.deep.equal([tasks[1], tasks[0]]);
    });

    it('records a buildset all or nothing', async () => {
      const [bsid] = await store.allocateIds('buildset', 1);
      const [brid] = await store.allocateIds('buildrequest', 1);
      const [buildset, tasks] = buildsetOf(bsid!, [{ brid: brid!, builder: 'a' }, { brid: brid!, builder: 'a' }]);
      let failure: unknown;
      await store.recordBuildset(buildset, tasks).catch((error: unknown) => { failure = error; });
      expect(isStranglerError(failure)).to.equal(true);
      expect(await store.buildset(bsid!)).to.equal(undefined);
      expect(await store.task(brid!)).to.equal(undefined);
    });

    it('moves task states, keeps statuses, and lists pending and unfinished work oldest first', async () => {
      const [bsid] = await store.allocateIds('buildset', 1);
      const brids = await store.allocateIds('buildrequest', 4);
      const [buildset, tasks] = buildsetOf(bsid!, brids.map((brid, i) => ({ brid, builder: 'b', at: 2_000 - i })));
      await store.recordBuildset(buildset, tasks);
      expect((await store.pendingTasks(10)).map((t) => t.buildrequestId)).to.deep.equal([...brids].reverse());
      expect((await store.pendingTasks(2)).length).to.equal(2);

      await store.setTaskState(tasks[0]!.taskId, 'created', null);
      await store.setTaskState(tasks[1]!.taskId, 'created', null, '{"fresh":true}');
      await store.setTaskState(tasks[2]!.taskId, 'rejected', 'InsufficientScopes: queue:create-task:proj/linux');
      expect((await store.taskById(tasks[1]!.taskId))!.definition).to.equal('{"fresh":true}');
      expect((await store.taskById(tasks[2]!.taskId))!.stateReason).to.equal('InsufficientScopes: queue:create-task:proj/linux');
      expect((await store.pendingTasks(10)).map((t) => t.buildrequestId)).to.deep.equal([brids[3]]);
      expect((await store.unfinishedTasks(10)).map((t) => t.buildrequestId)).to.deep.equal([brids[1], brids[0]]);

      await store.saveStatus(tasks[0]!.taskId, '{"state":"running"}', false, 5_000);
      await store.saveStatus(tasks[1]!.taskId, '{"state":"completed"}', true, 6_000);
      const t0 = (await store.taskById(tasks[0]!.taskId))!;
      expect([t0.status, t0.statusAt, t0.final]).to.deep.equal(['{"state":"running"}', 5_000, false]);
      expect((await store.taskById(tasks[1]!.taskId))!.final).to.equal(true);
      expect((await store.unfinishedTasks(10)).map((t) => t.buildrequestId)).to.deep.equal([brids[0]]);

      let failure: unknown;
      await store.setTaskState('no-such-task', 'created', null).catch((error: unknown) => { failure = error; });
      expect(isStranglerError(failure)).to.equal(true);
    });

    it('pages and counts the tasks of a builder, leaving out rejected and abandoned ones', async () => {
      const [bsid] = await store.allocateIds('buildset', 1);
      const brids = await store.allocateIds('buildrequest', 7);
      const [buildset, tasks] = buildsetOf(bsid!, brids.map((brid, i) => ({ brid, builder: i < 6 ? 'lin' : 'win', state: i === 5 ? 'abandoned' as const : 'pending' as const })));
      await store.recordBuildset(buildset, tasks);
      await store.setTaskState(tasks[4]!.taskId, 'rejected', 'no');
      expect(await store.countTasksOfBuilder('lin')).to.equal(4);
      expect(await store.countTasksOfBuilder('win')).to.equal(1);
      expect(await store.countTasksOfBuilder('none')).to.equal(0);
      expect((await store.builderNames()).sort()).to.deep.equal(['lin', 'win']);
      const ids = async (limit: number, offset: number, newestFirst: boolean) =>
        (await store.tasksOfBuilder('lin', { limit, offset, newestFirst })).map((t) => t.buildrequestId);
      expect(await ids(10, 0, false)).to.deep.equal(brids.slice(0, 4));
      expect(await ids(2, 1, false)).to.deep.equal(brids.slice(1, 3));
      expect(await ids(2, 0, true)).to.deep.equal([brids[3], brids[2]]);
      expect(await ids(10, 4, false)).to.deep.equal([]);
    });

    it('mints one build per run: idempotent, numbers from the floor, unique per builder', async () => {
      const [bsid] = await store.allocateIds('buildset', 1);
      const brids = await store.allocateIds('buildrequest', 2);
      const [buildset, tasks] = buildsetOf(bsid!, [{ brid: brids[0]!, builder: 'lin' }, { brid: brids[1]!, builder: 'lin' }]);
      await store.recordBuildset(buildset, tasks);
      const first = await store.buildForRun(brids[0]!, 0, 'lin', 120);
      expect(first.number).to.equal(120);
      expect(first.buildid).to.be.at.least(MINTED_ID_BASE);
      expect(await store.buildForRun(brids[0]!, 0, 'lin', 500)).to.deep.equal(first);
      const second = await store.buildForRun(brids[0]!, 1, 'lin', 100);
      expect(second.number).to.equal(121);
      const third = await store.buildForRun(brids[1]!, 0, 'lin', 200);
      expect(third.number).to.equal(200);
      expect(await store.build(second.buildid)).to.deep.equal(second);
      expect(await store.buildByNumber('lin', 200)).to.deep.equal(third);
      expect(await store.buildByNumber('lin', 7)).to.equal(undefined);
      expect(await store.buildsOfTask(brids[0]!)).to.deep.equal([first, second]);
      expect(await store.buildsOfBuilder('lin', { limit: 2, offset: 0, newestFirst: true })).to.deep.equal([third, second]);
      expect(await store.buildsOfBuilder('lin', { limit: 5, offset: 1, newestFirst: false })).to.deep.equal([second, third]);
      expect(await store.countBuildsOfBuilder('lin')).to.equal(3);
      expect(await store.countBuildsOfBuilder('win')).to.equal(0);
    });

    it('gives concurrent calls for one run the same build, and concurrent runs distinct numbers', async () => {
      const [bsid] = await store.allocateIds('buildset', 1);
      const brids = await store.allocateIds('buildrequest', 10);
      const [buildset, tasks] = buildsetOf(bsid!, brids.map((brid) => ({ brid, builder: 'race' })));
      await store.recordBuildset(buildset, tasks);
      const other = h.shared ? await open() : store;
      const same = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? store : other).buildForRun(brids[0]!, 0, 'race', 1)));
      expect(new Set(same.map((b) => b.buildid)).size).to.equal(1);
      const many = await Promise.all(brids.flatMap((brid, i) => [store.buildForRun(brid, 1, 'race', 1), other.buildForRun(brid, 1, 'race', 1 + i)]));
      const byRun = new Map(many.map((b) => [b.buildrequestId, b.buildid]));
      for (const b of many) expect(byRun.get(b.buildrequestId)).to.equal(b.buildid);
      expect(await store.countBuildsOfBuilder('race')).to.equal(11);
      const numbers = (await store.buildsOfBuilder('race', { limit: 100, offset: 0, newestFirst: false })).map((b) => b.number);
      expect(new Set(numbers).size).to.equal(11);
    });

    it('polls unfinished tasks by their next check time when asked what is due, soonest first', async () => {
      const [bsid] = await store.allocateIds('buildset', 1);
      const brids = await store.allocateIds('buildrequest', 6);
      const [buildset, tasks] = buildsetOf(bsid!, brids.map((brid, i) => ({ brid, builder: 'b', at: 1_000 + i })));
      await store.recordBuildset(buildset, tasks);
      for (const t of tasks.slice(0, 5)) await store.setTaskState(t.taskId, 'created', null);
      const [t0, t1, t2, t3, t4] = tasks.map((t) => t.taskId); // the sixth stays pending: never polled
      const due = async (by: number, limit = 10) => (await store.unfinishedTasks(limit, by)).map((t) => t.buildrequestId);

      await store.saveStatus(t0!, '{"state":"running"}', false, 1_000, 5_000);
      await store.saveStatus(t1!, '{"state":"pending"}', false, 1_000, 3_000);
      await store.saveStatus(t2!, '{"state":"running"}', false, 2_000); // no next check: due from `at`
      // t3 never had a status: due at once.
      await store.saveStatus(t4!, '{"state":"completed"}', true, 1_500, 1_500); // final: never due again

      expect(await due(1_999)).to.deep.equal([brids[3]]);
      expect(await due(2_999)).to.deep.equal([brids[3], brids[2]]);
      expect(await due(3_000)).to.deep.equal([brids[3], brids[2], brids[1]]);
      expect(await due(10_000)).to.deep.equal([brids[3], brids[2], brids[1], brids[0]]);
      expect(await due(10_000, 2)).to.deep.equal([brids[3], brids[2]]);
      // Without dueBy: every unfinished task, oldest submitted first, whatever its next check.
      expect((await store.unfinishedTasks(10)).map((t) => t.buildrequestId)).to.deep.equal(brids.slice(0, 4));

      await store.saveStatus(t3!, '{"state":"running"}', false, 2_500, 4_000);
      expect(await due(3_999)).to.deep.equal([brids[2], brids[1]]);
      expect(await due(10_000)).to.deep.equal([brids[2], brids[1], brids[3], brids[0]]);
      const saved = (await store.taskById(t3!))!;
      expect([saved.status, saved.statusAt, saved.final]).to.deep.equal(['{"state":"running"}', 2_500, false]);
    });

    it('counts the created, unfinished tasks per backend and builder', async () => {
      expect(await store.countUnfinishedTasks()).to.deep.equal([]);
      const [bsid] = await store.allocateIds('buildset', 1);
      const brids = await store.allocateIds('buildrequest', 8);
      const specs: TaskSpec[] = [
        { brid: brids[0]!, builder: 'lin', state: 'created' },
        { brid: brids[1]!, builder: 'lin', state: 'created' },
        { brid: brids[2]!, builder: 'win', state: 'created' },
        { brid: brids[3]!, builder: 'lin', state: 'created', backend: 'queue2' },
        { brid: brids[4]!, builder: 'lin', state: 'pending' },
        { brid: brids[5]!, builder: 'lin', state: 'created', final: true, status: '{"state":"completed"}' },
        { brid: brids[6]!, builder: 'win', state: 'abandoned' },
        { brid: brids[7]!, builder: 'mac', state: 'rejected' },
      ];
      const [buildset, tasks] = buildsetOf(bsid!, specs);
      await store.recordBuildset(buildset, tasks);
      const counts = async () => (await store.countUnfinishedTasks()).sort((a, b) => `${a.backend}/${a.builderName}`.localeCompare(`${b.backend}/${b.builderName}`));
      expect(await counts()).to.deep.equal([
        { backend: 'queue', builderName: 'lin', count: 2 },
        { backend: 'queue', builderName: 'win', count: 1 },
        { backend: 'queue2', builderName: 'lin', count: 1 },
      ]);
      await store.saveStatus(tasks[2]!.taskId, '{"state":"failed"}', true, 9_000);
      await store.setTaskState(tasks[4]!.taskId, 'created', null);
      expect(await counts()).to.deep.equal([
        { backend: 'queue', builderName: 'lin', count: 3 },
        { backend: 'queue2', builderName: 'lin', count: 1 },
      ]);
    });

    it('records an outcome once: a duplicate resolves false and changes nothing; the same key on another backend is another build', async () => {
      const first = outcomeOf('build:41', 10_000);
      expect(await store.recordOutcome(first)).to.equal(true);
      expect(await store.recordOutcome({ ...first, result: 2, recordedAt: 99_999 })).to.equal(false);
      const elsewhere = { ...first, backend: 'queue', jobType: 'win64', result: 4 as const, submittedAt: null, origin: 'tracked' as const };
      expect(await store.recordOutcome(elsewhere)).to.equal(true);
      expect(await store.recordOutcome(elsewhere)).to.equal(false);
      expect(await store.outcomes({ since: 0, until: 20_000 })).to.deep.equal([first, elsewhere]);
    });

    it('closes the open build an outcome finishes, in the same write, and only that one', async () => {
      await store.trackBuild(openBuildOf(41, 1_000));
      await store.trackBuild(openBuildOf(42, 2_000));
      await store.trackBuild(openBuildOf(41, 1_000, { backend: 'legacy2' }));
      const open = async (backend: string) => (await store.openBuilds(backend)).map((b) => b.buildid);

      expect(await store.recordOutcome(outcomeOf('build:41', 5_000))).to.equal(true);
      expect(await open('legacy')).to.deep.equal([42]);
      expect(await open('legacy2')).to.deep.equal([41]);

      // A queue's key names no open build; nor does one that only starts like a build key.
      expect(await store.recordOutcome(outcomeOf('42/0', 5_000))).to.equal(true);
      expect(await store.recordOutcome(outcomeOf('build:42x', 5_000))).to.equal(true);
      expect(await open('legacy')).to.deep.equal([42]);

      // Seen started again after its outcome (a stale sighting): recording it again closes it without counting it twice.
      await store.trackBuild(openBuildOf(41, 1_000));
      expect(await store.recordOutcome(outcomeOf('build:41', 5_000))).to.equal(false);
      expect(await open('legacy')).to.deep.equal([42]);
      expect((await store.outcomes({ since: 0, until: 10_000 })).map((o) => o.buildKey)).to.deep.equal(['42/0', 'build:41', 'build:42x']);
    });

    it('resolves exactly one of concurrent recordings of one build true (two instances where the implementation is shared)', async () => {
      const other = h.shared ? await open() : store;
      const keys = Array.from({ length: 16 }, (_, i) => (i % 2 === 0 ? `build:${100 + i}` : `task-${i}/0`));
      for (let i = 0; i < keys.length; i += 2) await store.trackBuild(openBuildOf(100 + i, 1_000));
      const writers = [store, other, other, store];
      const results = await Promise.all(keys.flatMap((key, i) => writers.map((s, w) => s.recordOutcome(outcomeOf(key, 2_000 + i, { recordedAt: 3_000 + w })))));
      for (const [i, key] of keys.entries()) expect(results.slice(i * 4, i * 4 + 4).filter(Boolean), key).to.have.length(1);
      const recorded = await store.outcomes({ since: 0, until: 10_000 });
      expect(recorded.map((o) => o.buildKey)).to.deep.equal(keys);
      expect(await store.openBuilds('legacy')).to.deep.equal([]);
    });

    it('reads outcomes in a window (since inclusive, until exclusive), by job type and backend, by finish time then key', async () => {
      const all = {
        c: outcomeOf('c', 2_000, { backend: 'queue' }),
        e: outcomeOf('e', 3_000),
        b: outcomeOf('b', 1_000, { jobType: 'win64' }),
        d: outcomeOf('d', 2_999, { result: 2 }),
        a: outcomeOf('a', 1_000),
        a2: outcomeOf('a', 1_000, { backend: 'queue', result: 6 }),
      };
      for (const outcome of Object.values(all)) expect(await store.recordOutcome(outcome)).to.equal(true);
      const keys = async (since: number, until: number, filters: { jobType?: string; backend?: string } = {}) =>
        (await store.outcomes({ since, until, ...filters })).map((o) => `${o.backend}:${o.buildKey}`);
      expect(await store.outcomes({ since: 1_000, until: 3_000 })).to.deep.equal([all.a, all.b, all.a2, all.c, all.d]);
      expect(await keys(1_001, 3_001)).to.deep.equal(['queue:c', 'legacy:d', 'legacy:e']);
      expect(await keys(999, 1_000)).to.deep.equal([]);
      expect(await keys(3_000, 3_000)).to.deep.equal([]);
      expect(await keys(0, 10_000, { jobType: 'linux64' })).to.deep.equal(['legacy:a', 'queue:a', 'queue:c', 'legacy:d', 'legacy:e']);
      expect(await keys(0, 10_000, { backend: 'legacy' })).to.deep.equal(['legacy:a', 'legacy:b', 'legacy:d', 'legacy:e']);
      expect(await keys(0, 3_000, { jobType: 'linux64', backend: 'legacy' })).to.deep.equal(['legacy:a', 'legacy:d']);
      expect(await keys(0, 10_000, { jobType: 'mac', backend: 'legacy' })).to.deep.equal([]);
    });

    it('reads windows of 100,000 outcomes through an index, in order, giving the event loop turns on the way', async function () {
      this.timeout(120_000);
      const count = 100_000;
      const base = 1_700_000_000_000;
      const step = 6_048; // 100,000 builds over a week
      // Builds finish in sevens at one time, on both backends, so that ties fall across any boundary a sliced read may have.
      const model = (i: number): BuildOutcome => {
        const finishedAt = base + (i - (i % 7)) * step;
        return {
          backend: i % 2 === 0 ? 'legacy' : 'queue', buildKey: `build:${i}`, jobType: `job-${i % 20}`, result: (i % 7) as BuildOutcome['result'],
          submittedAt: null, startedAt: finishedAt - 60_000, finishedAt, origin: 'tracked', recordedAt: finishedAt + 1_000,
        };
      };
      const finished = `${base} + (i - i % 7) * ${step}`;
      const raw = await h.raw(location);
      const hour = { since: base + 50_000 * step, until: base + 50_000 * step + 3_600_000 };
      try {
        await raw.exec(`WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ${count - 1})
          INSERT INTO build_outcome (${OUTCOME_COLUMNS})
          SELECT CASE WHEN i % 2 = 0 THEN 'legacy' ELSE 'queue' END, 'build:' || i, 'job-' || (i % 20), i % 7, NULL,
            ${finished} - 60000, ${finished}, 'tracked', ${finished} + 1000 FROM n`);
        await raw.exec('ANALYZE');
        const after = { finishedAt: hour.since, backend: 'legacy', buildKey: 'build:50000' };
        for (const query of [hour, { ...hour, jobType: 'job-3' }, { ...hour, backend: 'queue' }]) {
          for (const slice of [undefined, { after: undefined, limit: 100 }, { after, limit: 100 }]) {
            const { text, params } = outcomesSql(query, (n) => raw.placeholder(n), slice);
            const plan = await raw.plan(text, params);
            // Sorting the few rows of a window is the engine's choice; reading every row of the table is not.
            expect(plan, plan).to.match(/build_outcome_(finished|job_type)/);
            expect(plan, plan).to.not.match(/SCAN build_outcome\b|Seq Scan/);
          }
        }
      } finally {
        await raw.close();
      }
      const order = (a: BuildOutcome, b: BuildOutcome) =>
        a.finishedAt - b.finishedAt || (a.backend < b.backend ? -1 : a.backend > b.backend ? 1 : a.buildKey < b.buildKey ? -1 : a.buildKey > b.buildKey ? 1 : 0);
      const all = Array.from({ length: count }, (_, i) => model(i)).sort(order);
      const name = (o: BuildOutcome) => `${o.backend}:${o.buildKey}`;

      const inHour = all.filter((o) => o.finishedAt >= hour.since && o.finishedAt < hour.until);
      expect(inHour.length).to.be.greaterThan(500);
      expect(await store.outcomes(hour)).to.deep.equal(inHour);
      expect(await store.outcomes({ ...hour, jobType: 'job-3', backend: 'queue' })).to.deep.equal(inHour.filter((o) => o.jobType === 'job-3' && o.backend === 'queue'));

      let turns = 0;
      let reading = true;
      const turn = () => {
        turns++;
        if (reading) setImmediate(turn);
      };
      setImmediate(turn);
      const week = await store.outcomes({ since: base, until: base + count * step });
      reading = false;
      expect(week.map(name)).to.deep.equal(all.map(name));
      for (const i of [0, 1_999, 2_000, 4_999, 5_000, 50_000, count - 1]) expect(week[i], `outcome ${i}`).to.deep.equal(all[i]);
      // Read in one go, 100,000 rows would hold every other request of the proxy until the last one.
      expect(turns).to.be.at.least(3);
    });

    it('tracks forced buildrequests once each, oldest first per backend, until closed', async () => {
      await store.trackRequests([requestOf(3, 300), requestOf(1, 100), requestOf(2, 100, { jobType: 'win64' }), requestOf(9, 50, { backend: 'legacy2' })]);
      await store.trackRequests([requestOf(1, 999, { jobType: 'changed' }), requestOf(4, 400)]);
      await store.trackRequests([]);
      expect(await store.openRequests('legacy')).to.deep.equal([requestOf(1, 100), requestOf(2, 100, { jobType: 'win64' }), requestOf(3, 300), requestOf(4, 400)]);
      expect(await store.openRequests('legacy2')).to.deep.equal([requestOf(9, 50, { backend: 'legacy2' })]);
      expect(await store.openRequests('nowhere')).to.deep.equal([]);

      await store.closeRequest('legacy', 2);
      await store.closeRequest('legacy', 9); // another backend's buildrequest: stays open there
      await store.closeRequest('legacy', 12_345);
      expect((await store.openRequests('legacy')).map((r) => r.buildrequestId)).to.deep.equal([1, 3, 4]);
      expect((await store.openRequests('legacy2')).map((r) => r.buildrequestId)).to.deep.equal([9]);

      // One write for all of them: a bad row leaves none of the others behind.
      let failure: unknown;
      await store.trackRequests([requestOf(5, 500), requestOf(6, 600, { jobType: null as unknown as string })]).catch((error: unknown) => { failure = error; });
      expect(isStranglerError(failure), String(failure)).to.equal(true);
      expect((await store.openRequests('legacy')).map((r) => r.buildrequestId)).to.deep.equal([1, 3, 4]);
    });

    it('tracks open builds once each, oldest first per backend, and refuses an unknown origin', async () => {
      const late = openBuildOf(7, 700);
      const early = openBuildOf(5, 500, { submittedAt: null, origin: 'proxy' });
      const tie = openBuildOf(6, 500);
      for (const build of [late, early, tie, openBuildOf(1, 100, { backend: 'legacy2' })]) await store.trackBuild(build);
      await store.trackBuild({ ...late, jobType: 'changed', startedAt: 1 });
      expect(await store.openBuilds('legacy')).to.deep.equal([early, tie, late]);
      expect((await store.openBuilds('legacy2')).map((b) => b.buildid)).to.deep.equal([1]);

      let failure: unknown;
      await store.trackBuild(openBuildOf(8, 800, { origin: 'guessed' as OpenBuild['origin'] })).catch((error: unknown) => { failure = error; });
      expect(isStranglerError(failure), String(failure)).to.equal(true);
      expect(await store.openBuilds('legacy')).to.deep.equal([early, tie, late]);
    });

    it('keeps a tracking cursor per backend that only ever rises (two instances where the implementation is shared)', async () => {
      expect(await store.trackingCursor('legacy')).to.equal(undefined);
      await store.setTrackingCursor('legacy', 100);
      expect(await store.trackingCursor('legacy')).to.equal(100);
      await store.setTrackingCursor('legacy', 40);
      expect(await store.trackingCursor('legacy')).to.equal(100);
      await store.setTrackingCursor('legacy', 101);
      expect(await store.trackingCursor('legacy')).to.equal(101);
      expect(await store.trackingCursor('legacy2')).to.equal(undefined);
      await store.setTrackingCursor('legacy2', 5);
      expect([await store.trackingCursor('legacy'), await store.trackingCursor('legacy2')]).to.deep.equal([101, 5]);

      const other = h.shared ? await open() : store;
      const values = [300, 120, 999, 450, 998, 101, 700, 2];
      await Promise.all(values.map((value, i) => (i % 2 === 0 ? store : other).setTrackingCursor('legacy', value)));
      expect(await store.trackingCursor('legacy')).to.equal(999);
    });

    it('migrates an empty database to the latest version, and re-opening changes nothing', async () => {
      const versioned = store as Store & { schemaVersion(): Promise<number> };
      expect(await versioned.schemaVersion()).to.equal(LATEST_VERSION);
      const [id] = await store.allocateIds('build', 1);
      await store.close();
      const again = (await open()) as Store & { schemaVersion(): Promise<number> };
      expect(await again.schemaVersion()).to.equal(LATEST_VERSION);
      const [next] = await again.allocateIds('build', 1);
      expect(next).to.be.greaterThan(id!);
    });

    for (const version of Array.from({ length: LATEST_VERSION - 1 }, (_, i) => i + 1)) {
      it(`upgrades a database at version ${version}, keeping its data`, async () => {
        await store.close();
        const older = await h.fresh();
        const old = await h.openAt(older, version);
        expect(await old.schemaVersion()).to.equal(version);
        const [bsid] = await old.allocateIds('buildset', 1);
        const [buildset, tasks] = buildsetOf(bsid!, [
          { brid: MINTED_ID_BASE + 77, builder: 'old' },
          { brid: MINTED_ID_BASE + 78, builder: 'old', state: 'created', status: '{"state":"running"}' },
        ]);
        await old.recordBuildset(buildset, tasks);
        await old.close();
        location = older;
        const upgraded = (await open()) as Store & { schemaVersion(): Promise<number> };
        expect(await upgraded.schemaVersion()).to.equal(LATEST_VERSION);
        expect(await upgraded.buildset(bsid!)).to.deep.equal(buildset);
        expect(await upgraded.tasksOfBuildset(bsid!)).to.deep.equal(tasks);
        expect((await upgraded.pendingTasks(5)).map((t) => t.buildrequestId)).to.deep.equal([MINTED_ID_BASE + 77]);
        expect((await upgraded.unfinishedTasks(5)).map((t) => t.buildrequestId)).to.deep.equal([MINTED_ID_BASE + 78]);
        // A task from before next check times is due at once, whatever the clock says.
        expect((await upgraded.unfinishedTasks(5, 0)).map((t) => t.buildrequestId)).to.deep.equal([MINTED_ID_BASE + 78]);
        expect(await upgraded.countUnfinishedTasks()).to.deep.equal([{ backend: 'queue', builderName: 'old', count: 1 }]);
        // The tracking tables start empty and work.
        expect(await upgraded.trackingCursor('legacy')).to.equal(undefined);
        expect(await upgraded.outcomes({ since: 0, until: Number.MAX_SAFE_INTEGER })).to.deep.equal([]);
        expect(await upgraded.recordOutcome(outcomeOf('build:1', 1_000))).to.equal(true);
        const [id] = await upgraded.allocateIds('buildset', 1);
        expect(id).to.be.greaterThan(bsid!);
      });
    }

    it('keeps a write whose promise resolved when the process is killed with SIGKILL right after', async () => {
      await store.close();
      const child = writerChild(location.spec, location.dataDir);
      const seen: number[] = [];
      let stderr = '';
      child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
      const killAt = 25;
      await new Promise<void>((resolve, reject) => {
        let buffered = '';
        child.stdout!.on('data', (d: Buffer) => {
          buffered += d.toString();
          const lines = buffered.split('\n');
          buffered = lines.pop()!;
          for (const line of lines) {
            seen.push(Number(line));
            if (seen.length === killAt) child.kill('SIGKILL');
          }
        });
        child.on('exit', (code, signal) => (signal === 'SIGKILL' ? resolve() : reject(new Error(`writer exited ${code}: ${stderr}`))));
      });
      const reopened = await open();
      for (const brid of seen) expect(await reopened.task(brid), `brid ${brid}`).to.not.equal(undefined);
      const [next] = await reopened.allocateIds('buildrequest', 1);
      expect(next).to.be.greaterThan(Math.max(...seen));
    });
  });
}

const embeddedDirs: string[] = [];
after(() => embeddedDirs.splice(0).forEach((dir) => rmSync(dir, { recursive: true, force: true })));
contract('embedded', () => {
  const dirs = embeddedDirs;
  return {
    shared: false,
    async fresh() {
      const dataDir = mkdtempSync(path.join(tmpdir(), 'strangler-store-'));
      dirs.push(dataDir);
      return { spec: undefined, dataDir };
    },
    openAt: (location, version) => openEmbeddedStore(location.dataDir, { migrateTo: version }) as Promise<EmbeddedStore>,
    async raw(location) {
      const db = new Database(path.join(location.dataDir, EMBEDDED_FILE_NAME));
      db.pragma('busy_timeout = 5000');
      return {
        async exec(text) {
          db.exec(text);
        },
        async plan(text, params) {
          return (db.prepare(`EXPLAIN QUERY PLAN ${text}`).all(...params) as { detail: string }[]).map((row) => row.detail).join('\n');
        },
        placeholder: () => '?',
        async close() {
          db.close();
        },
      };
    },
  };
});

let cluster: PostgresCluster | undefined;
let skipReason: string | undefined;
describe('store contract: postgres (private cluster)', function () {
  this.timeout(120_000);
  before(async function () {
    const started = await startPostgres();
    if (started.cluster === undefined) {
      skipReason = started.reason;
      this.skip();
    }
    cluster = started.cluster;
  });
  after(async () => {
    await cluster?.stop();
  });

  it('starts (or says why the postgres contract is skipped)', function () {
    if (skipReason !== undefined) this.skip();
    expect(cluster?.port).to.be.a('number');
  });

  contract('postgres', () => ({
    shared: true,
    async fresh() {
      if (cluster === undefined) throw new Error(`postgres unavailable: ${skipReason}`);
      return { spec: await cluster.createDatabase(), dataDir: '' };
    },
    openAt: (location, version) => openPostgresStore(location.spec!, { migrateTo: version }) as Promise<PostgresStore>,
    async raw(location) {
      const client = new pg.Client({ connectionString: location.spec });
      await client.connect();
      return {
        async exec(text) {
          await client.query(text);
        },
        async plan(text, params) {
          return (await client.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${text}`, params)).rows.map((row) => row['QUERY PLAN']).join('\n');
        },
        placeholder: (n) => `$${n}`,
        async close() {
          await client.end();
        },
      };
    },
  }));

  it('migrates once when several processes start together', async function () {
    if (cluster === undefined) this.skip();
    const url = await cluster!.createDatabase();
    const stores = await Promise.all(Array.from({ length: 6 }, () => openStore(url)));
    const versions = await Promise.all(stores.map((s) => (s as PostgresStore).schemaVersion()));
    expect(versions).to.deep.equal(Array(6).fill(LATEST_VERSION));
    await Promise.all(stores.map((s) => s.close()));
  });

  it('gives a lease to one replica at a time, and to another once the holder closes or its connection dies', async function () {
    if (cluster === undefined) this.skip();
    const url = await cluster!.createDatabase();
    const [a, b] = await Promise.all([openStore(url), openStore(url)]);
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    try {
      expect(await a.holdLease('queue-follow')).to.equal(true);
      expect(await b.holdLease('queue-follow')).to.equal(false);
      expect(await b.holdLease('build-tracking'), 'leases are independent').to.equal(true);
      expect(await a.holdLease('queue-follow'), 'still held when asked again').to.equal(true);

      // The holder's connection is cut (a network failure, a server that dropped it): the lease goes with it.
      const { rows } = await admin.query<{ pid: number }>(`SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objid = hashtext('queue-follow')::oid`);
      expect(rows).to.have.length(1);
      await admin.query('SELECT pg_terminate_backend($1)', [rows[0]!.pid]);
      expect(await a.holdLease('queue-follow'), 'the holder learns it lost the lease').to.equal(false);
      expect(await b.holdLease('queue-follow'), 'another replica takes it over').to.equal(true);
      expect(await a.holdLease('queue-follow'), 'and keeps it').to.equal(false);

      await b.close();
      expect(await a.holdLease('queue-follow'), 'free again once its holder closed').to.equal(true);
      expect(await a.holdLease('build-tracking')).to.equal(true);
    } finally {
      await admin.end();
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('names what failed without the password', async function () {
    if (cluster === undefined) this.skip();
    let failure: unknown;
    await openStore(`postgres://postgres:hunter2@127.0.0.1:${cluster!.port}/no_such_db`).catch((error: unknown) => { failure = error; });
    expect(isStranglerError(failure, 'STORE_UNAVAILABLE')).to.equal(true);
    expect((failure as Error).message).to.contain('no_such_db').and.not.contain('hunter2');
    expect(redactUrl('postgresql://u:s3cret@h/db?sslpassword=x')).to.not.match(/s3cret|=x\b/);
  });
});

describe('store: embedded file ownership', () => {
  it('holds every lease: one process owns the file', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'strangler-lease-'));
    const store = await openStore(undefined, { dataDir: dir });
    try {
      expect([await store.holdLease('queue-follow'), await store.holdLease('build-tracking')]).to.deep.equal([true, true]);
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a second process on the same data directory, and opens after the owner is killed', async function () {
    this.timeout(60_000);
    const dataDir = mkdtempSync(path.join(tmpdir(), 'strangler-store-'));
    try {
      const child = writerChild(undefined, dataDir);
      await new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()));
      let failure: unknown;
      await openStore(undefined, { dataDir }).catch((error: unknown) => { failure = error; });
      expect(isStranglerError(failure, 'STORE_UNAVAILABLE'), String(failure)).to.equal(true);
      expect((failure as Error).message).to.contain('another process');
      child.kill('SIGKILL');
      await new Promise((resolve) => child.once('exit', resolve));
      const store = await openStore(undefined, { dataDir });
      expect(store.kind).to.equal('embedded');
      await store.close();
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
