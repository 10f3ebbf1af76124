/**
 * createTask input checks, in the queue's order: the body's schema (with its
 * defaults filled in), the task queue id, then the dates against the queue's
 * clock. Our own schema, written from the queue's published field limits.
 */
import { Ajv, type ErrorObject } from 'ajv';
import { QueueError } from './errors.js';
import { PRIORITY_LEVELS } from './scopes.js';

export const SLUGID_PATTERN = /^[A-Za-z0-9_-]{8}[Q-T][A-Za-z0-9_-][CGKOSWaeimquy26-][A-Za-z0-9_-]{10}[AQgw]$/;
export const TASK_QUEUE_ID_PATTERN = /^[a-zA-Z0-9-_]{1,38}\/[a-z]([-a-z0-9]{0,36}[a-z0-9])?$/;
export const RUN_ID_PATTERN = /^[1-9]*[0-9]+$/;
export const ARTIFACT_NAME_PATTERN = /^[\x20-\x7e]+$/;

const FIFTEEN_MINUTES_MS = 15 * 60 * 1000;
const DAY_MS = 24 * 60 * 60 * 1000;

/** A createTask body after the schema's defaults are applied. */
export interface TaskDefinition {
  provisionerId?: string;
  workerType?: string;
  taskQueueId: string;
  schedulerId: string;
  projectId: string;
  taskGroupId: string;
  dependencies: string[];
  requires: 'all-completed' | 'all-resolved';
  routes: string[];
  priority: string;
  retries: number;
  created: string;
  deadline: string;
  expires: string;
  scopes: string[];
  payload: Record<string, unknown>;
  metadata: { name: string; description: string; owner: string; source: string };
  tags: Record<string, string>;
  extra: Record<string, unknown>;
}

const slugid = { type: 'string', pattern: SLUGID_PATTERN.source };
const dateTime = { type: 'string', format: 'date-time' };

const createTaskSchema = {
  $id: 'create-task-request.json#',
  type: 'object',
  properties: {
    provisionerId: { type: 'string', pattern: '^[a-zA-Z0-9-_]{1,38}$' },
    workerType: { type: 'string', pattern: '^[a-z]([-a-z0-9]{0,36}[a-z0-9])?$' },
    taskQueueId: { type: 'string', pattern: TASK_QUEUE_ID_PATTERN.source },
    schedulerId: { type: 'string', default: '-', minLength: 1, maxLength: 38, pattern: '^([a-zA-Z0-9-_]*)$' },
    projectId: { type: 'string', default: 'none', minLength: 1, maxLength: 500, pattern: '^([a-zA-Z0-9._/-]*)$' },
    taskGroupId: slugid,
    dependencies: { type: 'array', default: [], items: slugid, maxItems: 10000, uniqueItems: true },
    requires: { type: 'string', enum: ['all-completed', 'all-resolved'], default: 'all-completed' },
    routes: {
      type: 'array',
      default: [],
      items: { type: 'string', minLength: 1, maxLength: 249 },
      maxItems: 64,
      uniqueItems: true,
    },
    priority: { type: 'string', enum: [...PRIORITY_LEVELS], default: 'lowest' },
    retries: { type: 'integer', minimum: 0, maximum: 49, default: 5 },
    expires: dateTime,
    created: dateTime,
    deadline: dateTime,
    scopes: { type: 'array', default: [], items: { type: 'string', pattern: '^[\\x20-\\x7e]*$' } },
    payload: { type: 'object' },
    metadata: {
      type: 'object',
      properties: {
        name: { type: 'string', maxLength: 255 },
        description: { type: 'string', maxLength: 32768 },
        owner: { type: 'string', maxLength: 255 },
        // SECURITY: the queue refuses sources like data: or javascript: that a UI might render as links.
        source: { type: 'string', pattern: '^(https?:\\/\\/|ssh:\\/\\/|git@)', maxLength: 4096 },
      },
      additionalProperties: false,
      required: ['name', 'description', 'owner', 'source'],
    },
    tags: { type: 'object', default: {}, additionalProperties: { type: 'string', maxLength: 4096 } },
    extra: { type: 'object', default: {} },
  },
  additionalProperties: false,
  required: ['created', 'deadline', 'payload', 'metadata'],
};

// RFC 3339 date-time, the form JSON dates take; Date.parse alone accepts far more.
const DATE_TIME = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

