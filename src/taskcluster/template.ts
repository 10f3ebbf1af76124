/**
 * Task templates: how a Buildbot force becomes a createTask body.
 *
 * A template is json-e (Taskcluster's own templating language, the one its
 * users already write `.taskcluster.yml` in), rendered with the force's
 * parameters. The proxy then adds what it owns: `created`, a default
 * `deadline`, metadata a person can trace, and tags that link the task back
 * to the Buildbot ids so the mapping can be rebuilt from the queue alone.
 */
import jsone from 'json-e';
import type { QueueTaskDefinition } from './queue-types.js';

export type TaskTemplate = Readonly<Record<string, unknown>>;

/** What a template sees, as json-e context. */
export interface TemplateContext {
  taskId: string;
  builder: { name: string; id: number };
  buildset: { id: number };
  buildrequest: { id: number };
  reason: string;
  username: string;
  revision: string;
  branch: string;
  repository: string;
  project: string;
  codebase: string;
  /** The force's custom properties, as plain values. */
  properties: Record<string, unknown>;
  /** When the task is created (ISO 8601); json-e's `$fromNow` counts from it. */
  now: string;
}

/** Keys a rendered template may set; `created` belongs to the proxy. */
const TEMPLATE_KEYS = new Set([
  'taskQueueId',
  'provisionerId',
  'workerType',
  'schedulerId',
  'projectId',
  'taskGroupId',
  'dependencies',
  'requires',
  'routes',
  'priority',
  'retries',
  'deadline',
  'expires',
  'scopes',
  'payload',
  'metadata',
  'tags',
  'extra',
]);

const PRIORITIES = ['highest', 'very-high', 'high', 'medium', 'low', 'very-low', 'lowest', 'normal'];
const ID = /^[A-Za-z0-9_-]{1,38}$/;
const SOURCE = /^(https?:\/\/|ssh:\/\/|git@)/;
/** Tags the proxy sets on every task: the link from the queue back to Buildbot's ids. */
export const LINK_TAGS = {
  buildset: 'buildbot-buildsetid',
  buildrequest: 'buildbot-buildrequestid',
  builder: 'buildbot-builder',
  builderid: 'buildbot-builderid',
  createdBy: 'created-by',
} as const;

export class TemplateError extends Error {
  /** Where in the template, as a path below the template's own position in routes.yaml. */
  constructor(
    message: string,
    readonly path: (string | number)[] = [],
  ) {
    super(message);
  }
}

/** A route's template over its backend's: the route's top-level keys replace the backend's. */
export function mergeTemplates(backend: TaskTemplate | undefined, route: TaskTemplate | undefined): TaskTemplate | undefined {
  if (backend === undefined) return route;
  if (route === undefined) return backend;
  return { ...backend, ...route };
}

/**
 * Renders a template into the exact createTask body. Throws TemplateError
 * naming the field when the template renders to something the queue would
 * refuse.
 *
 * @example renderTask({ taskQueueId: 'proj/linux', payload: { command: ['make'] } }, context).deadline // context.now + 1 day
 */
export function renderTask(template: TaskTemplate, context: TemplateContext): QueueTaskDefinition {
  let rendered: unknown;
  try {
    rendered = jsone(template as Record<string, unknown>, context as unknown as Record<string, unknown>);
  } catch (error) {
    throw new TemplateError(`json-e: ${(error as Error).message}`);
  }
  if (rendered === null || typeof rendered !== 'object' || Array.isArray(rendered)) throw new TemplateError('renders to something other than a mapping');
  const task = rendered as Record<string, unknown>;
  for (const key of Object.keys(task)) {
    if (!TEMPLATE_KEYS.has(key)) throw new TemplateError(`unknown task field "${key}"; expected some of: ${[...TEMPLATE_KEYS].join(', ')}`, [key]);
  }

  let taskQueueId = task.taskQueueId;
  if (taskQueueId === undefined && typeof task.provisionerId === 'string' && typeof task.workerType === 'string') taskQueueId = `${task.provisionerId}/${task.workerType}`;
  if (typeof taskQueueId !== 'string' || !/^[A-Za-z0-9_-]{1,38}\/[A-Za-z0-9_-]{1,38}$/.test(taskQueueId)) {
    throw new TemplateError('taskQueueId must be "provisionerId/workerType" (each 1-38 of A-Z a-z 0-9 _ -)', ['taskQueueId']);
  }
  if (task.payload === null || typeof task.payload !== 'object' || Array.isArray(task.payload)) throw new TemplateError('payload must be a mapping', ['payload']);
  for (const key of ['schedulerId', 'projectId', 'taskGroupId'] as const) {
    if (task[key] !== undefined && (typeof task[key] !== 'string' || !ID.test(task[key]))) throw new TemplateError(`${key} must be 1-38 of A-Z a-z 0-9 _ -`, [key]);
  }
  if (task.priority !== undefined && !PRIORITIES.includes(task.priority as string)) throw new TemplateError(`priority must be one of: ${PRIORITIES.join(', ')}`, ['priority']);
  if (task.retries !== undefined && !(Number.isInteger(task.retries) && (task.retries as number) >= 0 && (task.retries as number) <= 49)) throw new TemplateError('retries must be a whole number from 0 to 49', ['retries']);
  for (const key of ['routes', 'scopes', 'dependencies'] as const) {
    if (task[key] !== undefined && !(Array.isArray(task[key]) && (task[key] as unknown[]).every((v) => typeof v === 'string'))) throw new TemplateError(`${key} must be a list of strings`, [key]);
  }
  if (task.extra !== undefined && (task.extra === null || typeof task.extra !== 'object' || Array.isArray(task.extra))) throw new TemplateError('extra must be a mapping', ['extra']);

  const now = Date.parse(context.now);
  const deadline = dateField(task.deadline, 'deadline') ?? new Date(now + 24 * 3600_000).toISOString();
  const deadlineAt = Date.parse(deadline);
  if (deadlineAt <= now) throw new TemplateError('deadline must be after the time the task is created', ['deadline']);
  if (deadlineAt > now + 5 * 24 * 3600_000) throw new TemplateError('deadline must be within 5 days of the time the task is created (the queue refuses later ones)', ['deadline']);
  const expires = dateField(task.expires, 'expires');
  if (expires !== undefined && Date.parse(expires) < deadlineAt) throw new TemplateError('expires must not be before the deadline', ['expires']);

  const metadata = metadataOf(task.metadata, context);
  const tags = tagsOf(task.tags, context);

  const definition: QueueTaskDefinition = {
    taskQueueId,
    schedulerId: (task.schedulerId as string | undefined) ?? '-',
    projectId: (task.projectId as string | undefined) ?? 'none',
    ...(task.taskGroupId !== undefined ? { taskGroupId: task.taskGroupId as string } : {}),
    ...(task.dependencies !== undefined ? { dependencies: task.dependencies as string[] } : {}),
    ...(task.requires !== undefined ? { requires: task.requires as 'all-completed' } : {}),
    routes: (task.routes as string[] | undefined) ?? [],
    priority: (task.priority as string | undefined) ?? 'lowest',
    retries: (task.retries as number | undefined) ?? 5,
    created: new Date(now).toISOString(),
    deadline,
    ...(expires !== undefined ? { expires } : {}),
    scopes: (task.scopes as string[] | undefined) ?? [],
    payload: task.payload as Record<string, unknown>,
    metadata,
    tags,
    extra: (task.extra as Record<string, unknown> | undefined) ?? {},
  };
  return definition;
}

