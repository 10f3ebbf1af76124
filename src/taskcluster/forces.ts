/**
 * A Buildbot force (or rebuild) becomes one task per builder, exactly once.
 *
 * A force carries no idempotency key, but createTask does: its taskId. So the
 * proxy picks the taskId, renders the definition and stores both durably
 * BEFORE the first PUT. From then on the only thing ever sent for that
 * buildrequest is the identical body under the same taskId, which the queue
 * answers idempotently; a proxy killed at any instant finds the row at
 * restart and finishes it (recovery below). No path here creates a second
 * task for one stored buildrequest.
 */
import slugid from 'slugid';
import { isStranglerError } from '../errors.js';
import type { Logger } from '../logging/logger.js';
import type { Backend, Route } from '../routing/table.js';
import type { BuildsetRecord, SourceStampRecord, Store, TaskRecord } from '../store/store.js';
import type { QueueClient, QueueOutcome } from './queue-client.js';
import type { QueueTaskDefinition, QueueTaskStatus } from './queue-types.js';
import { LINK_TAGS, mergeTemplates, renderTask, TemplateError, type TemplateContext } from './template.js';

/** The queue refuses a `created` more than 15 minutes away from its clock; resends stop short of that. */
export const CREATED_WINDOW_MS = 15 * 60_000;
const RESEND_WINDOW_MS = CREATED_WINDOW_MS - 60_000;
/** Sends of one createTask within a client's force before the answer says where it stands. */
const ATTEMPTS = 3;
const RETRY_DELAY_MS = 200;

/** Params of Buildbot's force that are not custom properties. */
const FORCE_PARAMS = new Set(['builderNames', 'builderid', 'reason', 'username', 'owner', 'revision', 'branch', 'repository', 'project', 'codebase', 'priority']);

export interface ForceRequest {
  backend: Backend;
  route: Route | undefined;
  builders: { name: string; id: number }[];
  params: Readonly<Record<string, unknown>>;
  /** The buildset this one rebuilds, if any. */
  rebuildOf?: number;
}

/** Where a force stands once the proxy answers the client. */
export type ForceOutcome =
  /** Every task is created, or stored and certain to be finished by recovery: the client gets its ids. */
  | { kind: 'accepted'; bsid: number; brids: Map<number, number> }
  /** The queue refused (4xx) or a definition cannot be rendered: no task exists. */
  | { kind: 'refused'; status: number; message: string }
  /** The queue could not be reached and nothing reached it: no task exists, the force may go elsewhere. */
  | { kind: 'unreachable'; message: string }
  /** The queue failed and no task exists for certain: the client is told to try again. */
  | { kind: 'failed'; message: string };

type CreateResult = 'created' | 'refused' | 'unreachable' | 'failed' | 'pending';

export class ForceTranslator {
  constructor(
    private readonly store: Store,
    private readonly client: QueueClient,
    private readonly logger: Logger,
    private readonly onTaskCreated: (task: TaskRecord) => void = () => undefined,
    private readonly now: () => number = Date.now,
  ) {}

