/**
 * How a Taskcluster queue run reads as a Buildbot result.
 *
 * Buildbot's result codes are those of Buildbot 3.7 `process/results.py`.
 * The queue's states and reasons are those of Queue v1 (`task-status.yml`,
 * `services/queue/src/api.js`). docs/taskcluster.md ("States and results")
 * shows the same table for people; keep both in step.
 */
import type { QueueRun, QueueTaskStatus, ReasonResolved } from './queue-types.js';

export const SUCCESS = 0;
export const WARNINGS = 1;
export const FAILURE = 2;
export const SKIPPED = 3;
export const EXCEPTION = 4;
export const RETRY = 5;
export const CANCELLED = 6;

/** A Buildbot result code (`process/results.py` ALL_RESULTS). */
export type ResultCode = 0 | 1 | 2 | 3 | 4 | 5 | 6;

/** The codes by name, as Buildbot spells its constants. */
export const RESULT_CODES = { SUCCESS, WARNINGS, FAILURE, SKIPPED, EXCEPTION, RETRY, CANCELLED } as const;

/** Buildbot's `Results` list: the lower-case name of each code, indexed by code. */
export const RESULT_NAMES = ['success', 'warnings', 'failure', 'skipped', 'exception', 'retry', 'cancelled'] as const;

/** A buildrequest's `results` until it is complete (Buildbot's database default). */
export const UNFINISHED_BUILDREQUEST = -1;

/**
 * The `reasonCreated` of a run the queue made on its own after the previous
 * run's exception: `retry` after claim-expired and worker-shutdown,
 * `task-retry` after intermittent-task (queue `api.js` reportException and
 * `expire_task_claim`). `rerun` is a person asking again: the run before it
 * keeps its own result.
 */
const AUTOMATIC_RETRY_CREATED: ReadonlySet<string> = new Set(['retry', 'task-retry']);

/**
 * Exceptions that read as a deliberate stop rather than a breakage. Treeherder
 * (`etl/taskcluster_pulse/handler.py` resultFromRun) names exactly these two by
 * their reason and shows both like a user cancel, never as a failure; a
 * superseded task was dropped on purpose because newer work replaces it.
 */
const CANCEL_REASONS: ReadonlySet<ReasonResolved> = new Set(['canceled', 'superseded']);

/** One row of the mapping, for docs and table tests. */
export interface ResultRule {
  state: 'completed' | 'failed' | 'exception';
  /** `*` for any reason not listed in another row of the same state. */
  reasonResolved: ReasonResolved | '*';
  /** True when the row needs a later run created by the queue's automatic retry. */
  retried: boolean;
  result: ResultCode;
}

/**
 * The whole mapping of a finished run, first match wins. An exception the
 * queue retried is RETRY whatever its reason (Buildbot's RETRY means "this
 * build is lost, another build of the same request follows"); a retriable
 * reason with no retries left is an EXCEPTION.
 */
export const RESULT_TABLE: readonly ResultRule[] = [
  { state: 'completed', reasonResolved: '*', retried: false, result: SUCCESS },
  { state: 'failed', reasonResolved: '*', retried: false, result: FAILURE },
  { state: 'exception', reasonResolved: '*', retried: true, result: RETRY },
  { state: 'exception', reasonResolved: 'canceled', retried: false, result: CANCELLED },
  { state: 'exception', reasonResolved: 'superseded', retried: false, result: CANCELLED },
  { state: 'exception', reasonResolved: '*', retried: false, result: EXCEPTION },
];

/** True when a run is resolved (completed, failed or exception); pending and running runs are not. */
export function isRunFinished(run: QueueRun): boolean {
  return run.state === 'completed' || run.state === 'failed' || run.state === 'exception';
}

/** True when `next` is a run the queue created by itself to retry the run before it. */
export function isAutomaticRetry(next: QueueRun | undefined): boolean {
  return next !== undefined && AUTOMATIC_RETRY_CREATED.has(next.reasonCreated);
}

/**
 * The Buildbot result of one run, or null while it is unfinished (a build's
 * `results` until it completes). `next` is the run after it, if any: it tells
 * an automatic retry from a final exception.
 *
 * @example resultOfRun({runId: 0, state: 'exception', reasonResolved: 'claim-expired', ...}, {runId: 1, reasonCreated: 'retry', ...}) // 5 (RETRY)
 */
export function resultOfRun(run: QueueRun, next?: QueueRun): ResultCode | null {
  switch (run.state) {
    case 'pending':
    case 'running':
      return null;
    case 'completed':
      return SUCCESS;
    case 'failed':
      return FAILURE;
    case 'exception':
      if (isAutomaticRetry(next)) return RETRY;
      if (run.reasonResolved !== undefined && CANCEL_REASONS.has(run.reasonResolved)) return CANCELLED;
      return EXCEPTION;
  }
}

/** The result of run `runId` of a task status, or null if it is unfinished or unknown. */
export function resultOfRunId(status: QueueTaskStatus, runId: number): ResultCode | null {
  const run = status.runs[runId];
  return run === undefined ? null : resultOfRun(run, status.runs[runId + 1]);
}

/**
 * The `results` of a buildrequest for a task: the result of its last run
 * (CANCELLED for a task canceled before any run started, since the queue
 * records that as a run resolved `exception`/`canceled`), or -1 while the last
 * run is unfinished or there is no run (no status yet, unscheduled).
 */
export function buildrequestResult(status: QueueTaskStatus | undefined): ResultCode | typeof UNFINISHED_BUILDREQUEST {
  const last = status?.runs.at(-1);
  if (last === undefined) return UNFINISHED_BUILDREQUEST;
  return resultOfRun(last) ?? UNFINISHED_BUILDREQUEST;
}

/**
 * Buildbot's `worst_status`: CANCELLED > RETRY > EXCEPTION > FAILURE >
 * WARNINGS > SUCCESS > SKIPPED (CANCELLED is the worst). Anything else
 * (-1, null) loses to every code and two of them give null, as in Buildbot.
 */
export function worstStatus(a: number | null, b: number | null): ResultCode | null {
  for (const s of [CANCELLED, RETRY, EXCEPTION, FAILURE, WARNINGS, SUCCESS, SKIPPED] as const) {
    if (a === s || b === s) return s;
  }
  return null;
}

/** Buildbot's `statusToString`: "success"... for a code, "not finished" for null, "Invalid status" otherwise. */
export function statusToString(code: number | null): string {
  if (code === null) return 'not finished';
  return RESULT_NAMES[code] ?? 'Invalid status';
}

/** True for a number that is one of Buildbot's seven result codes. */
export function isResultCode(value: unknown): value is ResultCode {
  return typeof value === 'number' && Number.isInteger(value) && value >= SUCCESS && value <= CANCELLED;
}