function dateField(value: unknown, name: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || Number.isNaN(Date.parse(value))) throw new TemplateError(`${name} must be a date (for example {$fromNow: "1 day"})`, [name]);
  return new Date(Date.parse(value)).toISOString();
}

function metadataOf(value: unknown, context: TemplateContext): QueueTaskDefinition['metadata'] {
  if (value !== undefined && (value === null || typeof value !== 'object' || Array.isArray(value))) throw new TemplateError('metadata must be a mapping', ['metadata']);
  const given = (value ?? {}) as Record<string, unknown>;
  for (const key of Object.keys(given)) {
    if (!['name', 'description', 'owner', 'source'].includes(key)) throw new TemplateError(`unknown metadata field "${key}"; expected name, description, owner, source`, ['metadata', key]);
    if (typeof given[key] !== 'string') throw new TemplateError(`metadata.${key} must be a string`, ['metadata', key]);
  }
  const name = (given.name as string | undefined) ?? `${context.builder.name} (buildrequest ${context.buildrequest.id})`;
  const source = (given.source as string | undefined) ?? (SOURCE.test(context.repository) ? context.repository : 'https://buildbot.invalid/strangler-proxy');
  if (!SOURCE.test(source)) throw new TemplateError('metadata.source must start with https://, http://, ssh:// or git@', ['metadata', 'source']);
  if (name.length > 255) throw new TemplateError('metadata.name is longer than 255 characters', ['metadata', 'name']);
  return {
    name,
    description: (given.description as string | undefined) ?? (context.reason || `forced through strangler-proxy for builder ${context.builder.name}`),
    owner: ((given.owner as string | undefined) ?? (context.username || 'strangler-proxy')).slice(0, 255),
    source,
  };
}

function tagsOf(value: unknown, context: TemplateContext): Record<string, string> {
  if (value !== undefined && (value === null || typeof value !== 'object' || Array.isArray(value))) throw new TemplateError('tags must be a mapping of strings', ['tags']);
  const tags: Record<string, string> = {};
  for (const [key, tag] of Object.entries((value ?? {}) as Record<string, unknown>)) {
    if (typeof tag !== 'string') throw new TemplateError(`tags.${key} must be a string`, ['tags', key]);
    if (Buffer.byteLength(tag) > 4096) throw new TemplateError(`tags.${key} is longer than 4 KiB`, ['tags', key]);
    tags[key] = tag;
  }
  // The proxy's own tags last: a template cannot break the link back to Buildbot.
  tags[LINK_TAGS.buildset] = String(context.buildset.id);
  tags[LINK_TAGS.buildrequest] = String(context.buildrequest.id);
  tags[LINK_TAGS.builder] = context.builder.name;
  tags[LINK_TAGS.builderid] = String(context.builder.id);
  tags[LINK_TAGS.createdBy] = 'strangler-proxy';
  return tags;
}

/** A context with plausible values, to render templates at load time and in `explain`/`plan`. */
export function sampleContext(builderName: string, now = new Date()): TemplateContext {
  return {
    taskId: 'AAAAAAAAQAKAAAAAAAAAAA',
    builder: { name: builderName, id: 1 },
    buildset: { id: 1_000_000_000_000_000 },
    buildrequest: { id: 1_000_000_000_000_000 },
    reason: 'a sample force',
    username: 'someone@example.com',
    revision: '0123456789abcdef0123456789abcdef01234567',
    branch: 'main',
    repository: 'https://example.com/repo.git',
    project: 'project',
    codebase: '',
    properties: {},
    now: now.toISOString(),
  };
}
