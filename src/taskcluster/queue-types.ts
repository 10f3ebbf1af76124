/**
 * The parts of Taskcluster's Queue v1 API the proxy reads and writes, as the
 * queue sends them (`services/queue/schemas/v1`). Dates are ISO 8601 strings.
 */

export type TaskStateName = 'unscheduled' | 'pending' | 'running' | 'completed' | 'failed' | 'exception';

export type ReasonResolved =
  | 'completed'
  | 'failed'
  | 'deadline-exceeded'
  | 'canceled'
  | 'superseded'
  | 'claim-expired'
  | 'worker-shutdown'
  | 'malformed-payload'
  | 'resource-unavailable'
  | 'internal-error'
  | 'intermittent-task';

export type ReasonCreated = 'scheduled' | 'retry' | 'task-retry' | 'rerun' | 'exception';

export interface QueueRun {
  runId: number;
  state: Exclude<TaskStateName, 'unscheduled'>;
  reasonCreated: ReasonCreated;
  reasonResolved?: ReasonResolved;
  workerGroup?: string;
  workerId?: string;
  takenUntil?: string;
  scheduled: string;
  started?: string;
  resolved?: string;
}

export interface QueueTaskStatus {
  taskId: string;
  provisionerId?: string;
  workerType?: string;
  taskQueueId: string;
  schedulerId: string;
  projectId: string;
  taskGroupId: string;
  deadline: string;
  expires: string;
  retriesLeft: number;
  state: TaskStateName;
  runs: QueueRun[];
}

/** A createTask body. The proxy renders it from a template and adds what it owns (created, ids in tags). */
export interface QueueTaskDefinition {
  taskQueueId: string;
  schedulerId?: string;
  projectId?: string;
  taskGroupId?: string;
  dependencies?: string[];
  requires?: 'all-completed' | 'all-resolved';
  routes?: string[];
  priority?: string;
  retries?: number;
  created: string;
  deadline: string;
  expires?: string;
  scopes?: string[];
  payload: Record<string, unknown>;
  metadata: { name: string; description: string; owner: string; source: string };
  tags?: Record<string, string>;
  extra?: Record<string, unknown>;
}

/** The queue's error answer: `{code, message, requestInfo}` with a 4xx or 5xx status. */
export interface QueueErrorBody {
  code: string;
  message: string;
  requestInfo?: Record<string, unknown>;
}
