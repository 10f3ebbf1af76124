/**
 * What both store implementations share about the build-tracking tables
 * (migration 3): how an outcome's key names the open build it closes, and how
 * a query of outcomes becomes SQL.
 */
import type { OutcomeQuery } from '../tracking/outcome.js';

/**
 * The buildid in a Buildbot-API backend's build key (`build:<buildid>`): the
 * open build that recording its outcome closes. Undefined for a queue's
 * `<taskId>/<runId>`, which never has an open build row.
 */
export function buildidOfKey(buildKey: string): number | undefined {
  const match = /^build:(\d{1,16})$/.exec(buildKey);
  if (match === null) return undefined;
  const buildid = Number(match[1]);
  return Number.isSafeInteger(buildid) ? buildid : undefined;
}

export const OUTCOME_COLUMNS = 'backend, build_key, job_type, result, submitted_at, started_at, finished_at, origin, recorded_at';
export const OPEN_BUILD_COLUMNS = 'backend, buildid, buildrequest_id, job_type, submitted_at, started_at, origin';
export const TRACKED_REQUEST_COLUMNS = 'backend, buildrequest_id, job_type, submitted_at';

/**
 * The SELECT for a window of outcomes, with a placeholder per parameter made
 * by `placeholder(n)` (1-based): `?` for SQLite, `$n` for PostgreSQL. Ordered
 * like the indexes on (finished_at, backend, build_key) and (job_type,
 * finished_at, backend, build_key), so a window is read in index order, unsorted.
 */
export function outcomesSql(query: OutcomeQuery, placeholder: (n: number) => string): { text: string; params: unknown[] } {
  const params: unknown[] = [query.since, query.until];
  const where = [`finished_at >= ${placeholder(1)}`, `finished_at < ${placeholder(2)}`];
  if (query.jobType !== undefined) {
    params.push(query.jobType);
    where.push(`job_type = ${placeholder(params.length)}`);
  }
  if (query.backend !== undefined) {
    params.push(query.backend);
    where.push(`backend = ${placeholder(params.length)}`);
  }
  return { text: `SELECT ${OUTCOME_COLUMNS} FROM build_outcome WHERE ${where.join(' AND ')} ORDER BY finished_at, backend, build_key`, params };
}
