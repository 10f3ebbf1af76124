/**
 * The proxy's durable memory of work it sent to a task queue: the Buildbot ids
 * it minted, each task's exact definition, and the last status it saw. One
 * interface, two implementations: an embedded file (the default: nothing to
 * start) and PostgreSQL (selected by a `postgres://` URL, shared by replicas).
 *
 * Every write resolves only once it is durable: a proxy killed right after
 * still finds it at restart. The ids are the ones clients keep, so none is
 * ever handed out twice, across restarts and replicas.
 */

import type { BuildOutcome, OpenBuild, OutcomeQuery, TrackedRequest } from '../tracking/outcome.js';

/**
 * Ids the proxy mints for work on a queue start here, far above anything a
 * Buildbot master's autoincrement reaches, and stay below 2^53 so that
 * JavaScript clients read them exactly. docs/taskcluster.md explains the range.
 */
export const MINTED_ID_BASE = 1_000_000_000_000_000;
export const MINTED_ID_LIMIT = Number.MAX_SAFE_INTEGER;

export function isMintedId(id: number): boolean {
  return Number.isSafeInteger(id) && id >= MINTED_ID_BASE;
}

export type IdKind = 'buildset' | 'buildrequest' | 'build';

/**
 * Where a task's creation stands:
 * - `pending`: the definition is stored, the PUT may or may not have reached the queue; recovery finishes it.
 * - `created`: the queue answered createTask with success (or `GET /task` found it).
 * - `rejected`: the queue refused it (4xx): no task exists.
 * - `abandoned`: certain that no task exists, and none will be made (the client was told the force failed).
 */
export type TaskState = 'pending' | 'created' | 'rejected' | 'abandoned';

export interface SourceStampRecord {
  revision: string | null;
  branch: string | null;
  repository: string;
  project: string;
  codebase: string;
}

/** One buildrequest on a queue: one task. */
export interface TaskRecord {
  /** The slugid the proxy chose before the PUT. */
  taskId: string;
  buildrequestId: number;
  buildsetId: number;
  /** The queue backend's name in routes.yaml. */
  backend: string;
  builderName: string;
  /** The legacy master's builderid for `builderName` (clients keep one id per builder whichever side runs it). */
  builderid: number;
  /** The exact JSON text of the createTask body: a resend must be byte-identical to be idempotent. */
  definition: string;
  state: TaskState;
  /** Why it was rejected or abandoned, for people (never a secret). */
  stateReason: string | null;
  /** Epoch milliseconds. */
  submittedAt: number;
  /** The queue's last `GET /task/<id>/status` answer (the `status` object, as JSON text), or null before the first. */
  status: string | null;
  statusAt: number | null;
  /** True once the task is resolved for good (its deadline passed or its last run is final): reads need no queue round trip. */
  final: boolean;
}

export interface BuildsetRecord {
  bsid: number;
  backend: string;
  reason: string;
  submittedAt: number;
  externalIdstring: string | null;
  sourcestamps: SourceStampRecord[];
  /** Buildbot properties, `{name: [value, source]}`, as JSON text. */
  properties: string;
  /** The build this buildset rebuilds, or null. */
  rebuildOf: number | null;
}

/** A run of a task as a Buildbot build. Minted once per (buildrequest, run). */
export interface BuildRecord {
  buildid: number;
  buildrequestId: number;
  runId: number;
  builderName: string;
  /** Per builder, continuing after the legacy master's numbers. */
  number: number;
  mintedAt: number;
}

export interface Page {
  limit: number;
  offset: number;
  /** Newest first (by id) when true. */
  newestFirst: boolean;
}

export interface Store {
  /** Which implementation, for logs and the status page: `embedded` or `postgres`. */
  readonly kind: 'embedded' | 'postgres';

  /** Reserves `count` fresh ids of a kind, in ascending order. An id is never returned twice, even across restarts and replicas. */
  allocateIds(kind: IdKind, count: number): Promise<number[]>;

  /** Records a buildset and all its tasks in one transaction; durable when the promise resolves. */
  recordBuildset(buildset: BuildsetRecord, tasks: readonly TaskRecord[]): Promise<void>;

  buildset(bsid: number): Promise<BuildsetRecord | undefined>;
  tasksOfBuildset(bsid: number): Promise<TaskRecord[]>;
  task(buildrequestId: number): Promise<TaskRecord | undefined>;
  taskById(taskId: string): Promise<TaskRecord | undefined>;