  async force(request: ForceRequest): Promise<ForceOutcome> {
    const { backend, route, builders, params } = request;
    const template = mergeTemplates(backend.queue?.task, route?.task);
    if (template === undefined) return { kind: 'refused', status: 400, message: `no task template for backend ${backend.name}` };

    const [bsid] = await this.store.allocateIds('buildset', 1);
    const brids = await this.store.allocateIds('buildrequest', builders.length);
    const submittedAt = this.now();
    const source = sourceStampOf(params);
    const properties = customProperties(params);
    const reason = stringParam(params, 'reason') || (request.rebuildOf !== undefined ? 'rebuild' : 'A build was forced');
    const username = stringParam(params, 'username') || stringParam(params, 'owner');

    const tasks: TaskRecord[] = [];
    for (const [i, builder] of builders.entries()) {
      const taskId = slugid.nice();
      const context: TemplateContext = {
        taskId,
        builder,
        buildset: { id: bsid! },
        buildrequest: { id: brids[i]! },
        reason,
        username,
        ...source,
        revision: source.revision ?? '',
        branch: source.branch ?? '',
        properties: Object.fromEntries(Object.entries(properties).map(([k, [v]]) => [k, v])),
        now: new Date(submittedAt).toISOString(),
      };
      let definition: QueueTaskDefinition;
      try {
        definition = renderTask(template, context);
      } catch (error) {
        if (error instanceof TemplateError) return { kind: 'refused', status: 400, message: `the task template for ${builder.name} did not render: ${error.message}` };
        throw error;
      }
      tasks.push({
        taskId,
        buildrequestId: brids[i]!,
        buildsetId: bsid!,
        backend: backend.name,
        builderName: builder.name,
        builderid: builder.id,
        definition: JSON.stringify(definition),
        state: 'pending',
        stateReason: null,
        submittedAt,
        status: null,
        statusAt: null,
        final: false,
      });
    }
    const buildset: BuildsetRecord = {
      bsid: bsid!,
      backend: backend.name,
      reason,
      submittedAt,
      externalIdstring: null,
      sourcestamps: [source],
      properties: JSON.stringify({ ...properties, reason: [reason, 'Force Build Form'], ...(username ? { owner: [username, 'Force Build Form'] } : {}) }),
      rebuildOf: request.rebuildOf ?? null,
    };
    return this.submit(backend, buildset, tasks);
  }

  /**
   * Rebuild: a new buildset (reason `rebuild`) with one new task, the stored
   * definition of the rebuilt one with fresh dates and the new ids in its tags.
   */
  async rebuild(backend: Backend, original: TaskRecord, definition: QueueTaskDefinition, originalBuildset: BuildsetRecord | undefined, buildid: number): Promise<ForceOutcome> {
    const [bsid] = await this.store.allocateIds('buildset', 1);
    const [brid] = await this.store.allocateIds('buildrequest', 1);
    const submittedAt = this.now();
    const fresh = withFreshDates(definition, submittedAt);
    fresh.tags = { ...fresh.tags, [LINK_TAGS.buildset]: String(bsid), [LINK_TAGS.buildrequest]: String(brid) };
    const task: TaskRecord = { ...original, taskId: slugid.nice(), buildrequestId: brid!, buildsetId: bsid!, definition: JSON.stringify(fresh), state: 'pending', stateReason: null, submittedAt, status: null, statusAt: null, final: false };
    const buildset: BuildsetRecord = {
      bsid: bsid!,
      backend: backend.name,
      reason: 'rebuild',
      submittedAt,
      externalIdstring: originalBuildset?.externalIdstring ?? null,
      sourcestamps: originalBuildset?.sourcestamps ?? [],
      properties: originalBuildset?.properties ?? '{}',
      rebuildOf: buildid,
    };
    return this.submit(backend, buildset, [task]);
  }

  /** Stores a buildset and its tasks, then creates each task once. */
  private async submit(backend: Backend, buildset: BuildsetRecord, tasks: TaskRecord[]): Promise<ForceOutcome> {
    // The durable point: from here on the tasks exist for the proxy, and recovery will finish any the calls below leave open.
    await this.store.recordBuildset(buildset, tasks);

    const results = await Promise.all(tasks.map((task) => this.createOnce(backend, task)));
    const refused = results.findIndex((r) => r.result === 'refused');
    if (refused !== -1 || results.some((r) => r.result === 'failed' || r.result === 'unreachable')) {
      // Buildbot's force is all or nothing: a buildset with one builder refused is called off whole.
      await this.callOff(backend, tasks, results.map((r) => r.result));
      if (refused !== -1) return { kind: 'refused', status: results[refused]!.status ?? 400, message: results[refused]!.message ?? 'the queue refused the task' };
      if (results.every((r) => r.result === 'unreachable')) return { kind: 'unreachable', message: results[0]!.message ?? 'the queue could not be reached' };
      return { kind: 'failed', message: results.find((r) => r.result === 'failed' || r.result === 'unreachable')?.message ?? 'the queue failed' };
    }
    return { kind: 'accepted', bsid: buildset.bsid, brids: new Map(tasks.map((t) => [t.builderid, t.buildrequestId])) };
  }

