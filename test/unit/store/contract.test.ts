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
import { isStranglerError } from '../../../src/errors.js';
import { openEmbeddedStore, type EmbeddedStore } from '../../../src/store/embedded.js';
import { LATEST_VERSION } from '../../../src/store/migrations.js';
import { openStore } from '../../../src/store/open.js';
import { openPostgresStore, redactUrl, type PostgresStore } from '../../../src/store/postgres.js';
import { MINTED_ID_BASE, type BuildsetRecord, type Store, type TaskRecord } from '../../../src/store/store.js';
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
}

let seq = 0;
function buildsetOf(bsid: number, tasks: { brid: number; builder: string; state?: TaskRecord['state']; at?: number }[]): [BuildsetRecord, TaskRecord[]] {
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
    backend: 'queue',
    builderName: t.builder,
    builderid: 7,
    definition: JSON.stringify({ taskQueueId: 'proj/linux', payload: { n: seq } }),
    state: t.state ?? 'pending',
    stateReason: null,
    submittedAt: t.at ?? 1_700_000_000_000 + seq,
    status: null,
    statusAt: null,
    final: false,
  }));
  return [buildset, records];
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

    it('upgrades a database at an older version, keeping its data', async () => {
      await store.close();
      const older = await h.fresh();
      const v1 = await h.openAt(older, 1);
      expect(await v1.schemaVersion()).to.equal(1);
      const [bsid] = await v1.allocateIds('buildset', 1);
      const [buildset, tasks] = buildsetOf(bsid!, [{ brid: MINTED_ID_BASE + 77, builder: 'old' }]);
      await v1.recordBuildset(buildset, tasks);
      await v1.close();
      location = older;
      const upgraded = (await open()) as Store & { schemaVersion(): Promise<number> };
      expect(await upgraded.schemaVersion()).to.equal(LATEST_VERSION);
      expect(await upgraded.task(MINTED_ID_BASE + 77)).to.deep.equal(tasks[0]);
      expect((await upgraded.pendingTasks(5)).map((t) => t.buildrequestId)).to.deep.equal([MINTED_ID_BASE + 77]);
    });

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
  }));

  it('migrates once when several processes start together', async function () {
    if (cluster === undefined) this.skip();
    const url = await cluster!.createDatabase();
    const stores = await Promise.all(Array.from({ length: 6 }, () => openStore(url)));
    const versions = await Promise.all(stores.map((s) => (s as PostgresStore).schemaVersion()));
    expect(versions).to.deep.equal(Array(6).fill(LATEST_VERSION));
    await Promise.all(stores.map((s) => s.close()));
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