  /** Moves a task to a new state; `definition` replaces the stored one (a re-creation with fresh dates after the queue's window). */
  setTaskState(taskId: string, state: TaskState, reason: string | null, definition?: string): Promise<void>;
  /**
   * Keeps the queue's latest status answer for a task, and when to look at it
   * next (`nextCheckAt`, epoch ms; now when absent): polling backs off for
   * long tasks and stays prompt for short ones.
   */
  saveStatus(taskId: string, status: string, final: boolean, at: number, nextCheckAt?: number): Promise<void>;

  /** Tasks in state `pending`, oldest first: what recovery must finish. */
  pendingTasks(limit: number): Promise<TaskRecord[]>;
  /**
   * Tasks that are created but not final: what needs polling. Oldest first;
   * with `dueBy` (epoch ms), only those whose next check is due by then,
   * soonest due first.
   */
  unfinishedTasks(limit: number, dueBy?: number): Promise<TaskRecord[]>;
  /** How many tasks are created and not final, per backend and builder: the queue's builds in flight. */
  countUnfinishedTasks(): Promise<{ backend: string; builderName: string; count: number }[]>;

  /** Tasks of a builder (all states but `rejected` and `abandoned`), paged by buildrequest id. */
  tasksOfBuilder(builderName: string, page: Page): Promise<TaskRecord[]>;
  countTasksOfBuilder(builderName: string): Promise<number>;
  /** Every builder with tasks (in any state but rejected and abandoned): whose listings merge both sides. */
  builderNames(): Promise<string[]>;
  /** The newest tasks on a backend, for the status page. */
  recentTasks(backend: string, limit: number): Promise<TaskRecord[]>;

  /**
   * The build for a task's run, minted on first sight with a fresh buildid and
   * the builder's next number (at least `numberFloor`); the same run always
   * gets the same build back.
   */
  buildForRun(buildrequestId: number, runId: number, builderName: string, numberFloor: number): Promise<BuildRecord>;
  build(buildid: number): Promise<BuildRecord | undefined>;
  buildByNumber(builderName: string, number: number): Promise<BuildRecord | undefined>;
  buildsOfTask(buildrequestId: number): Promise<BuildRecord[]>;
  buildsOfBuilder(builderName: string, page: Page): Promise<BuildRecord[]>;
  countBuildsOfBuilder(builderName: string): Promise<number>;

  // ------------------------------------------------------------ build tracking

  /**
   * Records a finished build once: resolves true when it was new, false when
   * a build with the same backend and key was recorded before (an event and
   * a poll, or a restart, never count it twice). Removes the build from the
   * open builds in the same transaction.
   */
  recordOutcome(outcome: BuildOutcome): Promise<boolean>;
  /** Finished builds in a window (by `finishedAt`), oldest first. */
  outcomes(query: OutcomeQuery): Promise<BuildOutcome[]>;

  /** Buildrequests forced through the proxy onto a Buildbot-API backend; one already tracked is left as it is. */
  trackRequests(requests: readonly TrackedRequest[]): Promise<void>;
  /** Tracked buildrequests of a backend not yet closed, oldest first. */
  openRequests(backend: string): Promise<TrackedRequest[]>;
  /** Stops awaiting a buildrequest: its build was seen, or it completed without one. */
  closeRequest(backend: string, buildrequestId: number): Promise<void>;
  /** A build seen started and not finished; one already open is left as it is. */
  trackBuild(build: OpenBuild): Promise<void>;
  /** The open builds of a backend, oldest first. */
  openBuilds(backend: string): Promise<OpenBuild[]>;
  /** The highest buildid a backend's scan for new builds has passed, or undefined before the first scan. */
  trackingCursor(backend: string): Promise<number | undefined>;
  setTrackingCursor(backend: string, buildid: number): Promise<void>;

  // ------------------------------------------------------------ work done once

  /**
   * Work that must run in one process at a time across replicas (following
   * tasks and finishing forces a crash left open; following builds) is done
   * by whoever holds its lease. Resolves true while this process holds
   * `name`, taking it when it is free; asked again every round, so it also
   * says when the lease was lost. On PostgreSQL a session advisory lock on a
   * connection of its own: released when this process or that connection
   * dies, so another replica takes over at its next round. The embedded
   * store belongs to one process (its lock file), which always holds it.
   */
  holdLease(name: string): Promise<boolean>;

  /** Closes connections or the file; pending writes finish first. */
  close(): Promise<void>;
}