const ajv = new Ajv({ useDefaults: true, allErrors: true, strict: false });
ajv.addFormat('date-time', (s: string) => DATE_TIME.test(s) && !Number.isNaN(Date.parse(s)));
const validateCreateTask = ajv.compile(createTaskSchema);

function describeErrors(errors: ErrorObject[]): string {
  return errors
    .map((e) => {
      const extra = e.params && 'additionalProperty' in e.params ? `: ${JSON.stringify(e.params.additionalProperty)}` : '';
      return `data${e.instancePath} ${e.message ?? 'is invalid'}${extra}`;
    })
    .join('\n  * ');
}

/**
 * Checks a createTask body against the schema and fills in its defaults (the
 * body is copied, never changed). Throws InputValidationError or InputError.
 */
export function parseTaskDefinition(body: unknown, taskId: string, rootUrl = ''): TaskDefinition {
  const def = structuredClone(body) as Record<string, unknown>;
  if (!validateCreateTask(def)) {
    throw new QueueError(
      'InputValidationError',
      `\nSchema Validation Failed!\nRejecting Schema: ${rootUrl}/schemas/queue/v1/create-task-request.json#\nErrors:\n  * ` +
        describeErrors(validateCreateTask.errors ?? []),
    );
  }
  const { provisionerId, workerType, taskQueueId } = def as { provisionerId?: string; workerType?: string; taskQueueId?: string };
  if (provisionerId && workerType && taskQueueId) {
    if (`${provisionerId}/${workerType}` !== taskQueueId) {
      throw new QueueError('InputError', 'taskQueueId must match "provisionerId/workerType"', { provisionerId, workerType, taskQueueId });
    }
  } else if (provisionerId && workerType) {
    def.taskQueueId = `${provisionerId}/${workerType}`;
  } else if (!taskQueueId) {
    throw new QueueError('InputError', 'at least a provisionerId and a workerType or a taskQueueId must be provided"');
  }
  // The stored definition carries taskQueueId only; the split fields are derived when answering.
  delete def.provisionerId;
  delete def.workerType;
  if (!def.projectId) def.projectId = 'none';
  if (!def.taskGroupId) def.taskGroupId = taskId;
  return def as unknown as TaskDefinition;
}

/**
 * The date rules, checked after the scopes as the queue does: `created`
 * within 15 minutes of now (so an old definition resent later is refused
 * before the idempotency check could accept it), the deadline in the future
 * and at most `maxDeadlineDays` ahead, `expires` (default deadline + 1 year)
 * not before the deadline. Returns the definition with dates normalised.
 */
export function checkTaskDates(def: TaskDefinition, now: number, maxDeadlineDays = 5): TaskDefinition {
  const created = Date.parse(def.created);
  const deadline = Date.parse(def.deadline);
  if (created < now - FIFTEEN_MINUTES_MS) {
    throw new QueueError('InputError', '`created` cannot be in the past (max 15min drift)', { created: def.created });
  }
  if (created > now + FIFTEEN_MINUTES_MS) {
    throw new QueueError('InputError', '`created` cannot be in the future (max 15min drift)', { created: def.created });
  }
  if (created > deadline) {
    // The queue's own wording, kept so clients matching on it behave the same.
    throw new QueueError('InputError', '`deadline` cannot be later than `created`', { created: def.created, deadline: def.deadline });
  }
  if (deadline < now) {
    throw new QueueError('InputError', '`deadline` cannot be in the past', { deadline: def.deadline });
  }
  if (deadline - now > maxDeadlineDays * DAY_MS + FIFTEEN_MINUTES_MS) {
    throw new QueueError('InputError', `\`deadline\` cannot be more than ${maxDeadlineDays} days into the future`, { deadline: def.deadline });
  }
  let expires = def.expires;
  if (!expires) {
    const d = new Date(deadline);
    d.setFullYear(d.getFullYear() + 1);
    expires = d.toJSON();
  }
  if (deadline > Date.parse(expires)) {
    throw new QueueError('InputError', '`expires` cannot be before `deadline`', { deadline: def.deadline, expires });
  }
  if (def.scopes.some((s) => s.endsWith('**'))) {
    throw new QueueError('InputError', 'scopes must not end with `**`');
  }
  return {
    ...def,
    // Stored in one format so that an identical resend with more or fewer digits still compares equal.
    created: new Date(created).toJSON(),
    deadline: new Date(deadline).toJSON(),
    expires: new Date(Date.parse(expires)).toJSON(),
  };
}
