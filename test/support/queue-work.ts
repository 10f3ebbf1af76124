/**
 * One build on a Taskcluster queue as the proxy stores and reads it, for the
 * unit tests that turn it into Buildbot's objects and events: its store
 * records (task, buildset, build) with ids in the minted range, the task's
 * status as the queue answers it, and its runs at each point of their life.
 * Times are fixed: T0 scheduled, T1 started, T2 resolved.
 */
import { MINTED_ID_BASE, type BuildRecord, type BuildsetRecord, type TaskRecord } from '../../src/store/store.js';
import type { QueueRun, QueueTaskStatus, ReasonCreated, ReasonResolved } from '../../src/taskcluster/queue-types.js';

export const T0 = '2026-01-01T00:00:00.000Z';
/** T0 in epoch seconds, as Buildbot counts time. */
export const S0 = 1767225600;
export const T1 = '2026-01-01T00:01:00.500Z';
export const T2 = '2026-01-01T00:02:00.999Z';

export const BSID = MINTED_ID_BASE + 7;
export const BRID = MINTED_ID_BASE + 11;
export const BUILDID = MINTED_ID_BASE + 42;
/** The legacy master's id of the builder (linux64-opt). */
export const BUILDERID = 3;
const TASK_ID = 'fN1kbb2nQ1u8bqdFRv0b4Q';

/** The task of buildrequest BRID, created, submitted just before S0's next second. */
export function task(overrides: Partial<TaskRecord> = {}): TaskRecord {
  return {
    taskId: TASK_ID,
    buildrequestId: BRID,
    buildsetId: BSID,
    backend: 'queue',
    builderName: 'linux64-opt',
    builderid: BUILDERID,
    definition: '{}',
    state: 'created',
    stateReason: null,
    submittedAt: S0 * 1000 + 999,
    status: null,
    statusAt: null,
    final: false,
    ...overrides,
  };
}

/** Buildset BSID, forced by alice through the force form at S0. */
export const buildset: BuildsetRecord = {
  bsid: BSID,
  backend: 'queue',
  reason: 'A build was forced by alice',
  submittedAt: S0 * 1000,
  externalIdstring: null,
  sourcestamps: [{ revision: 'abc123', branch: 'main', repository: 'https://hg.example/repo', project: 'fx', codebase: '' }],
  properties: JSON.stringify({ owner: ['alice', 'Force Build Form'], reason: ['because', 'Force Build Form'], scheduler: ['force', 'Scheduler'] }),
  rebuildOf: null,
};

/** The build the proxy minted for run `runId` of the task. */
export function buildRecord(runId: number, overrides: Partial<BuildRecord> = {}): BuildRecord {
  return {
    buildid: BUILDID + runId,
    buildrequestId: BRID,
    runId,
    builderName: 'linux64-opt',
    number: 100 + runId,
    mintedAt: S0 * 1000 + 65_000,
    ...overrides,
  };
}

/** The task's status as the queue answers it, with these runs (its state the last run's). */
export function statusOf(runs: QueueRun[]): QueueTaskStatus {
  return {
    taskId: TASK_ID,
    taskQueueId: 'proj/linux',
    schedulerId: '-',
    projectId: 'none',
    taskGroupId: TASK_ID,
    deadline: T2,
    expires: T2,
    retriesLeft: 5,
    state: runs.at(-1)?.state ?? 'unscheduled',
    runs,
  };
}

export const pending = (runId: number, reasonCreated: ReasonCreated = 'scheduled'): QueueRun => ({ runId, state: 'pending', reasonCreated, scheduled: T0 });

export const running = (runId: number, reasonCreated: ReasonCreated = 'scheduled'): QueueRun => ({
  ...pending(runId, reasonCreated),
  state: 'running',
  started: T1,
  workerGroup: 'us-east-1',
  workerId: 'i-0abc',
  takenUntil: T2,
});

/** A run resolved at T2; `started: false` for one that ended before a worker took it. */
export function resolved(runId: number, state: 'completed' | 'failed' | 'exception', reasonResolved: ReasonResolved, opts: { started?: boolean; reasonCreated?: ReasonCreated } = {}): QueueRun {
  const base = opts.started === false ? pending(runId, opts.reasonCreated) : running(runId, opts.reasonCreated);
  const { takenUntil: _, ...rest } = base;
  return { ...rest, state, reasonResolved, resolved: T2 };
}
