/**
 * Every build the proxy routes, followed to its end on both sides, so the two
 * can be compared by what release engineers decide by: pass rate, duration
 * and wait for a worker (docs/build-comparison.md).
 *
 * - On a queue, the task statuses the translation already reads (its follow
 *   loop polls unfinished tasks with backoff) tell the tracker of each run
 *   that finished: {@link BuildTracker.queueObserver}.
 * - On a Buildbot-API backend, a {@link BuildbotFollower} per backend follows
 *   the buildrequests forces through the proxy created there and, on the
 *   legacy master, every build of job types whose route says `track: true`.
 *
 * Each finished build is recorded in the store once, under a key unique per
 * backend, and counted in the metrics by the process that recorded it: a
 * restart, a replica or a second look never counts it twice, and a build that
 * finished while the proxy was down is recorded when it is next looked at.
 */
import type { Logger } from '../logging/logger.js';
import type { ProxyMetrics } from '../metrics/metrics.js';
import { matchRoute, type Backend, type RoutingTable } from '../routing/table.js';
import type { Store, TaskRecord } from '../store/store.js';
import type { QueueObserver } from '../taskcluster/observer.js';
import type { QueueTaskStatus } from '../taskcluster/queue-types.js';
import { RESULT_NAMES, resultOfRun } from '../taskcluster/results.js';
import type { Upstream } from '../upstream/upstream.js';
import { BuildbotFollower } from './buildbot-follower.js';
import { queueRunKey, type BuildOutcome } from './outcome.js';

export const DEFAULT_TRACKING_INTERVAL_MS = 5_000;
/** The lease of following builds on Buildbot-API backends: one replica at a time polls the masters. */
export const TRACKING_LEASE = 'build-tracking';
/** Forces kept to be followed later (the store was away when they were answered); past it the oldest are dropped (each was counted as a tracking error when it failed). */
const UNFOLLOWED_MEMORY = 10_000;
/** Queue runs remembered as recorded, so a task read again does not ask the store again; past it the memory starts over (the store still refuses doubles). */
const RECORDED_RUNS_MEMORY = 100_000;

export interface TrackerDeps {
  store: Store;
  upstream: Pick<Upstream, 'fetch' | 'webSocket'>;
  metrics: ProxyMetrics;
  logger: Logger;
  /** The routing table in force. */
  table: () => RoutingTable;
  intervalMs?: number;
  now?: () => number;
}

export interface InFlight {
  jobType: string;
  backend: string;
  count: number;
}

export class BuildTracker {
  private readonly followers = new Map<string, BuildbotFollower>();
  private readonly recordedRuns = new Set<string>();
  /** Forces whose buildrequests could not be followed when they were answered (the store away): tried again each round. */
  private readonly unfollowed: { backend: Backend; brids: Map<number, number>; submittedAt: number }[] = [];
  private queueInFlight: { backend: string; builderName: string; count: number }[] = [];
  private timer: NodeJS.Timeout | undefined;
  /** The table whose backends the followers match. */
  private followedTable: RoutingTable | undefined;
  private round: Promise<void> = Promise.resolve();
  private closed = false;
  /** Whether this process holds the tracking lease (the embedded store's one process always does). */
  private leading = false;
  private readonly now: () => number;

  constructor(private readonly deps: TrackerDeps) {
    this.now = deps.now ?? Date.now;
    deps.metrics.countBuildsInFlightWith(() => this.inFlight());
  }

  /** Told of every fresh queue status: each run that finished as a build is recorded. */
  readonly queueObserver: QueueObserver = {
    taskCreated: (task) => this.underWay(task.builderName, task.backend),
    statusSeen: (task, _previous, status) => this.queueRunsSeen(task, status),
  };

  /** Starts following: backends with open work from before a restart, the legacy master when a route tracks it, and a round every interval. */
  async start(): Promise<void> {
    await this.followBackendsOf(this.deps.table());
    this.timer = setInterval(() => void this.tick(), this.deps.intervalMs ?? DEFAULT_TRACKING_INTERVAL_MS);
    this.timer.unref();
    void this.tick();
  }

