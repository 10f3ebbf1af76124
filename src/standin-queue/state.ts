/**
 * The queue's task state machine, in memory: tasks and their runs, task
 * groups, and the transitions the queue and its resolvers make. Every method
 * takes `now` so tests drive time; nothing here does I/O or knows about HTTP.
 */
import { isDeepStrictEqual } from 'node:util';
import type { QueueRun, QueueTaskStatus, ReasonCreated, ReasonResolved, TaskStateName } from '../taskcluster/queue-types.js';
import { QueueError } from './errors.js';
import type { TaskDefinition } from './validate.js';

/** The queue refuses to add a run to a task that has this many. */
export const MAX_RUNS_ALLOWED = 50;

interface RunRecord {
  state: QueueRun['state'];
  reasonCreated: ReasonCreated;
  reasonResolved?: ReasonResolved;
  workerGroup?: string;
  workerId?: string;
  takenUntil?: number;
  scheduled: number;
  started?: number;
  resolved?: number;
}

interface TaskRecord {
  taskId: string;
  definition: TaskDefinition;
  retriesLeft: number;
  runs: RunRecord[];
}

/** The full definition as `GET /task/:taskId` answers it (split ids derived from taskQueueId). */
export type TaskDefinitionResponse = TaskDefinition & { provisionerId: string; workerType: string };

/** The status the queue answers: the proxy's type plus the task's priority. */
export type StandinTaskStatus = QueueTaskStatus & { priority: string };

export interface TaskGroupInfo {
  taskGroupId: string;
  schedulerId: string;
  expires: string;
}

/** How a worker (or the queue itself) ends a run. */
export type RunOutcome = { state: 'completed' } | { state: 'failed' } | { state: 'exception'; reason: ReasonResolved };

const UNRESOLVED: ReadonlySet<string> = new Set(['unscheduled', 'pending', 'running']);
const iso = (ms: number | undefined): string | undefined => (ms === undefined ? undefined : new Date(ms).toJSON());

function splitTaskQueueId(taskQueueId: string): { provisionerId: string; workerType: string } {
  const slash = taskQueueId.indexOf('/');
  return { provisionerId: taskQueueId.slice(0, slash), workerType: taskQueueId.slice(slash + 1) };
}

export class TaskStore {
  private readonly tasks = new Map<string, TaskRecord>();
  private readonly groups = new Map<string, { schedulerId: string; expires: number; taskIds: Set<string> }>();
  /** Called whenever a run becomes pending, so a worker can pick it up without polling. */
  onPending: (taskId: string, runId: number) => void = () => {};

  has(taskId: string): boolean {
    return this.tasks.has(taskId);
  }

  taskIds(): string[] {
    return [...this.tasks.keys()];
  }

  /**
   * Stores a new task and schedules its first run, or, for an identical
   * definition under the same taskId, answers the stored task's status.
   */
  create(taskId: string, def: TaskDefinition, now: number): { status: StandinTaskStatus; created: boolean } {
    const existing = this.tasks.get(taskId);
    if (existing) {
      if (!isDeepStrictEqual(existing.definition, def)) {
        throw new QueueError(
          'RequestConflict',
          'taskId `{{taskId}}` already used by another task.\nThis could be the result of faulty idempotency!',
          { taskId },
        );
      }
      return { status: this.status(taskId), created: false };
    }
    const group = this.groups.get(def.taskGroupId);
    if (group && group.schedulerId !== def.schedulerId) {
      throw new QueueError(
        'RequestConflict',
        'Task group `{{taskGroupId}}` contains tasks with a schedulerId other\nthan `{{schedulerId}}`. All tasks in the same task-group must have\nthe same schedulerId.',
        { taskGroupId: def.taskGroupId, schedulerId: def.schedulerId },
      );
    }
    const missing = def.dependencies.filter((d) => d !== taskId && !this.tasks.has(d));
    if (missing.length > 0) {
      throw new QueueError(
        'InputError',
        '`task.dependencies` references non-existing tasks: \n{{taskIds}}All taskIds in `task.dependencies` **must** exist\nbefore the task is created.\n',
        { taskIds: missing.map((id) => ` * ${id}\n`).join('') },
      );
    }
    const expires = Date.parse(def.expires);
    if (group) {
      group.expires = Math.max(group.expires, expires);
      group.taskIds.add(taskId);
    } else {
      this.groups.set(def.taskGroupId, { schedulerId: def.schedulerId, expires, taskIds: new Set([taskId]) });
    }
    const task: TaskRecord = { taskId, definition: def, retriesLeft: def.retries, runs: [] };
    this.tasks.set(taskId, task);
    if (this.dependenciesSatisfied(task)) this.addRun(task, 'scheduled', now);
    return { status: this.status(taskId), created: true };
  }

