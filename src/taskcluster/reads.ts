/**
 * What the proxy knows of queue work, kept fresh: each task's status (from
 * the store when the task is final, so reads of finished work need no queue
 * round trip; from the queue, at most once per `freshForMs` and one call at a
 * time per task, while it runs) and the builds its runs became.
 */
import type { Logger } from '../logging/logger.js';
import type { Backend } from '../routing/table.js';
import type { BuildRecord, Store, TaskRecord } from '../store/store.js';
import type { Upstream } from '../upstream/upstream.js';
import type { QueueObserver } from './observer.js';
import type { QueueClient } from './queue-client.js';
import type { QueueTaskStatus } from './queue-types.js';
import { runsThatAreBuilds } from './shapes.js';

const FRESH_FOR_MS = 1_000;
/** Views of finished tasks kept in memory, the most recently read last; past it the least recently read goes. */
export const FINISHED_VIEWS_MEMORY = 1_000;

export interface TaskView {
  task: TaskRecord;
  status: QueueTaskStatus | undefined;
  builds: BuildRecord[];
}

export class TaskStatuses {
  private readonly inFlight = new Map<string, Promise<TaskView>>();
  /**
   * Finished tasks by buildrequest id, with their status and builds: a final
   * task never changes again (on any replica), so reads of finished work are
   * answered without the store once read.
   */
  private readonly finished = new Map<number, TaskView>();
  /** The last floor learned per builder, for when the legacy master cannot be asked. */
  private readonly floors = new Map<string, number>();

  constructor(
    private readonly store: Store,
    private readonly client: QueueClient,
    private readonly upstream: Pick<Upstream, 'fetch'>,
    private readonly logger: Logger,
    private readonly observer: QueueObserver = {},
    private readonly now: () => number = Date.now,
  ) {}

  /** A task with its latest known status and its builds, refreshed from the queue when stale. */
  view(task: TaskRecord, backends: ReadonlyMap<string, Backend>, legacy: Backend): Promise<TaskView> {
    const finished = this.finishedView(task.buildrequestId);
    if (finished !== undefined) return Promise.resolve(finished);
    const known = this.inFlight.get(task.taskId);
    if (known !== undefined) return known;
    const pending = this.refresh(task, backends, legacy).finally(() => this.inFlight.delete(task.taskId));
    this.inFlight.set(task.taskId, pending);
    return pending;
  }

  private async refresh(task: TaskRecord, backends: ReadonlyMap<string, Backend>, legacy: Backend): Promise<TaskView> {
    const known = task.status === null ? undefined : (JSON.parse(task.status) as QueueTaskStatus);
    const backend = backends.get(task.backend);
    const stale = task.statusAt === null || this.now() - task.statusAt >= FRESH_FOR_MS;
    if (task.state === 'created' && !task.final && stale && backend?.kind === 'taskcluster') {
      const answer = await this.client.status(backend, task.taskId);
      if (answer.ok && answer.body?.status !== undefined) return this.seen(task, answer.body.status, legacy);
      if (!answer.ok) {
        // A stale status still answers the client; the next read tries again.
        this.logger.warn('queue status read failed; answering with the last known status', { backend: backend.name, taskId: task.taskId, error: answer.answered ? `${answer.status} ${answer.error.code}` : answer.failure.kind });
      }
    }
    const view = { task, status: known, builds: await this.buildsFor(task, known, legacy) };
    if (task.final) this.rememberFinished(view);
    return view;
  }

  /** A finished task's view, if it was read before. */
  finishedView(buildrequestId: number): TaskView | undefined {
    const view = this.finished.get(buildrequestId);
    if (view !== undefined) {
      this.finished.delete(buildrequestId);
      this.finished.set(buildrequestId, view);
    }
    return view;
  }

  private rememberFinished(view: TaskView): void {
    this.finished.set(view.task.buildrequestId, view);
    if (this.finished.size > FINISHED_VIEWS_MEMORY) this.finished.delete(this.finished.keys().next().value!);
  }

