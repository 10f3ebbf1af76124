/**
 * What both store implementations share about the build-tracking tables
 * (migration 3): their columns, and how a query of outcomes becomes SQL. An
 * outcome's key names the open build it closes (buildidOfKey in
 * src/tracking/outcome.ts).
 */
import type { BuildOutcome, OutcomeQuery } from '../tracking/outcome.js';

export const OUTCOME_COLUMNS = 'backend, build_key, job_type, result, submitted_at, started_at, finished_at, origin, recorded_at';
export const OPEN_BUILD_COLUMNS = 'backend, buildid, buildrequest_id, job_type, submitted_at, started_at, origin';
export const TRACKED_REQUEST_COLUMNS = 'backend, buildrequest_id, job_type, submitted_at';

/** Where a sliced read of outcomes goes on: after this row, in the window's order. */
export interface OutcomeSlice {
  after: Pick<BuildOutcome, 'finishedAt' | 'backend' | 'buildKey'> | undefined;
  limit: number;
}

/**
 * The SELECT for a window of outcomes, with a placeholder per parameter made
 * by `placeholder(n)` (1-based): `?` for SQLite, `$n` for PostgreSQL. Ordered
 * like the indexes on (finished_at, backend, build_key) and (job_type,
 * finished_at, backend, build_key), so a window is read in index order.
 * With `slice`, at most `slice.limit` rows after `slice.after`: the row-value
 * comparison lets the engine seek to where the previous slice ended.
 */
export function outcomesSql(query: OutcomeQuery, placeholder: (n: number) => string, slice?: OutcomeSlice): { text: string; params: unknown[] } {
  const params: unknown[] = [];
  const p = (value: unknown) => {
    params.push(value);
    return placeholder(params.length);
  };
  const where = slice?.after === undefined
    ? [`finished_at >= ${p(query.since)}`]
    : [`(finished_at, backend, build_key) > (${p(slice.after.finishedAt)}, ${p(slice.after.backend)}, ${p(slice.after.buildKey)})`];
  where.push(`finished_at < ${p(query.until)}`);
  if (query.jobType !== undefined) where.push(`job_type = ${p(query.jobType)}`);
  if (query.backend !== undefined) where.push(`backend = ${p(query.backend)}`);
  const limit = slice === undefined ? '' : ` LIMIT ${p(slice.limit)}`;
  return { text: `SELECT ${OUTCOME_COLUMNS} FROM build_outcome WHERE ${where.join(' AND ')} ORDER BY finished_at, backend, build_key${limit}`, params };
}