  definition(taskId: string): TaskDefinitionResponse {
    const task = this.get(taskId);
    const def = structuredClone(task.definition);
    return { ...splitTaskQueueId(def.taskQueueId), ...def };
  }

  status(taskId: string): StandinTaskStatus {
    const task = this.get(taskId);
    const d = task.definition;
    return {
      taskId,
      ...splitTaskQueueId(d.taskQueueId),
      taskQueueId: d.taskQueueId,
      schedulerId: d.schedulerId,
      projectId: d.projectId,
      taskGroupId: d.taskGroupId,
      priority: d.priority,
      deadline: d.deadline,
      expires: d.expires,
      retriesLeft: task.retriesLeft,
      state: stateOf(task),
      runs: task.runs.map((r, runId) => {
        // Keys in the queue's order, and absent rather than undefined, so answers compare byte for byte.
        const run: Record<string, unknown> = { runId, state: r.state, reasonCreated: r.reasonCreated };
        if (r.reasonResolved) run.reasonResolved = r.reasonResolved;
        if (r.workerGroup !== undefined) run.workerGroup = r.workerGroup;
        if (r.workerId !== undefined) run.workerId = r.workerId;
        if (r.takenUntil !== undefined) run.takenUntil = iso(r.takenUntil);
        run.scheduled = iso(r.scheduled);
        if (r.started !== undefined) run.started = iso(r.started);
        if (r.resolved !== undefined) run.resolved = iso(r.resolved);
        return run as unknown as QueueRun;
      }),
    };
  }

  /**
   * Resolves the current pending or running run as exception/canceled (an
   * unscheduled task gets a run made only to carry that). A task already
   * resolved is answered unchanged.
   */
  cancel(taskId: string, now: number): StandinTaskStatus {
    const task = this.get(taskId);
    if (Date.parse(task.definition.deadline) < now) {
      throw new QueueError('RequestConflict', "Task `{{taskId}}` can't be canceled past its deadline of {{deadline}}.", {
        taskId,
        deadline: task.definition.deadline,
      });
    }
    const run = task.runs.at(-1);
    if (!run) {
      task.runs.push({ state: 'exception', reasonCreated: 'exception', reasonResolved: 'canceled', scheduled: now, resolved: now });
      this.afterResolve(task, now);
    } else if (run.state === 'pending' || run.state === 'running') {
      this.resolveRun(task, run, { state: 'exception', reason: 'canceled' }, now);
    }
    return this.status(taskId);
  }

  /**
   * Adds a pending run to a resolved task (retries reset). A task pending or
   * running is answered unchanged.
   */
  rerun(taskId: string, now: number): StandinTaskStatus {
    const task = this.get(taskId);
    if (Date.parse(task.definition.deadline) < now) {
      throw new QueueError('RequestConflict', "Task `{{taskId}}` can't be rescheduled past its deadline of {{deadline}}.", {
        taskId,
        deadline: task.definition.deadline,
      });
    }
    const state = stateOf(task);
    if (state === 'pending' || state === 'running') return this.status(taskId);
    if (task.runs.length >= MAX_RUNS_ALLOWED) {
      throw new QueueError('RequestConflict', 'Maximum number of runs reached ({{max_runs_allowed}}).', {
        max_runs_allowed: MAX_RUNS_ALLOWED,
      });
    }
    task.retriesLeft = Math.min(task.definition.retries, MAX_RUNS_ALLOWED - task.runs.length - 1);
    this.addRun(task, 'rerun', now);
    return this.status(taskId);
  }

