/**
 * The embedded store: one SQLite file (`store.sqlite`) in the data directory,
 * through libsql (docs/decisions/0006-embedded-store.md says why this engine).
 *
 * - Durable on resolve: WAL with `synchronous = FULL`, so every commit fsyncs
 *   the log before the call returns; a process killed with SIGKILL right after
 *   finds the write at restart (SQLite replays the log on open).
 * - One process owns the data directory: it holds an exclusive SQLite (fcntl)
 *   lock on `store.lock` while open, so a second proxy on the same directory
 *   fails at open with STORE_UNAVAILABLE instead of sharing the store. The
 *   kernel drops that lock when the owner dies, so a killed proxy never leaves
 *   a stale lock behind. Replicas share PostgreSQL instead (postgres.ts).
 *   The lock is a file of its own because libsql's close() keeps a connection
 *   open while any statement prepared on it is still reachable; the lock file
 *   is only ever used through exec(), so closing it releases the lock at once.
 * - Calls are synchronous inside: each method runs to its end on the event
 *   loop, so no two of them interleave and a read after a resolved write sees it.
 *   The one exception is `outcomes()`, which reads a long window in slices with
 *   the event loop free between them (writes may land in between; each slice
 *   is consistent, and no row is read twice or skipped).
 */
import fs from 'node:fs';
import path from 'node:path';
import Database from 'libsql';
import { StranglerError } from '../errors.js';
import type { ResultCode } from '../taskcluster/results.js';
import type { BuildOutcome, OpenBuild, OutcomeQuery, TrackedRequest } from '../tracking/outcome.js';
import { LATEST_VERSION, pendingMigrations, SCHEMA_VERSION_TABLE_SQLITE } from './migrations.js';
import {
  isMintedId, MINTED_ID_LIMIT, type BuildRecord, type BuildsetRecord, type IdKind, type Page, type SourceStampRecord, type Store,
  type TaskRecord, type TaskState,
} from './store.js';
import { OPEN_BUILD_COLUMNS, OUTCOME_COLUMNS, outcomesSql, TRACKED_REQUEST_COLUMNS } from './tracking-rows.js';
import { buildidOfKey } from '../tracking/outcome.js';

export const EMBEDDED_FILE_NAME = 'store.sqlite';
export const LOCK_FILE_NAME = 'store.lock';

type Row = Record<string, unknown>;

export interface EmbeddedOptions {
  /** Apply migrations only up to this version (tests of upgrades); the latest by default. */
  migrateTo?: number;
}

/** Opens (creating if needed) the store in `dataDir`. */
export async function openEmbeddedStore(dataDir: string, options: EmbeddedOptions = {}): Promise<EmbeddedStore> {
  const file = path.join(dataDir, EMBEDDED_FILE_NAME);
  try {
    fs.mkdirSync(dataDir, { recursive: true });
  } catch (error) {
    throw new StranglerError('STORE_UNAVAILABLE', `store: cannot create the data directory ${dataDir}: ${(error as Error).message}`, { cause: error });
  }
  let lock: Database.Database | undefined;
  let db: Database.Database | undefined;
  try {
    lock = new Database(path.join(dataDir, LOCK_FILE_NAME));
    // A write in exclusive locking mode keeps the lock until close (or death).
    lock.exec(`PRAGMA busy_timeout = 0; PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE;
      CREATE TABLE IF NOT EXISTS owner (pid INTEGER NOT NULL); DELETE FROM owner; INSERT INTO owner (pid) VALUES (${process.pid}); COMMIT`);
    db = new Database(file);
    db.pragma('busy_timeout = 5000');
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.pragma('foreign_keys = ON');
    migrateSqlite(db, options.migrateTo ?? LATEST_VERSION);
    return new EmbeddedStore(db, lock, file);
  } catch (error) {
    for (const handle of [db, lock]) {
      try {
        handle?.close();
      } catch {
        // The open already failed; that error is the one worth reporting.
      }
    }
    throw storeError(error, `store: cannot open ${file}`);
  }
}

