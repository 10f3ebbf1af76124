/**
 * What the build comparison counts: finished builds on either side, and the
 * work still awaited on a Buildbot-API backend. These records are the store's
 * (src/store/store.ts), so tracking survives restarts and is shared by replicas.
 */
import type { ResultCode } from '../taskcluster/results.js';

/** One finished build, on a Buildbot master or a queue, recorded once. */
export interface BuildOutcome {
  /** The backend's name in routes.yaml. */
  backend: string;
  /**
   * Unique per backend, so a build seen twice (an event and a poll, a restart)
   * is recorded once: `build:<buildid>` on a Buildbot-API backend,
   * `<taskId>/<runId>` on a queue.
   */
  buildKey: string;
  /** The Buildbot builder name. */
  jobType: string;
  /** Buildbot's result code; a queue run's state maps by src/taskcluster/results.ts. */
  result: ResultCode;
  /** Epoch ms the work was submitted (buildrequest `submitted_at`; a queue run's `scheduled`), or null when unknown. */
  submittedAt: number | null;
  /** Epoch ms the build started (Buildbot `started_at`; a run's `started`). */
  startedAt: number;
  /** Epoch ms the build finished (Buildbot `complete_at`; a run's `resolved`). */
  finishedAt: number;
  /** `proxy` for builds of forces that went through the proxy (and every queue build); `tracked` for builds a legacy master started on its own, seen because the route says `track: true`. */
  origin: 'proxy' | 'tracked';
  /** Epoch ms the proxy recorded it: `recordedAt - finishedAt` is the tracking lag. */
  recordedAt: number;
}

/** The key of a build on a Buildbot-API backend: `build:<buildid>`. */
export function buildbotBuildKey(buildid: number): string {
  return `build:${buildid}`;
}

/** The buildid in a Buildbot-API backend's build key, or undefined for another kind of key (a queue's `<taskId>/<runId>`). */
export function buildidOfKey(buildKey: string): number | undefined {
  const match = /^build:(\d{1,16})$/.exec(buildKey);
  if (match === null) return undefined;
  const buildid = Number(match[1]);
  return Number.isSafeInteger(buildid) ? buildid : undefined;
}

/** The key of a queue run: `<taskId>/<runId>`. */
export function queueRunKey(taskId: string, runId: number): string {
  return `${taskId}/${runId}`;
}

export interface OutcomeQuery {
  /** Epoch ms, inclusive: builds that finished at or after. */
  since: number;
  /** Epoch ms, exclusive. */
  until: number;
  jobType?: string;
  backend?: string;
}

/** A buildrequest forced through the proxy onto a Buildbot-API backend, whose builds are awaited. */
export interface TrackedRequest {
  backend: string;
  buildrequestId: number;
  jobType: string;
  /** Epoch ms the proxy forwarded the force. */
  submittedAt: number;
}

/** A build started on a Buildbot-API backend and not yet seen to finish. */
export interface OpenBuild {
  backend: string;
  buildid: number;
  buildrequestId: number;
  jobType: string;
  /** Epoch ms of the buildrequest's `submitted_at`, or null when unknown. */
  submittedAt: number | null;
  startedAt: number;
  origin: 'proxy' | 'tracked';
}

/**
 * The builds a pass rate counts: SUCCESS and WARNINGS pass, FAILURE and
 * EXCEPTION do not; SKIPPED, RETRY (another build of the same request
 * follows) and CANCELLED (someone stopped it) say nothing about the job and
 * are left out. docs/build-comparison.md says the same for people.
 */
export function passes(result: ResultCode): boolean | undefined {
  switch (result) {
    case 0:
    case 1:
      return true;
    case 2:
    case 4:
      return false;
    default:
      return undefined;
  }
}

/** EXCEPTION and RETRY: the infrastructure broke rather than the job. */
export function isInfrastructureException(result: ResultCode): boolean {
  return result === 4 || result === 5;
}
