/**
 * The PostgreSQL store: the same interface as the embedded one, for replicas
 * that share one database.
 *
 * - Ids come from sequences (one per kind): never handed out twice, whichever
 *   process asks, and never rolled back.
 * - A write resolves after its COMMIT, which the server acknowledges only once
 *   it is durable (with the server's default `synchronous_commit = on`).
 * - Minting a build takes the builder's row in `builder_number` FOR UPDATE, so
 *   replicas minting builds of one builder take turns; the same run asked for by
 *   two replicas gets one build (the second finds the first's after the lock).
 * - Recording a finished build inserts with ON CONFLICT DO NOTHING: two
 *   replicas recording the same build at once insert one row, and the second
 *   (which waits for the first's commit) learns it was not new.
 * - Migrations run under a transaction-scoped advisory lock: processes that
 *   start together migrate once, the others wait and find nothing to do.
 * - Leases (work done by one replica at a time) are session advisory locks
 *   held on a connection of their own, outside the pool: the server releases
 *   them when that connection ends, whether the process exited, was killed or
 *   lost the network (TCP keepalive), or the server restarted.
 */
import pg from 'pg';
import { StranglerError } from '../errors.js';
import type { ResultCode } from '../taskcluster/results.js';
import type { BuildOutcome, OpenBuild, OutcomeQuery, TrackedRequest } from '../tracking/outcome.js';
import { ID_KINDS, LATEST_VERSION, pendingMigrations, SCHEMA_VERSION_TABLE_POSTGRES, sequenceName } from './migrations.js';
import {
  isMintedId, MINTED_ID_LIMIT, type BuildRecord, type BuildsetRecord, type IdKind, type Page, type SourceStampRecord, type Store,
  type TaskRecord, type TaskState,
} from './store.js';
import { OPEN_BUILD_COLUMNS, OUTCOME_COLUMNS, outcomesSql, TRACKED_REQUEST_COLUMNS } from './tracking-rows.js';
import { buildidOfKey } from '../tracking/outcome.js';

type Row = Record<string, unknown>;

/** An arbitrary constant naming this schema's migration lock among the database's advisory locks. */
const MIGRATION_LOCK_KEY = 0x5354_5250; // "STRP"
/** The first key of every lease's advisory lock (the second is the hash of its name): the proxy's own space among the database's locks. */
const LEASE_LOCK_SPACE = 0x5354_524c; // "STRL"

const INT8_OID = 20;

/**
 * BIGINT columns arrive as numbers: every id and time the store keeps is below
 * 2^53, and one that is not is a damaged row, not a value to round.
 * Per pool, not pg's global parsers: other users of pg in the process keep theirs.
 */
const TYPES = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === INT8_OID && format !== 'binary') {
      return (value: string) => {
        const n = Number(value);
        if (!Number.isSafeInteger(n)) throw new StranglerError('STORE_CORRUPT', 'store: a BIGINT column holds a value JavaScript cannot read exactly');
        return n;
      };
    }
    return pg.types.getTypeParser(oid, format);
  },
} as pg.CustomTypesConfig;

/** The URL with its password replaced, for messages and logs. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== '') parsed.password = '***'; // SECURITY: never show the database password
    parsed.searchParams.forEach((_, key) => {
      if (/pass|secret|key/i.test(key)) parsed.searchParams.set(key, '***'); // SECURITY: nor one given as a parameter
    });
    return parsed.toString();
  } catch {
    return 'postgres://(unparsable URL)'; // SECURITY: a URL that does not parse may still hold a password: show none of it
  }
}

export interface PostgresOptions {
  /** Apply migrations only up to this version (tests of upgrades); the latest by default. */
  migrateTo?: number;
  /** Connections per process. */
  poolSize?: number;
}

/** Connects, migrates, and returns the store; fails with STORE_UNAVAILABLE (password hidden) if the server cannot be used. */
export async function openPostgresStore(url: string, options: PostgresOptions = {}): Promise<PostgresStore> {
  const shown = redactUrl(url);
  const leaseConnection = () => new pg.Client({ connectionString: url, types: TYPES, connectionTimeoutMillis: 10_000, keepAlive: true, keepAliveInitialDelayMillis: 5_000 });
  const pool = new pg.Pool({ connectionString: url, max: options.poolSize ?? 10, types: TYPES, connectionTimeoutMillis: 10_000 });
  // An idle connection the server drops must not take the process down; the next query reports it.
  pool.on('error', () => {});
  try {
    await migratePostgres(pool, options.migrateTo ?? LATEST_VERSION);
  } catch (error) {
    await pool.end().catch(() => {});
    throw postgresError(error, `store: cannot open PostgreSQL at ${shown}`);
  }
  return new PostgresStore(pool, shown, leaseConnection);
}