  /**
   * A force through the proxy was answered by a Buildbot-API backend: its
   * buildrequests (the JSON-RPC result `[bsid, {builderid: brid}]`) are
   * followed from now on. Never throws: the client's answer is already out.
   */
  forceAnswered(backend: Backend, answer: Buffer | undefined, submittedAt: number): void {
    const brids = buildrequestsOfForceAnswer(answer);
    if (brids === undefined || brids.size === 0) return;
    this.followForce(backend, brids, submittedAt);
  }

  /** Only this replica knows of the force until its buildrequests are stored: one that cannot be stored now is tried again next round. */
  private followForce(backend: Backend, brids: Map<number, number>, submittedAt: number): void {
    this.follower(backend)
      .forced(brids, submittedAt)
      .catch((error: unknown) => {
        this.failed(backend.name, 'force', error);
        if (this.closed) return;
        this.unfollowed.push({ backend, brids, submittedAt });
        if (this.unfollowed.length > UNFOLLOWED_MEMORY) this.unfollowed.shift();
      });
  }

  /** Builds in flight by job type label and backend (for the gauge): reported by the replica that follows them, so a fleet's sum is right. */
  inFlight(): InFlight[] {
    if (!this.leading) return [];
    const table = this.deps.table();
    const counts = new Map<string, InFlight>();
    const add = (backend: string, jobType: string, count: number) => {
      const label = this.deps.metrics.jobTypeLabel(table, jobType);
      const key = `${backend}\n${label}`;
      const known = counts.get(key);
      if (known) known.count += count;
      else counts.set(key, { jobType: label, backend, count });
    };
    for (const q of this.queueInFlight) add(q.backend, q.builderName, q.count);
    for (const [name, follower] of this.followers) for (const [jobType, count] of follower.inFlight()) add(name, jobType, count);
    return [...counts.values()];
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    await this.round;
    await Promise.all([...this.followers.values()].map((f) => f.close()));
  }

  /** One round: the legacy master followed when a route tracks it, every follower polled, the queue's in-flight counts refreshed. */
  private tick(): Promise<void> {
    this.round = this.round.then(async () => {
      if (this.closed) return;
      for (const force of this.unfollowed.splice(0)) this.followForce(force.backend, force.brids, force.submittedAt);
      const table = this.deps.table();
      if (table !== this.followedTable) await this.followBackendsOf(table);
      if (table.routes.some((r) => r.track)) this.follower(table.legacy);
      const leading = await this.deps.store.holdLease(TRACKING_LEASE);
      if (leading !== this.leading) this.deps.logger.info(leading ? 'this replica follows builds on Buildbot-API backends' : 'another replica follows builds on Buildbot-API backends', {});
      this.leading = leading;
      for (const follower of this.followers.values()) follower.listen(leading);
      if (!leading) return;
      // Other replicas store the buildrequests of the forces they answer: their backends are followed here too.
      await this.followOpenWork(table);
      await Promise.all([...this.followers.values()].map((f) => f.poll()));
      try {
        this.queueInFlight = await this.deps.store.countUnfinishedTasks();
      } catch (error) {
        this.deps.metrics.storeErrors.inc({ operation: 'tracking' });
        this.deps.logger.warn('counting the queue builds in flight failed; trying again next round', { error: (error as Error).message });
      }
    });
    return this.round;
  }

  /**
   * After a (re)load: followers of backends gone from the file, or moved to
   * another address, stop; backends with work awaited from before (a restart,
   * or a backend back in the file) are followed again.
   */
  private async followBackendsOf(table: RoutingTable): Promise<void> {
    this.followedTable = table;
    for (const [name, follower] of this.followers) {
      const now = table.backends.get(name);
      if (now === undefined || now.kind === 'taskcluster' || now.url !== follower.backend.url) {
        this.followers.delete(name);
        await follower.close();
      }
    }
    await this.followOpenWork(table);
  }