/** Applies the migrations the file lacks, in one write transaction (which also takes the exclusive lock). */
export function migrateSqlite(db: Database.Database, target: number): void {
  db.exec('BEGIN IMMEDIATE');
  try {
    db.exec(SCHEMA_VERSION_TABLE_SQLITE);
    const current = schemaVersionSqlite(db);
    if (current > LATEST_VERSION) {
      throw new StranglerError('STORE_CORRUPT', `store: the schema is at version ${current}, newer than this proxy knows (${LATEST_VERSION}); a newer proxy ran on it`);
    }
    for (const migration of pendingMigrations(current, target)) {
      for (const statement of migration.sqlite) db.exec(statement);
      db.prepare('INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)').run(migration.version, migration.description, Date.now());
    }
    db.exec('COMMIT');
  } catch (error) {
    if (db.inTransaction) db.exec('ROLLBACK');
    throw error;
  }
}

export function schemaVersionSqlite(db: Database.Database): number {
  const row = db.prepare('SELECT MAX(version) AS v FROM schema_version').get() as Row | undefined;
  return row?.v == null ? 0 : Number(row.v);
}

/** Maps an engine failure to the project's error, keeping the engine's message (it names no secret). */
function storeError(error: unknown, what: string): StranglerError {
  if (error instanceof StranglerError) return error;
  const code = (error as { code?: unknown }).code;
  const message = (error as Error).message ?? String(error);
  if (code === 'SQLITE_CORRUPT' || code === 'SQLITE_NOTADB') {
    return new StranglerError('STORE_CORRUPT', `${what}: ${message}`, { cause: error });
  }
  if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED') {
    return new StranglerError('STORE_UNAVAILABLE', `${what}: the file is held by another process (one proxy per data directory; replicas share PostgreSQL)`, { cause: error });
  }
  return new StranglerError('STORE_UNAVAILABLE', `${what}: ${message}`, { cause: error });
}

function int(value: unknown, column: string): number {
  const n = typeof value === 'bigint' ? Number(value) : (value as number);
  if (!Number.isSafeInteger(n)) throw new StranglerError('STORE_CORRUPT', `store: ${column} is not an integer JavaScript reads exactly`);
  return n;
}

function intOrNull(value: unknown, column: string): number | null {
  return value === null || value === undefined ? null : int(value, column);
}

function text(value: unknown): string {
  return String(value);
}

function textOrNull(value: unknown): string | null {
  return value === null || value === undefined ? null : String(value);
}

function toTask(row: Row): TaskRecord {
  return {
    taskId: text(row.task_id),
    buildrequestId: int(row.buildrequest_id, 'buildrequest_id'),
    buildsetId: int(row.buildset_id, 'buildset_id'),
    backend: text(row.backend),
    builderName: text(row.builder_name),
    builderid: int(row.builderid, 'builderid'),
    definition: text(row.definition),
    state: text(row.state) as TaskState,
    stateReason: textOrNull(row.state_reason),
    submittedAt: int(row.submitted_at, 'submitted_at'),
    status: textOrNull(row.status),
    statusAt: intOrNull(row.status_at, 'status_at'),
    final: Number(row.final) === 1,
  };
}

function toBuildset(row: Row): BuildsetRecord {
  return {
    bsid: int(row.bsid, 'bsid'),
    backend: text(row.backend),
    reason: text(row.reason),
    submittedAt: int(row.submitted_at, 'submitted_at'),
    externalIdstring: textOrNull(row.external_idstring),
    sourcestamps: JSON.parse(text(row.sourcestamps)) as SourceStampRecord[],
    properties: text(row.properties),
    rebuildOf: intOrNull(row.rebuild_of, 'rebuild_of'),
  };
}

function toBuild(row: Row): BuildRecord {
  return {
    buildid: int(row.buildid, 'buildid'),
    buildrequestId: int(row.buildrequest_id, 'buildrequest_id'),
    runId: int(row.run_id, 'run_id'),
    builderName: text(row.builder_name),
    number: int(row.number, 'number'),
    mintedAt: int(row.minted_at, 'minted_at'),
  };
}

function toOutcome(row: Row): BuildOutcome {
  return {
    backend: text(row.backend),
    buildKey: text(row.build_key),
    jobType: text(row.job_type),
    result: int(row.result, 'result') as ResultCode,
    submittedAt: intOrNull(row.submitted_at, 'submitted_at'),
    startedAt: int(row.started_at, 'started_at'),
    finishedAt: int(row.finished_at, 'finished_at'),
    origin: text(row.origin) as BuildOutcome['origin'],
    recordedAt: int(row.recorded_at, 'recorded_at'),
  };
}