export async function migratePostgres(pool: pg.Pool, target: number): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY]);
    await client.query(SCHEMA_VERSION_TABLE_POSTGRES);
    const current = await schemaVersionOf(client);
    if (current > LATEST_VERSION) {
      throw new StranglerError('STORE_CORRUPT', `store: the schema is at version ${current}, newer than this proxy knows (${LATEST_VERSION}); a newer proxy ran on it`);
    }
    for (const migration of pendingMigrations(current, target)) {
      for (const statement of migration.postgres) await client.query(statement);
      await client.query('INSERT INTO schema_version (version, description, applied_at) VALUES ($1, $2, $3)', [migration.version, migration.description, Date.now()]);
    }
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}

async function schemaVersionOf(client: pg.PoolClient | pg.Pool): Promise<number> {
  const { rows } = await client.query<Row>('SELECT MAX(version) AS v FROM schema_version');
  return rows[0]?.v == null ? 0 : Number(rows[0].v);
}

/**
 * Maps a pg failure to the project's error. pg's messages name the server's
 * complaint (a refused connection, a failed login, a constraint), never the
 * password; `what` carries the redacted URL.
 */
function postgresError(error: unknown, what: string): StranglerError {
  if (error instanceof StranglerError) return error;
  const message = (error as Error).message ?? String(error);
  const sqlstate = (error as { code?: unknown }).code;
  if (sqlstate === 'XX001' || sqlstate === 'XX002') return new StranglerError('STORE_CORRUPT', `${what}: ${message}`, { cause: error });
  return new StranglerError('STORE_UNAVAILABLE', `${what}: ${message}`, { cause: error });
}

function int(value: unknown): number {
  return value as number;
}

function intOrNull(value: unknown): number | null {
  return value === null || value === undefined ? null : (value as number);
}

function textOrNull(value: unknown): string | null {
  return value === null || value === undefined ? null : String(value);
}

function toTask(row: Row): TaskRecord {
  return {
    taskId: String(row.task_id),
    buildrequestId: int(row.buildrequest_id),
    buildsetId: int(row.buildset_id),
    backend: String(row.backend),
    builderName: String(row.builder_name),
    builderid: int(row.builderid),
    definition: String(row.definition),
    state: String(row.state) as TaskState,
    stateReason: textOrNull(row.state_reason),
    submittedAt: int(row.submitted_at),
    status: textOrNull(row.status),
    statusAt: intOrNull(row.status_at),
    final: row.final === true,
  };
}

function toBuildset(row: Row): BuildsetRecord {
  return {
    bsid: int(row.bsid),
    backend: String(row.backend),
    reason: String(row.reason),
    submittedAt: int(row.submitted_at),
    externalIdstring: textOrNull(row.external_idstring),
    sourcestamps: JSON.parse(String(row.sourcestamps)) as SourceStampRecord[],
    properties: String(row.properties),
    rebuildOf: intOrNull(row.rebuild_of),
  };
}

function toBuild(row: Row): BuildRecord {
  return {
    buildid: int(row.buildid),
    buildrequestId: int(row.buildrequest_id),
    runId: int(row.run_id),
    builderName: String(row.builder_name),
    number: int(row.number),
    mintedAt: int(row.minted_at),
  };
}

function toOutcome(row: Row): BuildOutcome {
  return {
    backend: String(row.backend),
    buildKey: String(row.build_key),
    jobType: String(row.job_type),
    result: int(row.result) as ResultCode,
    submittedAt: intOrNull(row.submitted_at),
    startedAt: int(row.started_at),
    finishedAt: int(row.finished_at),
    origin: String(row.origin) as BuildOutcome['origin'],
    recordedAt: int(row.recorded_at),
  };
}

function toTrackedRequest(row: Row): TrackedRequest {
  return {
    backend: String(row.backend),
    buildrequestId: int(row.buildrequest_id),
    jobType: String(row.job_type),
    submittedAt: int(row.submitted_at),
  };
}

function toOpenBuild(row: Row): OpenBuild {
  return {
    backend: String(row.backend),
    buildid: int(row.buildid),
    buildrequestId: int(row.buildrequest_id),
    jobType: String(row.job_type),
    submittedAt: intOrNull(row.submitted_at),
    startedAt: int(row.started_at),
    origin: String(row.origin) as OpenBuild['origin'],
  };
}

