/**
 * Live events for queue work, told to the web UI connections that asked for
 * them. A {@link QueueObserver} (registered with QueueWork in src/main.ts):
 * when the queue confirms a task or a fresh status of one is read, the
 * events a Buildbot master would produce (src/live/events.ts) go to every
 * connection relayed on `/ws` (src/live/relay.ts) whose subscriptions match
 * them, once per matching subscription.
 *
 * Events are worked out in order, one after the other, off the follow loop:
 * an observer never slows the loop or changes what it saves, and a store
 * read for a buildset is made only when someone listens for buildsets.
 */
import type { Logger } from '../logging/logger.js';
import type { BuildRecord, Store, TaskRecord } from '../store/store.js';
import type { QueueObserver } from '../taskcluster/observer.js';
import type { QueueTaskStatus } from '../taskcluster/queue-types.js';
import { parseStoredStatus } from '../taskcluster/shapes.js';
import { buildsetCompleteEvent, buildsetNewEvent, eventsOfStatus, newTaskEvent, type LiveEvent } from './events.js';

/** One web UI connection, as the hub sees it. */
export interface LiveListener {
  /** How many of its subscriptions match `key` (0: it does not want it). */
  wants(key: readonly string[]): number;
  /** Sends one text frame. */
  send(text: string): void;
}

export interface LiveEventsDeps {
  /** The store, once open (QueueWork.openedStore): buildsets are read from it. */
  store: () => Pick<Store, 'buildset' | 'tasksOfBuildset'> | undefined;
  logger: Logger;
}

/** Events told recently, remembered so that a change seen twice (two reads of one status) is told once. */
const REMEMBERED_EVENTS = 20_000;
/** Changes waiting to be worked out; past this (a store that hangs) new ones are dropped rather than held. */
const MAX_WAITING = 10_000;

export class LiveEvents {
  private readonly listeners = new Set<LiveListener>();
  private readonly told = new Set<string>();
  private chain: Promise<void> = Promise.resolve();
  private waiting = 0;

  constructor(private readonly deps: LiveEventsDeps) {}

  readonly observer: QueueObserver = {
    taskCreated: (task) => this.later(() => this.taskCreated(task)),
    // Never rejects: a live event missed is not a reason to look at the task again.
    statusSeen: (task, previous, status, builds) => this.later(() => this.statusSeen(task, previous, status, builds)),
  };

  /** Adds a listener; the function returned removes it. */
  add(listener: LiveListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  get listening(): number {
    return this.listeners.size;
  }

  /** Resolves once every change told so far has been worked out (for tests and shutdown). */
  settled(): Promise<void> {
    return this.chain;
  }

  /** Sends an event to each listener as many times as its subscriptions match each key, unless it was told before. */
  publish(event: LiveEvent): void {
    if (this.told.has(event.id)) return;
    this.told.add(event.id);
    if (this.told.size > REMEMBERED_EVENTS) this.told.delete(this.told.values().next().value!);
    for (const key of event.keys) {
      let text: string | undefined;
      for (const listener of this.listeners) {
        const times = listener.wants(key);
        if (times === 0) continue;
        text ??= JSON.stringify({ k: key.join('/'), m: event.message });
        for (let i = 0; i < times; i++) listener.send(text);
      }
    }
  }

  private wanted(key: readonly string[]): boolean {
    for (const listener of this.listeners) if (listener.wants(key) > 0) return true;
    return false;
  }

  private later(work: () => Promise<void>): void {
    if (this.listeners.size === 0 || this.waiting >= MAX_WAITING) return;
    this.waiting++;
    this.chain = this.chain
      .then(work)
      .catch((error: unknown) => {
        this.deps.logger.warn('a live event for queue work could not be worked out; web UIs miss it', { error: (error as Error).message });
      })
      .finally(() => this.waiting--);
  }

  /** Buildbot announces the buildset, then its buildrequests. */
  private async taskCreated(task: TaskRecord): Promise<void> {
    const bsid = String(task.buildsetId);
    if (this.wanted(['buildsets', bsid, 'new'])) {
      // The buildrequest's event does not wait on a store that fails.
      const buildset = await this.deps
        .store()
        ?.buildset(task.buildsetId)
        .catch((error: unknown) => void this.deps.logger.warn('a live buildset event could not be worked out; web UIs miss it', { error: (error as Error).message }));
      if (buildset !== undefined) this.publish(buildsetNewEvent(buildset));
    }
    this.publish(newTaskEvent(task));
  }

  private async statusSeen(task: TaskRecord, previous: QueueTaskStatus | undefined, status: QueueTaskStatus, builds: readonly BuildRecord[]): Promise<void> {
    const { events, requestCompleted } = eventsOfStatus(task, previous, status, builds);
    for (const event of events) this.publish(event);
    if (!requestCompleted || !this.wanted(['buildsets', String(task.buildsetId), 'complete'])) return;
    const store = this.deps.store();
    if (store === undefined) return;
    const [buildset, tasks] = await Promise.all([store.buildset(task.buildsetId), store.tasksOfBuildset(task.buildsetId)]);
    if (buildset === undefined) return;
    // This task's status is not saved yet: the fresh one stands for it.
    const views = tasks.map((t) => (t.taskId === task.taskId ? { task: t, status } : { task: t, status: parseStoredStatus(t) }));
    const complete = buildsetCompleteEvent(buildset, views);
    if (complete !== undefined) this.publish(complete);
  }
}
