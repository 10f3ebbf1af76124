/**
 * A built-in worker: claims pending runs of its task queues, writes a log as
 * it runs and resolves the run by the payload's wishes or, failing those, by
 * a seeded coin so a demo fails some tasks on purpose and the same seed fails
 * the same ones.
 */
import type { ArtifactStore } from './artifacts.js';
import type { RunOutcome, TaskStore } from './state.js';

export interface WorkerOptions {
  /** Task queues (`provisionerId/workerType`) this worker claims from. */
  taskQueueIds: string[];
  /** How long a run stays pending before the worker claims it. */
  startDelayMs: number;
  /** How long a claimed run runs before it resolves. */
  runMs: number;
  /** Share of runs without an explicit outcome that fail, 0..1. */
  failureRate: number;
  /** Seed of the PRNG behind failureRate. */
  seed: number;
  workerGroup?: string;
  workerId?: string;
  /** The claim's length (takenUntil); the worker reclaims well before it ends. */
  claimTimeoutMs?: number;
}

/** What a payload may ask of this worker, per run (the last entry repeats). */
export type WorkerOutcome = 'success' | 'failure' | 'exception' | 'intermittent' | 'worker-shutdown' | 'claim-expired';

export const LIVE_LOG = 'public/logs/live.log';
export const LIVE_BACKING_LOG = 'public/logs/live_backing.log';

const DEFAULT_CLAIM_TIMEOUT_MS = 20 * 60 * 1000;

/** mulberry32: small, fast and good enough to pick which demo tasks fail, reproducibly. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function commandLines(command: unknown): string[] {
  if (typeof command === 'string') return [command];
  if (Array.isArray(command)) {
    if (command.every((c) => typeof c === 'string')) return [command.join(' ')];
    return command.flatMap((c) => commandLines(c));
  }
  return [];
}

/** The outcome a payload asks for on this run, if any. */
export function requestedOutcome(payload: Record<string, unknown>, runId: number): WorkerOutcome | { exitCode: number } | undefined {
  const raw = payload.outcome;
  const list = Array.isArray(raw) ? raw : raw === undefined ? [] : [raw];
  const pick = list.length > 0 ? list[Math.min(runId, list.length - 1)] : undefined;
  const known: readonly string[] = ['success', 'failure', 'exception', 'intermittent', 'worker-shutdown', 'claim-expired'];
  if (typeof pick === 'string' && known.includes(pick)) return pick as WorkerOutcome;
  if (typeof payload.exitCode === 'number' && Number.isInteger(payload.exitCode)) return { exitCode: payload.exitCode };
  return undefined;
}

function toRunOutcome(o: WorkerOutcome): RunOutcome | undefined {
  switch (o) {
    case 'success':
      return { state: 'completed' };
    case 'failure':
      return { state: 'failed' };
    case 'exception':
      return { state: 'exception', reason: 'internal-error' };
    case 'intermittent':
      return { state: 'exception', reason: 'intermittent-task' };
    case 'worker-shutdown':
      return { state: 'exception', reason: 'worker-shutdown' };
    case 'claim-expired':
      return undefined;
  }
}

export interface WorkerDeps {
  store: TaskStore;
  artifacts: ArtifactStore;
  clock: () => number;
  isPaused: () => boolean;
  definitionOf: (taskId: string) => { payload: Record<string, unknown>; taskQueueId: string; expires: string };
}

export class BuiltinWorker {
  private readonly random: () => number;
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly seenPending = new Map<string, number>();
  private readonly poll: NodeJS.Timeout;
  private closed = false;
  readonly workerGroup: string;
  readonly workerId: string;
  private readonly claimTimeoutMs: number;

  constructor(
    private readonly options: WorkerOptions,
    private readonly deps: WorkerDeps,
  ) {
    this.random = seededRandom(options.seed);
    this.workerGroup = options.workerGroup ?? 'standin';
    this.workerId = options.workerId ?? 'standin-worker-1';
    this.claimTimeoutMs = options.claimTimeoutMs ?? DEFAULT_CLAIM_TIMEOUT_MS;
    // Polling rather than reacting to each new run keeps pausing and the start delay in one place.
    this.poll = setInterval(() => this.claimDue(), Math.max(5, Math.min(25, options.startDelayMs)));
    this.poll.unref();
  }

  close(): void {
    this.closed = true;
    clearInterval(this.poll);
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }

  private later(ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      if (!this.closed) fn();
    }, ms);
    t.unref();
    this.timers.add(t);
  }

  private claimDue(): void {
    if (this.closed) return;
    const now = Date.now();
    const pending = this.deps.store.pendingRuns(this.options.taskQueueIds);
    const live = new Set(pending.map((p) => `${p.taskId}/${p.runId}`));
    for (const k of this.seenPending.keys()) if (!live.has(k)) this.seenPending.delete(k);
    if (this.deps.isPaused()) return;
    for (const { taskId, runId } of pending) {
      const k = `${taskId}/${runId}`;
      const seen = this.seenPending.get(k);
      if (seen === undefined) {
        this.seenPending.set(k, now);
        if (this.options.startDelayMs > 0) continue;
      } else if (now - seen < this.options.startDelayMs) {
        continue;
      }
      this.seenPending.delete(k);
      this.start(taskId, runId);
    }
  }

  private start(taskId: string, runId: number): void {
    const { store, artifacts, clock } = this.deps;
    const now = clock();
    const worker = { workerGroup: this.workerGroup, workerId: this.workerId };
    if (!store.claim(taskId, runId, worker, now + this.claimTimeoutMs, now)) return;
    const def = this.deps.definitionOf(taskId);
    const stamp = (): string => new Date(clock()).toJSON();
    artifacts.put(taskId, runId, {
      name: LIVE_BACKING_LOG,
      storageType: 's3',
      contentType: 'text/plain; charset=utf-8',
      expires: def.expires,
      chunks: [],
    });
    artifacts.put(taskId, runId, {
      name: LIVE_LOG,
      storageType: 'reference',
      contentType: 'text/plain; charset=utf-8',
      expires: def.expires,
      chunks: [],
      referenceTo: LIVE_BACKING_LOG,
    });
    const log = (line: string): void => artifacts.append(taskId, runId, LIVE_BACKING_LOG, `${line}\n`);
    log(`[taskcluster ${stamp()}] Worker Group: ${this.workerGroup}`);
    log(`[taskcluster ${stamp()}] Worker Id: ${this.workerId}`);
    log(`[taskcluster ${stamp()}] Task ID: ${taskId} run ${runId} on ${def.taskQueueId}`);
    for (const line of commandLines(def.payload.command)) log(`+ ${line}`);

    const wanted = requestedOutcome(def.payload, runId);
    const extraLines = Array.isArray(def.payload.logLines) ? def.payload.logLines.filter((l): l is string => typeof l === 'string') : [];
    const steps = 3;
    for (let i = 1; i <= steps; i++) {
      this.later((this.options.runMs * i) / (steps + 1), () => {
        if (!store.isRunning(taskId, runId)) return;
        log(`step ${i}/${steps}: working`);
        if (i === 1) for (const l of extraLines) log(l);
        // Reclaiming keeps a long run from being expired by the claim resolver, as a real worker does.
        if (wanted !== 'claim-expired') store.reclaim(taskId, runId, clock() + this.claimTimeoutMs);
      });
    }
    this.later(this.options.runMs, () => this.finish(taskId, runId, wanted, log, stamp));
  }

  private finish(
    taskId: string,
    runId: number,
    wanted: ReturnType<typeof requestedOutcome>,
    log: (line: string) => void,
    stamp: () => string,
  ): void {
    const { store, clock } = this.deps;
    if (!store.isRunning(taskId, runId)) {
      log(`[taskcluster ${stamp()}] run was resolved by the queue (canceled, deadline or claim expired)`);
      return;
    }
    let outcome: RunOutcome | undefined;
    let exitCode: number;
    if (wanted === undefined) {
      const fail = this.random() < this.options.failureRate;
      outcome = fail ? { state: 'failed' } : { state: 'completed' };
      exitCode = fail ? 1 : 0;
    } else if (typeof wanted === 'object') {
      exitCode = wanted.exitCode;
      outcome = exitCode === 0 ? { state: 'completed' } : { state: 'failed' };
    } else {
      outcome = toRunOutcome(wanted);
      exitCode = wanted === 'success' ? 0 : 1;
    }
    if (!outcome) {
      // Asked to vanish: no report, so the claim resolver resolves the run claim-expired at takenUntil.
      log(`[taskcluster ${stamp()}] worker vanished without reporting`);
      return;
    }
    log(`exit code ${exitCode}`);
    log(`[taskcluster ${stamp()}] === Task Finished === Result: ${outcome.state === 'exception' ? `exception (${outcome.reason})` : outcome.state}`);
    store.resolve(taskId, runId, outcome, clock());
  }
}
