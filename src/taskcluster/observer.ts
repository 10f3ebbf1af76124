/**
 * Who wants to know what happens to work on a queue: metrics, the build
 * tracker (src/tracking/) and the live events the Buildbot web UI reads.
 * The translation calls these at the two moments that matter; an observer
 * never changes what a client is answered.
 */
import type { BuildRecord, TaskRecord } from '../store/store.js';
import type { QueueTaskStatus } from './queue-types.js';

export interface QueueObserver {
  /** The queue confirmed a task (createTask answered, or recovery found or made it). */
  taskCreated?(task: TaskRecord): void;
  /**
   * A status fresh from the queue, before it is saved, with the builds its
   * runs are (minted already). `previous` is the status known before (none
   * for the first). A promise that rejects leaves the task to be looked at
   * again: the status is then saved as not final, so nothing it finished is
   * missed.
   */
  statusSeen?(task: TaskRecord, previous: QueueTaskStatus | undefined, status: QueueTaskStatus, builds: readonly BuildRecord[]): Promise<void> | void;
}

/** Several observers as one, told in order; each observer's own failure is its own (the tracker retries through the rejected promise). */
export function observeAll(observers: readonly QueueObserver[]): Required<QueueObserver> {
  return {
    taskCreated: (task) => {
      for (const o of observers) o.taskCreated?.(task);
    },
    statusSeen: async (task, previous, status, builds) => {
      const failures: unknown[] = [];
      for (const o of observers) {
        try {
          await o.statusSeen?.(task, previous, status, builds);
        } catch (error) {
          failures.push(error);
        }
      }
      if (failures.length > 0) throw failures[0];
    },
  };
}