  /** Pending runs of the given task queues, oldest first: what a worker may claim. */
  pendingRuns(taskQueueIds: readonly string[]): Array<{ taskId: string; runId: number }> {
    const out: Array<{ taskId: string; runId: number; scheduled: number }> = [];
    for (const task of this.tasks.values()) {
      const run = task.runs.at(-1);
      if (run?.state === 'pending' && taskQueueIds.includes(task.definition.taskQueueId)) {
        out.push({ taskId: task.taskId, runId: task.runs.length - 1, scheduled: run.scheduled });
      }
    }
    return out.sort((a, b) => a.scheduled - b.scheduled).map(({ taskId, runId }) => ({ taskId, runId }));
  }

  /** Claims a pending run for a worker; false when it is no longer the pending latest run or past its deadline. */
  claim(taskId: string, runId: number, worker: { workerGroup: string; workerId: string }, takenUntil: number, now: number): boolean {
    const task = this.tasks.get(taskId);
    const run = task?.runs[runId];
    if (!task || !run || runId !== task.runs.length - 1 || run.state !== 'pending') return false;
    if (Date.parse(task.definition.deadline) <= now) return false;
    Object.assign(run, { state: 'running', workerGroup: worker.workerGroup, workerId: worker.workerId, takenUntil, started: now });
    return true;
  }

  /** A worker extends its claim on a running run. */
  reclaim(taskId: string, runId: number, takenUntil: number): boolean {
    const run = this.tasks.get(taskId)?.runs[runId];
    if (!run || !this.isRunning(taskId, runId)) return false;
    run.takenUntil = takenUntil;
    return true;
  }

  /** Whether this run is still the running one (a worker checks before it resolves or writes). */
  isRunning(taskId: string, runId: number): boolean {
    const task = this.tasks.get(taskId);
    return task !== undefined && runId === task.runs.length - 1 && task.runs[runId]?.state === 'running';
  }

  /**
   * A worker's report on its run. Exceptions for worker-shutdown and
   * intermittent-task add a retry run while retries are left, as the queue does.
   */
  resolve(taskId: string, runId: number, outcome: RunOutcome, now: number): boolean {
    const task = this.tasks.get(taskId);
    const run = task?.runs[runId];
    if (!task || !run || !this.isRunning(taskId, runId)) return false;
    this.resolveRun(task, run, outcome, now);
    return true;
  }

  /** One run's state, for the worker-side calls that check it before acting. */
  run(taskId: string, runId: number): { state: QueueRun['state']; reasonResolved?: ReasonResolved; workerGroup?: string; workerId?: string; resolved?: number } | undefined {
    const run = this.tasks.get(taskId)?.runs[runId];
    return run ? { ...run } : undefined;
  }

  /**
   * A worker's report over the API: resolves the running run, or accepts a
   * repeat of the same report; anything else is 409 as on the queue.
   */
  report(taskId: string, runId: number, outcome: RunOutcome, now: number): StandinTaskStatus {
    const task = this.get(taskId);
    const run = task.runs[runId];
    const reason = outcome.state === 'exception' ? outcome.reason : outcome.state;
    if (run && runId === task.runs.length - 1 && run.state === 'running') {
      this.resolveRun(task, run, outcome, now);
    } else {
      // A repeat of the report that resolved this run (and may have added a retry after it) is answered again.
      const repeat = run && run.state === outcome.state && run.reasonResolved === reason && task.runs.length - 1 <= runId + 1;
      if (!repeat) {
        throw new QueueError('RequestConflict', 'Run {{runId}} on task `{{taskId}}` is resolved or not running.', { taskId, runId });
      }
    }
    return this.status(taskId);
  }