function toTrackedRequest(row: Row): TrackedRequest {
  return {
    backend: text(row.backend),
    buildrequestId: int(row.buildrequest_id, 'buildrequest_id'),
    jobType: text(row.job_type),
    submittedAt: int(row.submitted_at, 'submitted_at'),
  };
}

function toOpenBuild(row: Row): OpenBuild {
  return {
    backend: text(row.backend),
    buildid: int(row.buildid, 'buildid'),
    buildrequestId: int(row.buildrequest_id, 'buildrequest_id'),
    jobType: text(row.job_type),
    submittedAt: intOrNull(row.submitted_at, 'submitted_at'),
    startedAt: int(row.started_at, 'started_at'),
    origin: text(row.origin) as OpenBuild['origin'],
  };
}

const TASK_COLUMNS = `buildrequest_id, task_id, buildset_id, backend, builder_name, builderid, definition, state, state_reason,
  submitted_at, status, status_at, final`;
const BUILD_COLUMNS = 'buildid, buildrequest_id, run_id, builder_name, number, minted_at';
/** Outcomes read in one go before the event loop gets a turn. */
const OUTCOME_SLICE = 2_000;
/** Tasks a builder's lists show: a rejected or abandoned force never became a build request clients see. */
const LISTED_STATES = `state NOT IN ('rejected', 'abandoned')`;

export class EmbeddedStore implements Store {
  readonly kind = 'embedded' as const;
  readonly file: string;
  private readonly db: Database.Database;
  private readonly lock: Database.Database;
  private readonly statements = new Map<string, Database.Statement>();
  private closed = false;

  constructor(db: Database.Database, lock: Database.Database, file: string) {
    this.db = db;
    this.lock = lock;
    this.file = file;
  }

  /** One prepared statement per SQL text, kept for the store's life: lookups then cost one step. */
  private sql(source: string): Database.Statement {
    let statement = this.statements.get(source);
    if (statement === undefined) {
      statement = this.db.prepare(source);
      this.statements.set(source, statement);
    }
    return statement;
  }

  private run<T>(what: string, body: () => T): T {
    if (this.closed) throw new StranglerError('STORE_UNAVAILABLE', `store: ${what} after close`);
    try {
      return body();
    } catch (error) {
      throw storeError(error, `store: ${what}`);
    }
  }

  /** Runs `body` in one write transaction: committed (and fsynced) when this returns, rolled back if it throws. */
  private write<T>(what: string, body: () => T): T {
    return this.run(what, () => {
      this.db.exec('BEGIN IMMEDIATE');
      try {
        const result = body();
        this.db.exec('COMMIT');
        return result;
      } catch (error) {
        if (this.db.inTransaction) this.db.exec('ROLLBACK');
        throw error;
      }
    });
  }

  /** The schema version of the file (tests and the status page). */
  async schemaVersion(): Promise<number> {
    return this.run('schema version', () => schemaVersionSqlite(this.db));
  }

  async allocateIds(kind: IdKind, count: number): Promise<number[]> {
    if (!Number.isSafeInteger(count) || count < 1) throw new RangeError(`allocateIds: count must be a positive integer, got ${count}`);
    return this.write('allocate ids', () => this.allocateInTransaction(kind, count));
  }

  private allocateInTransaction(kind: IdKind, count: number): number[] {
    const row = this.sql('UPDATE id_counter SET next_id = next_id + ? WHERE kind = ? RETURNING next_id').get(count, kind) as Row | undefined;
    if (row === undefined) throw new StranglerError('STORE_CORRUPT', `store: no id counter for ${kind}`);
    const end = int(row.next_id, 'next_id');
    const first = end - count;
    if (!isMintedId(first) || end - 1 > MINTED_ID_LIMIT) throw new StranglerError('STORE_CORRUPT', `store: the ${kind} id counter left the minted range`);
    return Array.from({ length: count }, (_, i) => first + i);
  }

