/**
 * The store's schema, as numbered migrations that each implementation applies
 * in order inside one transaction, recording each in `schema_version`. A
 * database at an older version is brought up to date when it is opened; one at
 * a newer version (a newer proxy ran on it) is refused, never downgraded.
 *
 * Both dialects keep the same tables and columns so that a dump of one reads
 * like the other; they differ only where SQL does (BIGINT and BOOLEAN, sequences).
 * A released migration is never edited: a change is a new number.
 */
import { MINTED_ID_BASE, type IdKind } from './store.js';

export interface Migration {
  version: number;
  description: string;
  sqlite: readonly string[];
  postgres: readonly string[];
}

export const ID_KINDS: readonly IdKind[] = ['buildset', 'buildrequest', 'build'];

/** The PostgreSQL sequence that mints ids of a kind. */
export function sequenceName(kind: IdKind): string {
  return `minted_${kind}_id`;
}

/**
 * Migration 3's tables, the same in both dialects but for the integer types:
 * epoch ms and ids are `bigint`, a Buildbot result code `small`. Part of a
 * released migration: never edited, like the SQL spelled out below.
 */
function buildTrackingTables(bigint: string, small: string): string[] {
  return [
    `CREATE TABLE build_outcome (
      backend TEXT NOT NULL,
      build_key TEXT NOT NULL,
      job_type TEXT NOT NULL,
      result ${small} NOT NULL CHECK (result BETWEEN 0 AND 6),
      submitted_at ${bigint},
      started_at ${bigint} NOT NULL,
      finished_at ${bigint} NOT NULL,
      origin TEXT NOT NULL CHECK (origin IN ('proxy', 'tracked')),
      recorded_at ${bigint} NOT NULL,
      PRIMARY KEY (backend, build_key)
    )`,
    // A window of outcomes, all or of one job type, read in the order outcomes() returns it.
    `CREATE INDEX build_outcome_finished ON build_outcome (finished_at, backend, build_key)`,
    `CREATE INDEX build_outcome_job_type ON build_outcome (job_type, finished_at, backend, build_key)`,
    `CREATE TABLE tracked_request (
      backend TEXT NOT NULL,
      buildrequest_id ${bigint} NOT NULL,
      job_type TEXT NOT NULL,
      submitted_at ${bigint} NOT NULL,
      PRIMARY KEY (backend, buildrequest_id)
    )`,
    `CREATE INDEX tracked_request_age ON tracked_request (backend, submitted_at, buildrequest_id)`,
    `CREATE TABLE open_build (
      backend TEXT NOT NULL,
      buildid ${bigint} NOT NULL,
      buildrequest_id ${bigint} NOT NULL,
      job_type TEXT NOT NULL,
      submitted_at ${bigint},
      started_at ${bigint} NOT NULL,
      origin TEXT NOT NULL CHECK (origin IN ('proxy', 'tracked')),
      PRIMARY KEY (backend, buildid)
    )`,
    `CREATE INDEX open_build_age ON open_build (backend, started_at, buildid)`,
    `CREATE TABLE tracking_cursor (backend TEXT PRIMARY KEY, buildid ${bigint} NOT NULL)`,
  ];
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'minted ids, buildsets, tasks, builds',
    sqlite: [
      `CREATE TABLE id_counter (kind TEXT PRIMARY KEY, next_id INTEGER NOT NULL)`,
      ...ID_KINDS.map((kind) => `INSERT INTO id_counter (kind, next_id) VALUES ('${kind}', ${MINTED_ID_BASE})`),
      `CREATE TABLE buildset (
        bsid INTEGER PRIMARY KEY,
        backend TEXT NOT NULL,
        reason TEXT NOT NULL,
        submitted_at INTEGER NOT NULL,
        external_idstring TEXT,
        sourcestamps TEXT NOT NULL,
        properties TEXT NOT NULL,
        rebuild_of INTEGER
      )`,
      `CREATE TABLE task (
        buildrequest_id INTEGER PRIMARY KEY,
        task_id TEXT NOT NULL UNIQUE,
        buildset_id INTEGER NOT NULL REFERENCES buildset (bsid),
        backend TEXT NOT NULL,
        builder_name TEXT NOT NULL,
        builderid INTEGER NOT NULL,
        definition TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'created', 'rejected', 'abandoned')),
        state_reason TEXT,
        submitted_at INTEGER NOT NULL,
        status TEXT,
        status_at INTEGER,
        final INTEGER NOT NULL DEFAULT 0
      )`,
      `CREATE INDEX task_buildset ON task (buildset_id)`,
      `CREATE TABLE builder_number (builder_name TEXT PRIMARY KEY, last_number INTEGER NOT NULL)`,
      `CREATE TABLE build (
        buildid INTEGER PRIMARY KEY,
        buildrequest_id INTEGER NOT NULL REFERENCES task (buildrequest_id),
        run_id INTEGER NOT NULL,
        builder_name TEXT NOT NULL,
        number INTEGER NOT NULL,
        minted_at INTEGER NOT NULL,
        UNIQUE (buildrequest_id, run_id),
        UNIQUE (builder_name, number)
      )`,
    ],
    postgres: [
      ...ID_KINDS.map((kind) => `CREATE SEQUENCE ${sequenceName(kind)} AS BIGINT START WITH ${MINTED_ID_BASE} MINVALUE ${MINTED_ID_BASE} NO CYCLE`),
      `CREATE TABLE buildset (
        bsid BIGINT PRIMARY KEY,
        backend TEXT NOT NULL,
        reason TEXT NOT NULL,
        submitted_at BIGINT NOT NULL,
        external_idstring TEXT,
        sourcestamps TEXT NOT NULL,
        properties TEXT NOT NULL,
        rebuild_of BIGINT
      )`,
      `CREATE TABLE task (
        buildrequest_id BIGINT PRIMARY KEY,
        task_id TEXT NOT NULL UNIQUE,
        buildset_id BIGINT NOT NULL REFERENCES buildset (bsid),
        backend TEXT NOT NULL,
        builder_name TEXT NOT NULL,
        builderid BIGINT NOT NULL,
        definition TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'created', 'rejected', 'abandoned')),
        state_reason TEXT,
        submitted_at BIGINT NOT NULL,
        status TEXT,
        status_at BIGINT,
        final BOOLEAN NOT NULL DEFAULT FALSE
      )`,
      `CREATE INDEX task_buildset ON task (buildset_id)`,
      `CREATE TABLE builder_number (builder_name TEXT PRIMARY KEY, last_number BIGINT NOT NULL)`,
      `CREATE TABLE build (
        buildid BIGINT PRIMARY KEY,
        buildrequest_id BIGINT NOT NULL REFERENCES task (buildrequest_id),
        run_id INTEGER NOT NULL,
        builder_name TEXT NOT NULL,
        number BIGINT NOT NULL,
        minted_at BIGINT NOT NULL,
        UNIQUE (buildrequest_id, run_id),
        UNIQUE (builder_name, number)
      )`,
    ],
  },
  {
    version: 2,
    description: 'indexes for recovery, polling and the per-builder and per-backend lists',
    sqlite: [
      `CREATE INDEX task_pending ON task (submitted_at, buildrequest_id) WHERE state = 'pending'`,
      `CREATE INDEX task_unfinished ON task (submitted_at, buildrequest_id) WHERE state = 'created' AND final = 0`,
      `CREATE INDEX task_builder ON task (builder_name, buildrequest_id)`,
      `CREATE INDEX task_backend ON task (backend, buildrequest_id)`,
    ],
    postgres: [
      `CREATE INDEX task_pending ON task (submitted_at, buildrequest_id) WHERE state = 'pending'`,
      `CREATE INDEX task_unfinished ON task (submitted_at, buildrequest_id) WHERE state = 'created' AND NOT final`,
      `CREATE INDEX task_builder ON task (builder_name, buildrequest_id)`,
      `CREATE INDEX task_backend ON task (backend, buildrequest_id)`,
    ],
  },
  {
    version: 3,
    description: 'build tracking: when to poll each task next, finished builds, awaited buildrequests, open builds, scan cursors',
    sqlite: [
      // 0 for the tasks already there, and for new ones until their first status: due at once.
      `ALTER TABLE task ADD COLUMN next_check_at INTEGER NOT NULL DEFAULT 0`,
      `CREATE INDEX task_due ON task (next_check_at, buildrequest_id) WHERE state = 'created' AND final = 0`,
      ...buildTrackingTables('INTEGER', 'INTEGER'),
    ],
    postgres: [
      // A constant default: PostgreSQL adds the column without rewriting the table.
      `ALTER TABLE task ADD COLUMN next_check_at BIGINT NOT NULL DEFAULT 0`,
      `CREATE INDEX task_due ON task (next_check_at, buildrequest_id) WHERE state = 'created' AND NOT final`,
      ...buildTrackingTables('BIGINT', 'SMALLINT'),
    ],
  },
];

export const LATEST_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;

/** The migrations a database at `current` still needs, up to `target`. */
export function pendingMigrations(current: number, target: number = LATEST_VERSION): Migration[] {
  return MIGRATIONS.filter((m) => m.version > current && m.version <= target);
}

export const SCHEMA_VERSION_TABLE_SQLITE = `CREATE TABLE IF NOT EXISTS schema_version (
  version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at INTEGER NOT NULL)`;
export const SCHEMA_VERSION_TABLE_POSTGRES = `CREATE TABLE IF NOT EXISTS schema_version (
  version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at BIGINT NOT NULL)`;