  /** The claim resolver: a running run past its takenUntil becomes exception/claim-expired (and is retried). */
  expireClaims(now: number): number {
    let n = 0;
    for (const task of this.tasks.values()) {
      const run = task.runs.at(-1);
      if (run?.state === 'running' && run.takenUntil !== undefined && run.takenUntil <= now && Date.parse(task.definition.deadline) >= now) {
        this.resolveRun(task, run, { state: 'exception', reason: 'claim-expired' }, now);
        n++;
      }
    }
    return n;
  }

  /** The deadline resolver: a task unresolved at its deadline becomes exception/deadline-exceeded. */
  resolveDeadlines(now: number): number {
    let n = 0;
    for (const task of this.tasks.values()) {
      if (!UNRESOLVED.has(stateOf(task)) || Date.parse(task.definition.deadline) > now) continue;
      const run = task.runs.at(-1);
      if (!run) {
        task.runs.push({ state: 'exception', reasonCreated: 'exception', reasonResolved: 'deadline-exceeded', scheduled: now, resolved: now });
      } else {
        Object.assign(run, { state: 'exception', reasonResolved: 'deadline-exceeded', resolved: now });
      }
      this.afterResolve(task, now);
      n++;
    }
    return n;
  }

  /** Tasks of a group in taskId order, a page at a time. */
  listGroup(taskGroupId: string, offset: number, limit: number): { info: TaskGroupInfo; taskIds: string[]; more: boolean } | undefined {
    const group = this.groups.get(taskGroupId);
    if (!group) return undefined;
    const ids = [...group.taskIds].sort();
    return {
      info: { taskGroupId, schedulerId: group.schedulerId, expires: new Date(group.expires).toJSON() },
      taskIds: ids.slice(offset, offset + limit),
      more: ids.length > offset + limit,
    };
  }

  runCount(taskId: string): number {
    return this.get(taskId).runs.length;
  }

  private get(taskId: string): TaskRecord {
    const task = this.tasks.get(taskId);
    if (!task) {
      throw new QueueError('ResourceNotFound', '`{{taskId}}` does not correspond to a task that exists.\nAre you sure this task exists?', { taskId });
    }
    return task;
  }

  private addRun(task: TaskRecord, reasonCreated: ReasonCreated, now: number): void {
    task.runs.push({ state: 'pending', reasonCreated, scheduled: now });
    this.onPending(task.taskId, task.runs.length - 1);
  }

  private resolveRun(task: TaskRecord, run: RunRecord, outcome: RunOutcome, now: number): void {
    run.state = outcome.state;
    run.reasonResolved = outcome.state === 'exception' ? outcome.reason : outcome.state;
    run.resolved = now;
    if (outcome.state === 'exception') {
      const retryReason: ReasonCreated | undefined =
        outcome.reason === 'worker-shutdown' || outcome.reason === 'claim-expired'
          ? 'retry'
          : outcome.reason === 'intermittent-task'
            ? 'task-retry'
            : undefined;
      if (retryReason && task.retriesLeft > 0) {
        task.retriesLeft--;
        this.addRun(task, retryReason, now);
        return;
      }
    }
    this.afterResolve(task, now);
  }

  /** A resolved task may let dependents schedule. */
  private afterResolve(resolved: TaskRecord, now: number): void {
    for (const task of this.tasks.values()) {
      if (task.runs.length === 0 && task.definition.dependencies.includes(resolved.taskId) && this.dependenciesSatisfied(task)) {
        if (Date.parse(task.definition.deadline) > now) this.addRun(task, 'scheduled', now);
      }
    }
  }

  private dependenciesSatisfied(task: TaskRecord): boolean {
    return task.definition.dependencies.every((id) => {
      if (id === task.taskId) return false;
      const dep = this.tasks.get(id);
      const state = dep ? stateOf(dep) : 'unscheduled';
      return task.definition.requires === 'all-resolved' ? !UNRESOLVED.has(state) : state === 'completed';
    });
  }
}

function stateOf(task: TaskRecord): TaskStateName {
  return task.runs.at(-1)?.state ?? 'unscheduled';
}