const TASK_COLUMNS = `buildrequest_id, task_id, buildset_id, backend, builder_name, builderid, definition, state, state_reason,
  submitted_at, status, status_at, final`;
const BUILD_COLUMNS = 'buildid, buildrequest_id, run_id, builder_name, number, minted_at';
/** Tasks a builder's lists show: a rejected or abandoned force never became a build request clients see. */
const LISTED_STATES = `state NOT IN ('rejected', 'abandoned')`;

export class PostgresStore implements Store {
  readonly kind = 'postgres' as const;
  /** The URL with its password hidden, for logs and the status page. */
  readonly shownUrl: string;
  private readonly pool: pg.Pool;
  private closing: Promise<void> | undefined;
  /** The connection holding this process's leases, once one was asked for. */
  private leaseClient: Promise<pg.Client> | undefined;
  private readonly leases = new Set<string>();

  constructor(
    pool: pg.Pool,
    shownUrl: string,
    private readonly newLeaseConnection: () => pg.Client,
  ) {
    this.pool = pool;
    this.shownUrl = shownUrl;
  }

  private async query(what: string, text: string, params: unknown[] = []): Promise<Row[]> {
    if (this.closing !== undefined) throw new StranglerError('STORE_UNAVAILABLE', `store: ${what} after close`);
    try {
      return (await this.pool.query<Row>(text, params)).rows;
    } catch (error) {
      throw postgresError(error, `store: ${what}`);
    }
  }

  /** Runs `body` in one transaction on one connection: committed when this resolves, rolled back if it throws. */
  private async transaction<T>(what: string, body: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    if (this.closing !== undefined) throw new StranglerError('STORE_UNAVAILABLE', `store: ${what} after close`);
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (error) {
      throw postgresError(error, `store: ${what}`);
    }
    try {
      await client.query('BEGIN');
      const result = await body(client);
      await client.query('COMMIT');
      return result;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      throw postgresError(error, `store: ${what}`);
    } finally {
      client.release();
    }
  }

  async schemaVersion(): Promise<number> {
    try {
      return await schemaVersionOf(this.pool);
    } catch (error) {
      throw postgresError(error, 'store: schema version');
    }
  }

  async allocateIds(kind: IdKind, count: number): Promise<number[]> {
    if (!Number.isSafeInteger(count) || count < 1) throw new RangeError(`allocateIds: count must be a positive integer, got ${count}`);
    if (!ID_KINDS.includes(kind)) throw new RangeError(`allocateIds: unknown kind ${String(kind)}`);
    const rows = await this.query('allocate ids', `SELECT nextval('${sequenceName(kind)}') AS id FROM generate_series(1, $1::int)`, [count]);
    // Replicas asking at once get interleaved values from the sequence: each still gets distinct ids, sorted here.
    const ids = rows.map((r) => int(r.id)).sort((a, b) => a - b);
    if (!ids.every(isMintedId) || ids[ids.length - 1]! > MINTED_ID_LIMIT) throw new StranglerError('STORE_CORRUPT', `store: the ${kind} sequence left the minted range`);
    return ids;
  }