  /**
   * A status fresh from the queue (a status read, or the answer to a cancel):
   * its new builds minted, the observers told, then saved with the next check
   * time.
   */
  async seen(task: TaskRecord, status: QueueTaskStatus, legacy: Backend): Promise<TaskView> {
    const known = task.status === null ? undefined : (JSON.parse(task.status) as QueueTaskStatus);
    const builds = await this.buildsFor(task, status, legacy);
    let final = isResolved(status);
    try {
      await this.observer.statusSeen?.(task, known, status, builds);
    } catch (error) {
      // Saved as not final, the task is followed again and the observer told again.
      final = false;
      this.logger.warn('recording what a queue status says failed; looking again next round', { backend: task.backend, taskId: task.taskId, error: (error as Error).message });
    }
    const at = this.now();
    await this.store.saveStatus(task.taskId, JSON.stringify(status), final, at, at + nextCheckDelayMs(task, at));
    return { task, status, builds };
  }

  /** The builds of a task's runs, minted the first time a run is seen to have started. */
  private async buildsFor(task: TaskRecord, status: QueueTaskStatus | undefined, legacy: Backend): Promise<BuildRecord[]> {
    if (status === undefined) return [];
    const runs = runsThatAreBuilds(status);
    if (runs.length === 0) return [];
    const known = await this.store.buildsOfTask(task.buildrequestId);
    const builds = [...known];
    for (const runId of runs) {
      if (known.some((b) => b.runId === runId)) continue;
      const floor = await this.numberFloor(task.builderName, legacy);
      builds.push(await this.store.buildForRun(task.buildrequestId, runId, task.builderName, floor));
    }
    return builds.sort((a, b) => a.runId - b.runId);
  }

  /**
   * The number after the legacy master's last build of a builder: build
   * numbers continue after the legacy master's. Asked afresh for every run
   * first seen (once per run): while a job type is split the legacy master
   * keeps counting, and a remembered floor would be stale.
   */
  private async numberFloor(builderName: string, legacy: Backend): Promise<number> {
    let floor = this.floors.get(builderName) ?? 1;
    try {
      const answer = await this.upstream.fetch(legacy, {
        path: `/api/v2/builders/${encodeURIComponent(builderName)}/builds?order=-number&limit=1&field=number`,
        headers: ['accept', 'application/json', 'user-agent', 'strangler-proxy build numbers'],
        timeoutMs: 2_000,
        maxBytes: 64 * 1024,
      });
      if (answer.status === 200) {
        const last = (JSON.parse(answer.body.toString('utf8')) as { builds?: { number?: unknown }[] }).builds?.[0]?.number;
        floor = typeof last === 'number' ? last + 1 : 1;
      }
    } catch (error) {
      this.logger.warn('could not read the legacy master\'s last build number; numbering from the last one known', { builder: builderName, error: (error as Error).message });
    }
    this.floors.set(builderName, floor);
    return floor;
  }
}

/** The follow loop looks at a young task every few seconds and backs off to once a minute for long ones. */
export const FOLLOW_MIN_DELAY_MS = 5_000;
export const FOLLOW_MAX_DELAY_MS = 60_000;

/**
 * When to look at an unfinished task again: a tenth of its age, within
 * [FOLLOW_MIN_DELAY_MS, FOLLOW_MAX_DELAY_MS]: a build is seen to finish
 * within about a tenth of its running time (at most a minute) after it did,
 * while long builds cost few queue calls.
 */
export function nextCheckDelayMs(task: Pick<TaskRecord, 'submittedAt'>, now: number): number {
  return Math.min(FOLLOW_MAX_DELAY_MS, Math.max(FOLLOW_MIN_DELAY_MS, Math.round((now - task.submittedAt) / 10)));
}

/** A task whose last run is resolved and will not be retried by the queue. */
export function isResolved(status: QueueTaskStatus): boolean {
  return status.state === 'completed' || status.state === 'failed' || status.state === 'exception';
}