  /** Backends with work awaited in the store (a restart, or forces another replica answered) and no follower yet get one. */
  private async followOpenWork(table: RoutingTable): Promise<void> {
    for (const backend of table.backends.values()) {
      if (backend.kind === 'taskcluster' || this.followers.has(backend.name)) continue;
      try {
        const [requests, builds] = await Promise.all([this.deps.store.openRequests(backend.name), this.deps.store.openBuilds(backend.name)]);
        if (requests.length > 0 || builds.length > 0) this.follower(backend);
      } catch (error) {
        this.failed(backend.name, 'store', error);
      }
    }
  }

  private follower(backend: Backend): BuildbotFollower {
    let follower = this.followers.get(backend.name);
    if (follower === undefined) {
      follower = new BuildbotFollower(backend, {
        store: this.deps.store,
        upstream: this.deps.upstream,
        logger: this.deps.logger,
        record: (outcome) => this.record(outcome),
        tracksAll: (jobType) => {
          const table = this.deps.table();
          return table.legacy.name === backend.name && matchRoute(table, jobType)?.track === true;
        },
        failed: (operation, error) => this.failed(backend.name, operation, error),
        underWay: (jobType) => this.underWay(jobType, backend.name),
        now: this.now,
      });
      this.followers.set(backend.name, follower);
      if (!this.closed) follower.listen(this.leading);
    }
    return follower;
  }

  private async queueRunsSeen(task: TaskRecord, status: QueueTaskStatus): Promise<void> {
    for (const [runId, run] of status.runs.entries()) {
      const key = queueRunKey(task.taskId, runId);
      if (this.recordedRuns.has(key)) continue;
      const result = resultOfRun(run, status.runs[runId + 1]);
      // A run that never started (cancelled while pending) was never a build.
      if (result === null || run.started === undefined || run.resolved === undefined) continue;
      await this.record({
        backend: task.backend,
        buildKey: key,
        jobType: task.builderName,
        result,
        submittedAt: Date.parse(run.scheduled),
        startedAt: Date.parse(run.started),
        finishedAt: Date.parse(run.resolved),
        origin: 'proxy',
        recordedAt: this.now(),
      });
      if (this.recordedRuns.size >= RECORDED_RUNS_MEMORY) this.recordedRuns.clear();
      this.recordedRuns.add(key);
    }
  }

  private underWay(jobType: string, backend: string): void {
    this.deps.metrics.buildUnderWay(this.deps.metrics.jobTypeLabel(this.deps.table(), jobType), backend);
  }

  /** Records a finished build once; only the first recording counts it in the metrics. */
  private async record(outcome: BuildOutcome): Promise<boolean> {
    const fresh = await this.deps.store.recordOutcome(outcome);
    if (fresh) {
      this.deps.metrics.buildFinished({
        jobTypeLabel: this.deps.metrics.jobTypeLabel(this.deps.table(), outcome.jobType),
        backend: outcome.backend,
        result: RESULT_NAMES[outcome.result],
        durationSeconds: (outcome.finishedAt - outcome.startedAt) / 1000,
        waitSeconds: outcome.submittedAt === null ? null : (outcome.startedAt - outcome.submittedAt) / 1000,
        lagSeconds: (outcome.recordedAt - outcome.finishedAt) / 1000,
      });
    }
    return fresh;
  }

  private failed(backend: string, operation: string, error: unknown): void {
    this.deps.metrics.buildTrackingErrors.inc({ backend, operation });
    this.deps.logger.warn('following builds failed; trying again next round', { backend, operation, error: (error as Error)?.message ?? String(error) });
  }
}

/** The `{builderid: brid}` of a force's JSON-RPC answer (`{"result": [bsid, {"<builderid>": brid}]}`), or undefined for anything else. */
export function buildrequestsOfForceAnswer(answer: Buffer | undefined): Map<number, number> | undefined {
  if (answer === undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(answer.toString('utf8'));
  } catch {
    return undefined;
  }
  const result = (parsed as { result?: unknown } | null)?.result;
  if (!Array.isArray(result) || typeof result[1] !== 'object' || result[1] === null) return undefined;
  const brids = new Map<number, number>();
  for (const [builderid, brid] of Object.entries(result[1] as Record<string, unknown>)) {
    const id = Number(builderid);
    if (Number.isSafeInteger(id) && typeof brid === 'number' && Number.isSafeInteger(brid)) brids.set(id, brid);
  }
  return brids;
}