  /**
   * Sends one stored task's identical createTask until it is settled. A 5xx
   * or a failure after the request may have arrived is ambiguous: the same
   * body again is safe (the queue answers it idempotently). What stays
   * ambiguous is checked with `GET /task`.
   */
  private async createOnce(backend: Backend, task: TaskRecord): Promise<{ result: CreateResult; status?: number; message?: string }> {
    let reached = false;
    let last = '';
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      if (attempt > 0) await delay(RETRY_DELAY_MS * attempt);
      const answer = await this.client.createTask(backend, task.taskId, task.definition);
      const settled = await this.settle(task, answer);
      if (settled !== undefined) return settled;
      if (!answer.ok && !answer.answered) {
        if (answer.failure.mayHaveReachedBackend) reached = true;
        last = `${answer.failure.message} (${answer.failure.kind})`;
      } else if (!answer.ok) {
        reached = true;
        last = `${answer.status} ${answer.error.code}: ${answer.error.message}`;
      }
    }
    if (!reached) {
      await this.store.setTaskState(task.taskId, 'abandoned', `queue unreachable: ${last}`);
      return { result: 'unreachable', message: `the queue at ${backend.url} could not be reached: ${last}` };
    }
    const check = await this.client.task(backend, task.taskId);
    if (check.ok) return { result: await this.createdOrPending(task, undefined) };
    if (check.answered && check.status === 404) {
      await this.store.setTaskState(task.taskId, 'abandoned', `queue failed and has no such task: ${last}`);
      return { result: 'failed', message: `the queue failed to create the task: ${last}` };
    }
    // Neither the create nor the check settled it: stored and pending, recovery finishes it.
    this.logger.warn('createTask unsettled; recovery will finish it', { backend: backend.name, taskId: task.taskId, error: last });
    return { result: 'pending' };
  }

  /** What one createTask answer settles, if anything. */
  private async settle(task: TaskRecord, answer: QueueOutcome<{ status: QueueTaskStatus }>): Promise<{ result: CreateResult; status?: number; message?: string } | undefined> {
    if (answer.ok) return { result: await this.createdOrPending(task, answer.body?.status) };
    if (answer.answered && answer.status >= 400 && answer.status < 500) {
      const message = queueErrorMessage(answer.status, answer.error.code, answer.error.message);
      await this.store.setTaskState(task.taskId, 'rejected', message);
      return { result: 'refused', status: answer.status, message };
    }
    return undefined;
  }

  /**
   * The task exists on the queue. If the store goes away before that is
   * written, its row stays pending and recovery marks it created once the
   * store is back; the client still gets its ids, since an error would invite
   * it to force again and make a second build.
   */
  private async createdOrPending(task: TaskRecord, status: QueueTaskStatus | undefined): Promise<'created' | 'pending'> {
    try {
      await this.markCreated(task, status);
      return 'created';
    } catch (error) {
      if (!isStranglerError(error, 'STORE_UNAVAILABLE')) throw error;
      this.logger.warn('a created task could not be marked created; recovery will', { backend: task.backend, taskId: task.taskId, error: error.message });
      return 'pending';
    }
  }

  private async markCreated(task: TaskRecord, status: QueueTaskStatus | undefined): Promise<void> {
    await this.store.setTaskState(task.taskId, 'created', null);
    if (status !== undefined) await this.store.saveStatus(task.taskId, JSON.stringify(status), false, this.now());
    this.onTaskCreated(task);
  }

  /** A force that will not be answered with ids: created siblings are cancelled, pending ones abandoned. */
  private async callOff(backend: Backend, tasks: TaskRecord[], results: CreateResult[]): Promise<void> {
    for (const [i, task] of tasks.entries()) {
      if (results[i] === 'created' || results[i] === 'pending') {
        const cancelled = await this.client.cancel(backend, task.taskId);
        if (cancelled.ok || (cancelled.answered && cancelled.status === 404)) {
          await this.store.setTaskState(task.taskId, 'abandoned', 'another builder of its buildset was refused; cancelled');
        } else {
          // The task may run: its row stays as it is, so reads show what the queue does with it.
          this.logger.warn('a task of a refused buildset could not be cancelled', { backend: backend.name, taskId: task.taskId });
        }
      }
    }
  }

  /**
   * Finishes tasks a crash or an unreachable queue left `pending`: within the
   * queue's window the identical body is sent again; after it, `GET /task`
   * tells whether it exists, and a task that never arrived is created under
   * the same taskId with fresh dates (nothing else can hold that id).
   */
  async recover(backends: ReadonlyMap<string, Backend>): Promise<number> {
    const pending = await this.store.pendingTasks(100);
    let settled = 0;
    for (const task of pending) {
      const backend = backends.get(task.backend);
      if (backend?.kind !== 'taskcluster') continue;
      const definition = JSON.parse(task.definition) as QueueTaskDefinition;
      if (this.now() - Date.parse(definition.created) < RESEND_WINDOW_MS) {
        const answer = await this.client.createTask(backend, task.taskId, task.definition);
        if (answer.ok || !answer.answered || answer.status >= 500) {
          if ((await this.settle(task, answer)) !== undefined) settled++;
          continue;
        }
        // A refusal now does not prove the first send failed (the credentials may have changed since): the queue says.
        const check = await this.client.task(backend, task.taskId);
        if (check.ok) await this.markCreated(task, undefined);
        else if (check.answered && check.status === 404) await this.settle(task, answer);
        else continue;
        settled++;
        continue;
      }
      const check = await this.client.task(backend, task.taskId);
      if (check.ok) {
        await this.markCreated(task, undefined);
        settled++;
      } else if (check.answered && check.status === 404) {
        const fresh = JSON.stringify(withFreshDates(definition, this.now()));
        await this.store.setTaskState(task.taskId, 'pending', 'recreated after the queue window', fresh);
        const answer = await this.client.createTask(backend, task.taskId, fresh);
        if ((await this.settle({ ...task, definition: fresh }, answer)) !== undefined) settled++;
      }
    }
    if (settled > 0) this.logger.info('recovered stored forces', { settled, pending: pending.length });
    return settled;
  }
}