  async recordBuildset(buildset: BuildsetRecord, tasks: readonly TaskRecord[]): Promise<void> {
    this.write('record buildset', () => {
      this.sql(`INSERT INTO buildset (bsid, backend, reason, submitted_at, external_idstring, sourcestamps, properties, rebuild_of)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?)`).run(
        buildset.bsid, buildset.backend, buildset.reason, buildset.submittedAt, buildset.externalIdstring,
        JSON.stringify(buildset.sourcestamps), buildset.properties, buildset.rebuildOf,
      );
      const insert = this.sql(`INSERT INTO task (${TASK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
      for (const t of tasks) {
        insert.run(
          t.buildrequestId, t.taskId, t.buildsetId, t.backend, t.builderName, t.builderid, t.definition, t.state, t.stateReason,
          t.submittedAt, t.status, t.statusAt, t.final ? 1 : 0,
        );
      }
    });
  }

  async buildset(bsid: number): Promise<BuildsetRecord | undefined> {
    return this.run('read buildset', () => {
      const row = this.sql('SELECT * FROM buildset WHERE bsid = ?').get(bsid) as Row | undefined;
      return row === undefined ? undefined : toBuildset(row);
    });
  }

  private tasks(what: string, source: string, ...params: unknown[]): TaskRecord[] {
    return this.run(what, () => (this.sql(source).all(...params) as Row[]).map(toTask));
  }

  private oneTask(what: string, source: string, param: unknown): TaskRecord | undefined {
    return this.run(what, () => {
      const row = this.sql(source).get(param) as Row | undefined;
      return row === undefined ? undefined : toTask(row);
    });
  }

  async tasksOfBuildset(bsid: number): Promise<TaskRecord[]> {
    return this.tasks('read tasks of buildset', `SELECT ${TASK_COLUMNS} FROM task WHERE buildset_id = ? ORDER BY buildrequest_id`, bsid);
  }

  async task(buildrequestId: number): Promise<TaskRecord | undefined> {
    return this.oneTask('read task', `SELECT ${TASK_COLUMNS} FROM task WHERE buildrequest_id = ?`, buildrequestId);
  }

  async taskById(taskId: string): Promise<TaskRecord | undefined> {
    return this.oneTask('read task', `SELECT ${TASK_COLUMNS} FROM task WHERE task_id = ?`, taskId);
  }

  async setTaskState(taskId: string, state: TaskState, reason: string | null, definition?: string): Promise<void> {
    this.write('set task state', () => {
      const result = definition === undefined
        ? this.sql('UPDATE task SET state = ?, state_reason = ? WHERE task_id = ?').run(state, reason, taskId)
        : this.sql('UPDATE task SET state = ?, state_reason = ?, definition = ? WHERE task_id = ?').run(state, reason, definition, taskId);
      if (result.changes !== 1) throw new StranglerError('INTERNAL', `store: no task ${taskId} to set to ${state}`);
    });
  }

  async saveStatus(taskId: string, status: string, final: boolean, at: number, nextCheckAt: number = at): Promise<void> {
    this.write('save status', () => {
      const result = this.sql('UPDATE task SET status = ?, final = ?, status_at = ?, next_check_at = ? WHERE task_id = ?')
        .run(status, final ? 1 : 0, at, nextCheckAt, taskId);
      if (result.changes !== 1) throw new StranglerError('INTERNAL', `store: no task ${taskId} to save a status for`);
    });
  }

  async pendingTasks(limit: number): Promise<TaskRecord[]> {
    return this.tasks('read pending tasks', `SELECT ${TASK_COLUMNS} FROM task WHERE state = 'pending' ORDER BY submitted_at, buildrequest_id LIMIT ?`, limit);
  }

  async unfinishedTasks(limit: number, dueBy?: number): Promise<TaskRecord[]> {
    if (dueBy === undefined) {
      return this.tasks('read unfinished tasks',
        `SELECT ${TASK_COLUMNS} FROM task WHERE state = 'created' AND final = 0 ORDER BY submitted_at, buildrequest_id LIMIT ?`, limit);
    }
    return this.tasks('read due tasks',
      `SELECT ${TASK_COLUMNS} FROM task WHERE state = 'created' AND final = 0 AND next_check_at <= ? ORDER BY next_check_at, buildrequest_id LIMIT ?`,
      dueBy, limit);
  }

  async countUnfinishedTasks(): Promise<{ backend: string; builderName: string; count: number }[]> {
    return this.run('count unfinished tasks', () =>
      (this.sql(`SELECT backend, builder_name, COUNT(*) AS n FROM task WHERE state = 'created' AND final = 0
        GROUP BY backend, builder_name ORDER BY backend, builder_name`).all() as Row[])
        .map((row) => ({ backend: text(row.backend), builderName: text(row.builder_name), count: int(row.n, 'count') })));
  }

  async tasksOfBuilder(builderName: string, page: Page): Promise<TaskRecord[]> {
    const order = page.newestFirst ? 'DESC' : 'ASC';
    return this.tasks('read tasks of builder',
      `SELECT ${TASK_COLUMNS} FROM task WHERE builder_name = ? AND ${LISTED_STATES} ORDER BY buildrequest_id ${order} LIMIT ? OFFSET ?`,
      builderName, page.limit, page.offset);
  }

  async countTasksOfBuilder(builderName: string): Promise<number> {
    return this.run('count tasks of builder', () =>
      int((this.sql(`SELECT COUNT(*) AS n FROM task WHERE builder_name = ? AND ${LISTED_STATES}`).get(builderName) as Row).n, 'count'));
  }

  async builderNames(): Promise<string[]> {
    return this.run('read builder names', () =>
      (this.sql(`SELECT DISTINCT builder_name FROM task WHERE ${LISTED_STATES}`).all() as Row[]).map((row) => text(row.builder_name)));
  }

  async recentTasks(backend: string, limit: number): Promise<TaskRecord[]> {
    return this.tasks('read recent tasks', `SELECT ${TASK_COLUMNS} FROM task WHERE backend = ? ORDER BY buildrequest_id DESC LIMIT ?`, backend, limit);
  }

  async buildForRun(buildrequestId: number, runId: number, builderName: string, numberFloor: number): Promise<BuildRecord> {
    // Read and mint in one synchronous transaction: no other call runs in between, so one run gets one build.
    return this.write('mint build', () => {
      const existing = this.sql(`SELECT ${BUILD_COLUMNS} FROM build WHERE buildrequest_id = ? AND run_id = ?`).get(buildrequestId, runId) as Row | undefined;
      if (existing !== undefined) return toBuild(existing);
      const last = this.sql('SELECT last_number FROM builder_number WHERE builder_name = ?').get(builderName) as Row | undefined;
      const number = Math.max(numberFloor, last === undefined ? numberFloor : int(last.last_number, 'last_number') + 1);
      this.sql('INSERT INTO builder_number (builder_name, last_number) VALUES (?, ?) ON CONFLICT (builder_name) DO UPDATE SET last_number = excluded.last_number')
        .run(builderName, number);
      const [buildid] = this.allocateInTransaction('build', 1);
      const build: BuildRecord = { buildid: buildid!, buildrequestId, runId, builderName, number, mintedAt: Date.now() };
      this.sql(`INSERT INTO build (${BUILD_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)`)
        .run(build.buildid, build.buildrequestId, build.runId, build.builderName, build.number, build.mintedAt);
      return build;
    });
  }

  private builds(what: string, source: string, ...params: unknown[]): BuildRecord[] {
    return this.run(what, () => (this.sql(source).all(...params) as Row[]).map(toBuild));
  }

  async build(buildid: number): Promise<BuildRecord | undefined> {
    return this.builds('read build', `SELECT ${BUILD_COLUMNS} FROM build WHERE buildid = ?`, buildid)[0];
  }

  async buildByNumber(builderName: string, number: number): Promise<BuildRecord | undefined> {
    return this.builds('read build', `SELECT ${BUILD_COLUMNS} FROM build WHERE builder_name = ? AND number = ?`, builderName, number)[0];
  }

  async buildsOfTask(buildrequestId: number): Promise<BuildRecord[]> {
    return this.builds('read builds of task', `SELECT ${BUILD_COLUMNS} FROM build WHERE buildrequest_id = ? ORDER BY run_id`, buildrequestId);
  }

  async buildsOfBuilder(builderName: string, page: Page): Promise<BuildRecord[]> {
    const order = page.newestFirst ? 'DESC' : 'ASC';
    return this.builds('read builds of builder',
      `SELECT ${BUILD_COLUMNS} FROM build WHERE builder_name = ? ORDER BY buildid ${order} LIMIT ? OFFSET ?`, builderName, page.limit, page.offset);
  }

  async countBuildsOfBuilder(builderName: string): Promise<number> {
    return this.run('count builds of builder', () =>
      int((this.sql('SELECT COUNT(*) AS n FROM build WHERE builder_name = ?').get(builderName) as Row).n, 'count'));
  }

  async recordOutcome(outcome: BuildOutcome): Promise<boolean> {
    return this.write('record outcome', () => {
      const inserted = this.sql(`INSERT INTO build_outcome (${OUTCOME_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (backend, build_key) DO NOTHING`).run(
        outcome.backend, outcome.buildKey, outcome.jobType, outcome.result, outcome.submittedAt, outcome.startedAt, outcome.finishedAt,
        outcome.origin, outcome.recordedAt,
      ).changes === 1;
      // Also when it was recorded before: an open row tracked again since (a stale sighting) is closed all the same.
      const buildid = buildidOfKey(outcome.buildKey);
      if (buildid !== undefined) this.sql('DELETE FROM open_build WHERE backend = ? AND buildid = ?').run(outcome.backend, buildid);
      return inserted;
    });
  }

  /**
   * Read in slices, the event loop free between them: a week of builds is a
   * long read, and the proxy's requests must not wait for all of it. A build
   * recorded meanwhile is in the answer if it sorts after the slices read.
   */
  async outcomes(query: OutcomeQuery): Promise<BuildOutcome[]> {
    const found: BuildOutcome[] = [];
    for (let after: BuildOutcome | undefined; ;) {
      const { text: source, params } = outcomesSql(query, () => '?', { after, limit: OUTCOME_SLICE });
      const slice = this.run('read outcomes', () => (this.sql(source).all(...params) as Row[]).map(toOutcome));
      for (const outcome of slice) found.push(outcome);
      if (slice.length < OUTCOME_SLICE) return found;
      after = slice[slice.length - 1];
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  async trackRequests(requests: readonly TrackedRequest[]): Promise<void> {
    this.write('track requests', () => {
      const insert = this.sql(`INSERT INTO tracked_request (${TRACKED_REQUEST_COLUMNS}) VALUES (?, ?, ?, ?) ON CONFLICT (backend, buildrequest_id) DO NOTHING`);
      for (const r of requests) insert.run(r.backend, r.buildrequestId, r.jobType, r.submittedAt);
    });
  }

  async openRequests(backend: string): Promise<TrackedRequest[]> {
    return this.run('read open requests', () =>
      (this.sql(`SELECT ${TRACKED_REQUEST_COLUMNS} FROM tracked_request WHERE backend = ? ORDER BY submitted_at, buildrequest_id`).all(backend) as Row[])
        .map(toTrackedRequest));
  }

  async closeRequest(backend: string, buildrequestId: number): Promise<void> {
    this.write('close request', () => this.sql('DELETE FROM tracked_request WHERE backend = ? AND buildrequest_id = ?').run(backend, buildrequestId));
  }

  async trackBuild(build: OpenBuild): Promise<void> {
    this.write('track build', () =>
      this.sql(`INSERT INTO open_build (${OPEN_BUILD_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (backend, buildid) DO NOTHING`)
        .run(build.backend, build.buildid, build.buildrequestId, build.jobType, build.submittedAt, build.startedAt, build.origin));
  }

  async openBuilds(backend: string): Promise<OpenBuild[]> {
    return this.run('read open builds', () =>
      (this.sql(`SELECT ${OPEN_BUILD_COLUMNS} FROM open_build WHERE backend = ? ORDER BY started_at, buildid`).all(backend) as Row[]).map(toOpenBuild));
  }

  async trackingCursor(backend: string): Promise<number | undefined> {
    return this.run('read tracking cursor', () => {
      const row = this.sql('SELECT buildid FROM tracking_cursor WHERE backend = ?').get(backend) as Row | undefined;
      return row === undefined ? undefined : int(row.buildid, 'buildid');
    });
  }

  async setTrackingCursor(backend: string, buildid: number): Promise<void> {
    this.write('set tracking cursor', () =>
      this.sql(`INSERT INTO tracking_cursor (backend, buildid) VALUES (?, ?)
        ON CONFLICT (backend) DO UPDATE SET buildid = excluded.buildid WHERE excluded.buildid > tracking_cursor.buildid`).run(backend, buildid));
  }

  /** One process owns the file (its lock), so it holds every lease. */
  async holdLease(_name: string): Promise<boolean> {
    return true;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.statements.clear();
    this.db.close();
    this.lock.close();
  }
}