  async recordBuildset(buildset: BuildsetRecord, tasks: readonly TaskRecord[]): Promise<void> {
    await this.transaction('record buildset', async (client) => {
      await client.query(
        `INSERT INTO buildset (bsid, backend, reason, submitted_at, external_idstring, sourcestamps, properties, rebuild_of)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
        [buildset.bsid, buildset.backend, buildset.reason, buildset.submittedAt, buildset.externalIdstring,
          JSON.stringify(buildset.sourcestamps), buildset.properties, buildset.rebuildOf],
      );
      for (const t of tasks) {
        await client.query(
          `INSERT INTO task (${TASK_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
          [t.buildrequestId, t.taskId, t.buildsetId, t.backend, t.builderName, t.builderid, t.definition, t.state, t.stateReason,
            t.submittedAt, t.status, t.statusAt, t.final],
        );
      }
    });
  }

  async buildset(bsid: number): Promise<BuildsetRecord | undefined> {
    const rows = await this.query('read buildset', 'SELECT * FROM buildset WHERE bsid = $1', [bsid]);
    return rows[0] === undefined ? undefined : toBuildset(rows[0]);
  }

  private async tasks(what: string, text: string, params: unknown[]): Promise<TaskRecord[]> {
    return (await this.query(what, text, params)).map(toTask);
  }

  async tasksOfBuildset(bsid: number): Promise<TaskRecord[]> {
    return this.tasks('read tasks of buildset', `SELECT ${TASK_COLUMNS} FROM task WHERE buildset_id = $1 ORDER BY buildrequest_id`, [bsid]);
  }

  async task(buildrequestId: number): Promise<TaskRecord | undefined> {
    return (await this.tasks('read task', `SELECT ${TASK_COLUMNS} FROM task WHERE buildrequest_id = $1`, [buildrequestId]))[0];
  }

  async taskById(taskId: string): Promise<TaskRecord | undefined> {
    return (await this.tasks('read task', `SELECT ${TASK_COLUMNS} FROM task WHERE task_id = $1`, [taskId]))[0];
  }

  async setTaskState(taskId: string, state: TaskState, reason: string | null, definition?: string): Promise<void> {
    const rows = definition === undefined
      ? await this.query('set task state', 'UPDATE task SET state = $1, state_reason = $2 WHERE task_id = $3 RETURNING 1 AS one', [state, reason, taskId])
      : await this.query('set task state', 'UPDATE task SET state = $1, state_reason = $2, definition = $3 WHERE task_id = $4 RETURNING 1 AS one',
        [state, reason, definition, taskId]);
    if (rows.length !== 1) throw new StranglerError('INTERNAL', `store: no task ${taskId} to set to ${state}`);
  }

  async saveStatus(taskId: string, status: string, final: boolean, at: number, nextCheckAt: number = at): Promise<void> {
    const rows = await this.query('save status',
      'UPDATE task SET status = $1, final = $2, status_at = $3, next_check_at = $4 WHERE task_id = $5 RETURNING 1 AS one',
      [status, final, at, nextCheckAt, taskId]);
    if (rows.length !== 1) throw new StranglerError('INTERNAL', `store: no task ${taskId} to save a status for`);
  }

  async pendingTasks(limit: number): Promise<TaskRecord[]> {
    return this.tasks('read pending tasks', `SELECT ${TASK_COLUMNS} FROM task WHERE state = 'pending' ORDER BY submitted_at, buildrequest_id LIMIT $1`, [limit]);
  }

  async unfinishedTasks(limit: number, dueBy?: number): Promise<TaskRecord[]> {
    if (dueBy === undefined) {
      return this.tasks('read unfinished tasks',
        `SELECT ${TASK_COLUMNS} FROM task WHERE state = 'created' AND NOT final ORDER BY submitted_at, buildrequest_id LIMIT $1`, [limit]);
    }
    return this.tasks('read due tasks',
      `SELECT ${TASK_COLUMNS} FROM task WHERE state = 'created' AND NOT final AND next_check_at <= $1 ORDER BY next_check_at, buildrequest_id LIMIT $2`,
      [dueBy, limit]);
  }

  async countUnfinishedTasks(): Promise<{ backend: string; builderName: string; count: number }[]> {
    const rows = await this.query('count unfinished tasks', `SELECT backend, builder_name, COUNT(*) AS n FROM task WHERE state = 'created' AND NOT final
      GROUP BY backend, builder_name ORDER BY backend, builder_name`);
    return rows.map((row) => ({ backend: String(row.backend), builderName: String(row.builder_name), count: int(row.n) }));
  }

  async tasksOfBuilder(builderName: string, page: Page): Promise<TaskRecord[]> {
    const order = page.newestFirst ? 'DESC' : 'ASC';
    return this.tasks('read tasks of builder',
      `SELECT ${TASK_COLUMNS} FROM task WHERE builder_name = $1 AND ${LISTED_STATES} ORDER BY buildrequest_id ${order} LIMIT $2 OFFSET $3`,
      [builderName, page.limit, page.offset]);
  }

  async countTasksOfBuilder(builderName: string): Promise<number> {
    const rows = await this.query('count tasks of builder', `SELECT COUNT(*) AS n FROM task WHERE builder_name = $1 AND ${LISTED_STATES}`, [builderName]);
    return int(rows[0]!.n);
  }

  async builderNames(): Promise<string[]> {
    const rows = await this.query('read builder names', `SELECT DISTINCT builder_name FROM task WHERE ${LISTED_STATES}`, []);
    return rows.map((row) => String(row.builder_name));
  }

  async recentTasks(backend: string, limit: number): Promise<TaskRecord[]> {
    return this.tasks('read recent tasks', `SELECT ${TASK_COLUMNS} FROM task WHERE backend = $1 ORDER BY buildrequest_id DESC LIMIT $2`, [backend, limit]);
  }

  async buildForRun(buildrequestId: number, runId: number, builderName: string, numberFloor: number): Promise<BuildRecord> {
    const ofRun = `SELECT ${BUILD_COLUMNS} FROM build WHERE buildrequest_id = $1 AND run_id = $2`;
    const seen = await this.query('read build', ofRun, [buildrequestId, runId]);
    if (seen[0] !== undefined) return toBuild(seen[0]);
    return this.transaction('mint build', async (client) => {
      await client.query('INSERT INTO builder_number (builder_name, last_number) VALUES ($1, $2) ON CONFLICT (builder_name) DO NOTHING', [builderName, numberFloor - 1]);
      const { rows: [counter] } = await client.query<Row>('SELECT last_number FROM builder_number WHERE builder_name = $1 FOR UPDATE', [builderName]);
      // Whoever held the lock before us may have minted this very run; read committed shows it now.
      const { rows: [minted] } = await client.query<Row>(ofRun, [buildrequestId, runId]);
      if (minted !== undefined) return toBuild(minted);
      const number = Math.max(numberFloor, int(counter!.last_number) + 1);
      await client.query('UPDATE builder_number SET last_number = $2 WHERE builder_name = $1', [builderName, number]);
      const { rows: [inserted] } = await client.query<Row>(
        `INSERT INTO build (${BUILD_COLUMNS}) VALUES (nextval('${sequenceName('build')}'), $1, $2, $3, $4, $5)
         ON CONFLICT (buildrequest_id, run_id) DO NOTHING RETURNING ${BUILD_COLUMNS}`,
        [buildrequestId, runId, builderName, number, Date.now()],
      );
      if (inserted !== undefined) return toBuild(inserted);
      // The same run under another builder name's lock: the unique constraint kept it to one build; return that one.
      const { rows: [other] } = await client.query<Row>(ofRun, [buildrequestId, runId]);
      return toBuild(other!);
    });
  }

  private async builds(what: string, text: string, params: unknown[]): Promise<BuildRecord[]> {
    return (await this.query(what, text, params)).map(toBuild);
  }

  async build(buildid: number): Promise<BuildRecord | undefined> {
    return (await this.builds('read build', `SELECT ${BUILD_COLUMNS} FROM build WHERE buildid = $1`, [buildid]))[0];
  }

  async buildByNumber(builderName: string, number: number): Promise<BuildRecord | undefined> {
    return (await this.builds('read build', `SELECT ${BUILD_COLUMNS} FROM build WHERE builder_name = $1 AND number = $2`, [builderName, number]))[0];
  }

  async buildsOfTask(buildrequestId: number): Promise<BuildRecord[]> {
    return this.builds('read builds of task', `SELECT ${BUILD_COLUMNS} FROM build WHERE buildrequest_id = $1 ORDER BY run_id`, [buildrequestId]);
  }

  async buildsOfBuilder(builderName: string, page: Page): Promise<BuildRecord[]> {
    const order = page.newestFirst ? 'DESC' : 'ASC';
    return this.builds('read builds of builder',
      `SELECT ${BUILD_COLUMNS} FROM build WHERE builder_name = $1 ORDER BY buildid ${order} LIMIT $2 OFFSET $3`, [builderName, page.limit, page.offset]);
  }

  async countBuildsOfBuilder(builderName: string): Promise<number> {
    const rows = await this.query('count builds of builder', 'SELECT COUNT(*) AS n FROM build WHERE builder_name = $1', [builderName]);
    return int(rows[0]!.n);
  }

  async recordOutcome(outcome: BuildOutcome): Promise<boolean> {
    return this.transaction('record outcome', async (client) => {
      const { rows } = await client.query<Row>(
        `INSERT INTO build_outcome (${OUTCOME_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (backend, build_key) DO NOTHING RETURNING 1 AS one`,
        [outcome.backend, outcome.buildKey, outcome.jobType, outcome.result, outcome.submittedAt, outcome.startedAt, outcome.finishedAt,
          outcome.origin, outcome.recordedAt],
      );
      // Also when it was recorded before: an open row tracked again since (a stale sighting) is closed all the same.
      const buildid = buildidOfKey(outcome.buildKey);
      if (buildid !== undefined) await client.query('DELETE FROM open_build WHERE backend = $1 AND buildid = $2', [outcome.backend, buildid]);
      return rows.length === 1;
    });
  }

  async outcomes(query: OutcomeQuery): Promise<BuildOutcome[]> {
    const { text, params } = outcomesSql(query, (n) => `$${n}`);
    return (await this.query('read outcomes', text, params)).map(toOutcome);
  }

  async trackRequests(requests: readonly TrackedRequest[]): Promise<void> {
    await this.transaction('track requests', async (client) => {
      for (const r of requests) {
        await client.query(
          `INSERT INTO tracked_request (${TRACKED_REQUEST_COLUMNS}) VALUES ($1, $2, $3, $4) ON CONFLICT (backend, buildrequest_id) DO NOTHING`,
          [r.backend, r.buildrequestId, r.jobType, r.submittedAt],
        );
      }
    });
  }

  async openRequests(backend: string): Promise<TrackedRequest[]> {
    const rows = await this.query('read open requests',
      `SELECT ${TRACKED_REQUEST_COLUMNS} FROM tracked_request WHERE backend = $1 ORDER BY submitted_at, buildrequest_id`, [backend]);
    return rows.map(toTrackedRequest);
  }

  async closeRequest(backend: string, buildrequestId: number): Promise<void> {
    await this.query('close request', 'DELETE FROM tracked_request WHERE backend = $1 AND buildrequest_id = $2', [backend, buildrequestId]);
  }

  async trackBuild(build: OpenBuild): Promise<void> {
    await this.query('track build',
      `INSERT INTO open_build (${OPEN_BUILD_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (backend, buildid) DO NOTHING`,
      [build.backend, build.buildid, build.buildrequestId, build.jobType, build.submittedAt, build.startedAt, build.origin]);
  }

  async openBuilds(backend: string): Promise<OpenBuild[]> {
    const rows = await this.query('read open builds', `SELECT ${OPEN_BUILD_COLUMNS} FROM open_build WHERE backend = $1 ORDER BY started_at, buildid`, [backend]);
    return rows.map(toOpenBuild);
  }

  async trackingCursor(backend: string): Promise<number | undefined> {
    const rows = await this.query('read tracking cursor', 'SELECT buildid FROM tracking_cursor WHERE backend = $1', [backend]);
    return rows[0] === undefined ? undefined : int(rows[0].buildid);
  }

  async setTrackingCursor(backend: string, buildid: number): Promise<void> {
    // The WHERE keeps the higher of the two: replicas scanning at once never move the cursor back.
    await this.query('set tracking cursor',
      `INSERT INTO tracking_cursor (backend, buildid) VALUES ($1, $2)
       ON CONFLICT (backend) DO UPDATE SET buildid = excluded.buildid WHERE excluded.buildid > tracking_cursor.buildid`, [backend, buildid]);
  }

  async holdLease(name: string): Promise<boolean> {
    if (this.closing !== undefined) return false;
    try {
      const client = await this.leaseConnection();
      // A lease held is checked too: a connection that died lost its locks, and says so by failing.
      const { rows } = this.leases.has(name)
        ? await client.query<Row>('SELECT TRUE AS held')
        : await client.query<Row>('SELECT pg_try_advisory_lock($1, hashtext($2)) AS held', [LEASE_LOCK_SPACE, name]);
      if (rows[0]?.held === true) this.leases.add(name);
      return rows[0]?.held === true;
    } catch {
      this.dropLeaseConnection();
      return false;
    }
  }

  private leaseConnection(): Promise<pg.Client> {
    if (this.leaseClient === undefined) {
      const client = this.newLeaseConnection();
      const connecting = client.connect().then(() => client);
      // A connection the server ends (a restart) loses every lease with it; the next ask connects again.
      const lost = () => {
        if (this.leaseClient === connecting) this.dropLeaseConnection();
      };
      client.on('error', lost);
      client.on('end', lost);
      this.leaseClient = connecting;
    }
    return this.leaseClient;
  }

  private dropLeaseConnection(): void {
    const client = this.leaseClient;
    this.leaseClient = undefined;
    this.leases.clear();
    void client?.then((c) => c.end()).catch(() => {});
  }

  async close(): Promise<void> {
    // pool.end() waits for checked-out clients, so writes in flight finish first; ending the lease connection releases the leases.
    this.closing ??= Promise.all([this.pool.end(), this.leaseClient?.then((c) => c.end()).catch(() => {})]).then(() => undefined);
    await this.closing;
  }
}