/** The same task with `created` now and its deadline and expiry moved by as much. */
export function withFreshDates(definition: QueueTaskDefinition, now: number): QueueTaskDefinition {
  const shift = now - Date.parse(definition.created);
  const moved = (date: string | undefined) => (date === undefined ? undefined : new Date(Date.parse(date) + shift).toISOString());
  return { ...definition, created: new Date(now).toISOString(), deadline: moved(definition.deadline)!, ...(definition.expires ? { expires: moved(definition.expires)! } : {}) };
}

/** A queue error in words a Buildbot user can act on: a missing scope says which. */
export function queueErrorMessage(status: number, code: string, message: string): string {
  const firstLines = message.split('\n').slice(0, 12).join('\n');
  if (status === 403) return `the queue refused: the proxy's credentials lack a scope (${code}): ${firstLines}`;
  if (status === 401) return `the queue did not accept the proxy's credentials (${code}): ${firstLines}`;
  return `the queue answered ${status} ${code}: ${firstLines}`;
}

function stringParam(params: Readonly<Record<string, unknown>>, name: string): string {
  const value = Object.hasOwn(params, name) ? params[name] : undefined;
  return typeof value === 'string' ? value : typeof value === 'number' ? String(value) : '';
}

function sourceStampOf(params: Readonly<Record<string, unknown>>): SourceStampRecord {
  return {
    revision: stringParam(params, 'revision') || null,
    branch: stringParam(params, 'branch') || null,
    repository: stringParam(params, 'repository'),
    project: stringParam(params, 'project'),
    codebase: stringParam(params, 'codebase'),
  };
}

/** A force's other params are custom properties, as Buildbot's force scheduler makes them. */
function customProperties(params: Readonly<Record<string, unknown>>): Record<string, [unknown, string]> {
  const properties: Record<string, [unknown, string]> = {};
  for (const [name, value] of Object.entries(params)) {
    if (FORCE_PARAMS.has(name) || name === '__proto__') continue;
    if (value === null || ['string', 'number', 'boolean'].includes(typeof value)) properties[name] = [value, 'Force Build Form'];
  }
  return properties;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
