/**
 * The stand-in queue's HTTP side: Queue v1 routes under `/api/queue/v1/`, the
 * storage URLs artifacts redirect to, and the test handle under
 * `/__standin__/`. Each queue route checks in the real queue's order:
 * URL parameters, body, authentication and scopes, then the handler's rules.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes, randomUUID } from 'node:crypto';
import { ArtifactStore } from './artifacts.js';
import { authenticate, type AuthResult, type StandinClient } from './auth.js';
import { QueueError, errorBody } from './errors.js';
import { FaultSwitch, type CreateCall, type Faults } from './faults.js';
import { createTaskScopes, formatExpression, manipulateTaskScopes, satisfies, unsatisfied, type ScopeExpression } from './scopes.js';
import { TaskStore, type StandinTaskStatus, type TaskDefinitionResponse } from './state.js';
import { ARTIFACT_NAME_PATTERN, RUN_ID_PATTERN, SLUGID_PATTERN, TASK_QUEUE_ID_PATTERN, checkTaskDates, parseTaskDefinition } from './validate.js';
import { BuiltinWorker, type WorkerOptions } from './worker.js';

/**
 * Scopes a request without credentials holds. In Taskcluster these come from
 * the deployment's `anonymous` role, not from the queue; these are the ones
 * public deployments commonly grant.
 */
export const DEFAULT_ANONYMOUS_SCOPES: readonly string[] = Object.freeze([
  'queue:get-artifact:public/*',
  'queue:get-task:*',
  'queue:list-artifacts:*',
  'queue:list-task-group:*',
  'queue:status:*',
]);

export interface StandinQueueOptions {
  /** Port to listen on; 0 or absent picks a free one. */
  port?: number;
  /** Only loopback makes sense for a test double; defaults to 127.0.0.1. */
  host?: string;
  /** Hawk credentials the stand-in accepts: clientId → accessToken and scopes. */
  clients: Record<string, StandinClient>;
  /** Scopes of requests without credentials (the `anonymous` role). */
  anonymousScopes?: readonly string[];
  /** The built-in worker, or false for none (tasks then stay pending). */
  worker?: WorkerOptions | false;
  /** The queue's clock in ms since the epoch (Hawk timestamps are still checked against real time). */
  clock?: () => number;
  /** How often the claim and deadline resolvers look; defaults to 50 ms. */
  resolverIntervalMs?: number;
  /** A claim's length for claimWork (the real queue's default is 20 minutes). */
  claimTimeoutMs?: number;
  /** The longest deadline accepted, in days from now; the real queue's default is 5. */
  maxTaskDeadlineDays?: number;
}

export interface StandinTask {
  taskId: string;
  task: TaskDefinitionResponse;
  status: StandinTaskStatus;
}

export interface StandinQueue {
  rootUrl: string;
  port: number;
  close(): Promise<void>;
  /** Every task with its definition and status. */
  tasks(): StandinTask[];
  /** Every createTask call, in arrival order. */
  createCalls(): CreateCall[];
  faults: { set(partial: Partial<Faults>): Faults; get(): Faults; reset(): Faults };
}

const API_PREFIX = '/api/queue/v1';
const MAX_BODY_BYTES = 10 * 1024 * 1024;
const PAGE_MAX = 1000;

interface Ctx {
  req: IncomingMessage;
  res: ServerResponse;
  method: string;
  params: Record<string, string>;
  query: URLSearchParams;
  body: string;
  payload: unknown;
  auth?: AuthResult;
  /** The record of this request when it is a createTask call. */
  call?: CreateCall;
}

type Handler = (ctx: Ctx) => Promise<void>;

interface Route {
  method: string;
  pattern: RegExp;
  name: string;
  paramNames: string[];
  /** Allowed query-string keys (the queue refuses others). */
  query: string[];
  /** A scope expression made from URL parameters alone is checked before anything else, as on the queue. */
  urlScopes?: (params: Record<string, string>) => ScopeExpression;
  handler: Handler;
}

interface RouteOptions {
  query?: string[];
  urlScopes?: (params: Record<string, string>) => ScopeExpression;
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        reject(new QueueError('InputTooLarge', 'Payload is larger than {{limit}} bytes', { limit: MAX_BODY_BYTES }));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function encodeToken(offset: number): string {
  return Buffer.from(JSON.stringify({ offset })).toString('base64url');
}

function decodeToken(token: string | null): number {
  if (!token) return 0;
  try {
    const { offset } = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as { offset?: unknown };
    if (typeof offset === 'number' && Number.isInteger(offset) && offset >= 0) return offset;
  } catch {
    // fall through to the error below
  }
  throw new QueueError('InvalidRequestArguments', 'Invalid continuationToken: {{token}}', { token });
}

function pageSize(query: URLSearchParams): number {
  const limit = query.get('limit');
  return Math.min(limit ? parseInt(limit, 10) : PAGE_MAX, PAGE_MAX) || PAGE_MAX;
}

/**
 * Starts a stand-in Taskcluster queue on loopback.
 *
 * @example
 * const q = await startStandinQueue({ clients: { tester: { accessToken: 'secret', scopes: ['*'] } } });
 * const queue = new taskcluster.Queue({ rootUrl: q.rootUrl, credentials: { clientId: 'tester', accessToken: 'secret' } });
 * await q.close();
 */
export async function startStandinQueue(options: StandinQueueOptions): Promise<StandinQueue> {
  const clock = options.clock ?? Date.now;
  const clients = new Map(Object.entries(options.clients));
  const anonymousScopes = options.anonymousScopes ?? DEFAULT_ANONYMOUS_SCOPES;
  const maxDeadlineDays = options.maxTaskDeadlineDays ?? 5;
  const claimTimeoutMs = options.claimTimeoutMs ?? 20 * 60 * 1000;
  const store = new TaskStore();
  const artifacts = new ArtifactStore();
  const faults = new FaultSwitch();
  const calls: CreateCall[] = [];

  const worker = options.worker
    ? new BuiltinWorker(options.worker, {
        store,
        artifacts,
        clock,
        isPaused: () => faults.get().workerPaused,
        definitionOf: (taskId) => store.definition(taskId),
      })
    : undefined;

  const resolver = setInterval(() => {
    const now = clock();
    store.expireClaims(now);
    store.resolveDeadlines(now);
  }, options.resolverIntervalMs ?? 50);
  resolver.unref();

  async function authorize(ctx: Ctx, expr: ScopeExpression): Promise<void> {
    ctx.auth ??= await authenticate({ req: ctx.req, body: ctx.body, clients, anonymousScopes });
    const auth = ctx.auth;
    if (auth.status === 'auth-failed') {
      ctx.res.setHeader('www-authenticate', 'hawk');
      throw new QueueError('AuthenticationFailed', auth.message);
    }
    if (satisfies(auth.scopes, expr)) return;
    const required = formatExpression(expr);
    if (auth.status === 'auth-success') {
      throw new QueueError(
        'InsufficientScopes',
        [
          `Client ID ${auth.clientId} does not have sufficient scopes and is missing the following scopes:`,
          '',
          '```',
          '{{unsatisfied}}',
          '```',
          '',
          'This request requires the client to satisfy the following scope expression:',
          '',
          '```',
          '{{required}}',
          '```',
        ].join('\n'),
        { required, unsatisfied: formatExpression(unsatisfied(auth.scopes, expr) ?? expr) },
      );
    }
    throw new QueueError(
      'InsufficientScopes',
      'This request requires Taskcluster credentials that satisfy the following scope expression:\n\n```\n{{required}}\n```',
      { required },
    );
  }

  function jsonBody(ctx: Ctx): unknown {
    const type = String(ctx.req.headers['content-type'] ?? '');
    if (!/^application\/json\b/i.test(type)) {
      throw new QueueError('MalformedPayload', 'Payload must be JSON with content-type: application/json got content-type: {{contentType}}', {
        contentType: ctx.req.headers['content-type'] ?? null,
      });
    }
    return ctx.payload;
  }

  /** The queue parses a JSON body before anything else, whatever the route. */
  function parsePayload(ctx: Ctx): unknown {
    const type = String(ctx.req.headers['content-type'] ?? '');
    if (!/^application\/json\b/i.test(type) || ctx.body === '') return {};
    try {
      const parsed: unknown = JSON.parse(ctx.body);
      if (!(parsed instanceof Object)) throw new Error('Must be an object or array');
      return parsed;
    } catch (err) {
      throw new QueueError('MalformedPayload', 'Failed to parse JSON: {{errMsg}}', { errMsg: (err as Error).message });
    }
  }

  function taskOr404(taskId: string, message: string): void {
    if (!store.has(taskId)) throw new QueueError('ResourceNotFound', message, { taskId });
  }

  const routes: Route[] = [];
  const route = (method: string, path: string, name: string, handler: Handler, opts: RouteOptions = {}): void => {
    const paramNames: string[] = [];
    const source = path
      .split('/')
      .map((seg) => {
        const rest = /^:(\w+)\(\*\)$/.exec(seg);
        if (rest) {
          paramNames.push(rest[1] as string);
          return '(.+)';
        }
        if (seg.startsWith(':')) {
          paramNames.push(seg.slice(1));
          return '([^/]+)';
        }
        return seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      })
      .join('/');
    routes.push({ method, pattern: new RegExp(`^${source}$`), name, paramNames, query: opts.query ?? [], urlScopes: opts.urlScopes, handler });
  };

  route('GET', '/ping', 'ping', async ({ res }) => {
    sendJson(res, 200, { alive: true, uptime: process.uptime() });
  });

  route('GET', '/task/:taskId', 'task', async (ctx) => {
    const { taskId } = ctx.params as { taskId: string };
    await authorize(ctx, `queue:get-task:${taskId}`);
    taskOr404(taskId, '`{{taskId}}` does not correspond to a task that exists.\nAre you sure this task has already been submitted?');
    sendJson(ctx.res, 200, store.definition(taskId));
  }, { urlScopes: (p) => `queue:get-task:${p.taskId}` });

  route('GET', '/task/:taskId/status', 'status', async (ctx) => {
    const { taskId } = ctx.params as { taskId: string };
    await authorize(ctx, `queue:status:${taskId}`);
    taskOr404(taskId, '`{{taskId}}` does not correspond to a task that exists.\nAre you sure this task exists?');
    sendJson(ctx.res, 200, { status: store.status(taskId) });
  }, { urlScopes: (p) => `queue:status:${p.taskId}` });

  route('PUT', '/task/:taskId', 'createTask', async (ctx) => {
    const { taskId } = ctx.params as { taskId: string };
    const call = ctx.call as CreateCall;
    const delayBefore = faults.get().createDelayBeforeMs;
    if (delayBefore > 0) {
      call.fault = 'delay-before';
      let gone = false;
      ctx.res.once('close', () => (gone = true));
      await new Promise((r) => setTimeout(r, delayBefore));
      // The sender died while the request waited: as if the PUT never reached the queue.
      if (gone || ctx.req.socket.destroyed) {
        call.fault = 'lost-before';
        return;
      }
    }
    if (faults.take('failCreatesBefore')) {
      call.fault = 'fail-before';
      throw new Error('stand-in fault: failing createTask before creating');
    }
    const parsed = parseTaskDefinition(jsonBody(ctx), taskId, rootUrl);
    await authorize(ctx, createTaskScopes(parsed));
    const def = checkTaskDates(parsed, clock(), maxDeadlineDays);
    const { status, created } = store.create(taskId, def, clock());
    call.created = created;
    if (faults.take('dropCreatesAfter')) {
      call.fault = 'drop-after';
      ctx.res.socket?.destroy();
      return;
    }
    if (faults.take('failCreatesAfter')) {
      call.fault = 'fail-after';
      throw new Error('stand-in fault: failing createTask after creating');
    }
    const delay = faults.get().createDelayMs;
    if (delay > 0) {
      call.fault = 'delay';
      await new Promise((r) => setTimeout(r, delay));
    }
    call.status = 200;
    sendJson(ctx.res, 200, { status: created ? status : store.status(taskId) });
  });

  route('POST', '/task/:taskId/cancel', 'cancelTask', async (ctx) => {
    const { taskId } = ctx.params as { taskId: string };
    taskOr404(taskId, 'Task `{{taskId}}` not found. Are you sure it was created?');
    const def = store.definition(taskId);
    await authorize(ctx, manipulateTaskScopes('cancel-task', { taskId, ...def }));
    sendJson(ctx.res, 200, { status: store.cancel(taskId, clock()) });
  });

  route('POST', '/task/:taskId/rerun', 'rerunTask', async (ctx) => {
    const { taskId } = ctx.params as { taskId: string };
    taskOr404(taskId, '`{{taskId}}` does not correspond to a task that exists.\nAre you sure this task has been submitted before?');
    const def = store.definition(taskId);
    await authorize(ctx, manipulateTaskScopes('rerun-task', { taskId, ...def }));
    sendJson(ctx.res, 200, { status: store.rerun(taskId, clock()) });
  });

  route(
    'GET',
    '/task-group/:taskGroupId/list',
    'listTaskGroup',
    async (ctx) => {
      const { taskGroupId } = ctx.params as { taskGroupId: string };
      await authorize(ctx, `queue:list-task-group:${taskGroupId}`);
      const offset = decodeToken(ctx.query.get('continuationToken'));
      const size = pageSize(ctx.query);
      const page = store.listGroup(taskGroupId, offset, size);
      if (!page) throw new QueueError('ResourceNotFound', 'No task-group with taskGroupId: `{{taskGroupId}}`', { taskGroupId });
      const result: Record<string, unknown> = {
        ...page.info,
        tasks: page.taskIds.map((id) => ({ status: store.status(id), task: store.definition(id) })),
      };
      if (page.more) result.continuationToken = encodeToken(offset + size);
      sendJson(ctx.res, 200, result);
    },
    { query: ['continuationToken', 'limit'], urlScopes: (p) => `queue:list-task-group:${p.taskGroupId}` },
  );

  const latestRunId = (taskId: string): number => {
    if (!store.has(taskId)) throw new QueueError('ResourceNotFound', 'Task not found');
    const n = store.runCount(taskId);
    if (n === 0) throw new QueueError('ResourceNotFound', "Task doesn't have any runs");
    return n - 1;
  };

  const redirectToArtifact = (ctx: Ctx, taskId: string, runId: number, name: string): void => {
    const artifact = artifacts.get(taskId, runId, name);
    if (!artifact) throw new QueueError('ResourceNotFound', 'Artifact not found');
    if (Date.parse(artifact.expires) < clock()) throw new QueueError('ResourceExpired', 'Artifact expired');
    const typeHeader = { 'x-taskcluster-artifact-storage-type': artifact.storageType };
    if (artifact.storageType === 'error') {
      sendJson(ctx.res, 424, { reason: artifact.error?.reason, message: artifact.error?.message }, typeHeader);
      return;
    }
    const url = artifact.url ?? rootUrl + artifacts.storagePath(taskId, runId, name);
    sendJson(ctx.res, 303, { storageType: artifact.storageType, url }, { location: url, ...typeHeader });
  };

  route('GET', '/task/:taskId/artifacts/:name(*)', 'getLatestArtifact', async (ctx) => {
    const { taskId, name } = ctx.params as { taskId: string; name: string };
    await authorize(ctx, { AllOf: [`queue:get-artifact:${name}`] });
    redirectToArtifact(ctx, taskId, latestRunId(taskId), name);
  });

  route('GET', '/task/:taskId/runs/:runId/artifacts/:name(*)', 'getArtifact', async (ctx) => {
    const { taskId, runId, name } = ctx.params as { taskId: string; runId: string; name: string };
    await authorize(ctx, { AllOf: [`queue:get-artifact:${name}`] });
    if (!store.has(taskId)) throw new QueueError('ResourceNotFound', 'Task not found');
    if (Number(runId) >= store.runCount(taskId)) throw new QueueError('ResourceNotFound', 'Artifact not found');
    redirectToArtifact(ctx, taskId, Number(runId), name);
  });

  route(
    'GET',
    '/task/:taskId/runs/:runId/artifacts',
    'listArtifacts',
    async (ctx) => {
      const { taskId, runId } = ctx.params as { taskId: string; runId: string };
      await authorize(ctx, `queue:list-artifacts:${taskId}:${runId}`);
      const latest = latestRunId(taskId);
      const run = Number(runId);
      if (run > latest) {
        throw new QueueError('ResourceNotFound', 'Task with taskId: `{{taskId}}` has no run with runId: {{runId}}', { taskId, runId: run });
      }
      const all = artifacts.list(taskId, run);
      const offset = decodeToken(ctx.query.get('continuationToken'));
      const size = pageSize(ctx.query);
      const result: Record<string, unknown> = { artifacts: all.slice(offset, offset + size) };
      if (all.length > offset + size) result.continuationToken = encodeToken(offset + size);
      sendJson(ctx.res, 200, result);
    },
    { query: ['continuationToken', 'limit'], urlScopes: (p) => `queue:list-artifacts:${p.taskId}:${p.runId}` },
  );


  // The worker interface, so a client can play a worker against the stand-in and a real queue alike.
  const CLAIM_WAIT_MS = 20 * 1000;
  let claimSeq = 0;

  route('POST', '/claim-work/:taskQueueId(*)', 'claimWork', async (ctx) => {
    const taskQueueId = ctx.params.taskQueueId as string;
    const body = jsonBody(ctx) as { tasks?: unknown; workerGroup?: unknown; workerId?: unknown };
    const idOk = (v: unknown): v is string => typeof v === 'string' && /^[a-zA-Z0-9-_]{1,38}$/.test(v);
    if (!idOk(body.workerGroup) || !idOk(body.workerId) || typeof body.tasks !== 'number' || !Number.isInteger(body.tasks) || body.tasks < 1) {
      throw new QueueError('InputValidationError', '\nSchema Validation Failed!\nRejecting Schema: claim-work-request.json#\nErrors:\n  * tasks, workerGroup and workerId are required');
    }
    const { workerGroup, workerId, tasks: count } = body as { workerGroup: string; workerId: string; tasks: number };
    await authorize(ctx, { AllOf: [`queue:claim-work:${taskQueueId}`, `queue:worker-id:${workerGroup}/${workerId}`] });
    let closed = false;
    ctx.res.once('close', () => (closed = true));
    const until = Date.now() + CLAIM_WAIT_MS;
    const claimed: unknown[] = [];
    for (;;) {
      for (const { taskId, runId } of store.pendingRuns([taskQueueId])) {
        if (claimed.length >= count) break;
        const now = clock();
        const takenUntil = now + claimTimeoutMs;
        if (!store.claim(taskId, runId, { workerGroup, workerId }, takenUntil, now)) continue;
        const task = store.definition(taskId);
        // SECURITY: stands in for the queue's temporary task credentials: a client of its own, limited to
        // this run and the task's scopes (no certificate; the stand-in does not issue them).
        const credentials = {
          clientId: `task-client/${taskId}/${runId}/on/${workerGroup}/${workerId}/until/${Math.floor(takenUntil / 1000)}.${++claimSeq}`,
          accessToken: randomBytes(33).toString('base64url'),
        };
        clients.set(credentials.clientId, {
          accessToken: credentials.accessToken,
          scopes: [
            ...task.scopes,
            `queue:reclaim-task:${taskId}/${runId}`,
            `queue:resolve-task:${taskId}/${runId}`,
            `queue:create-artifact:${taskId}/${runId}`,
          ],
        });
        // The real queue passes takenUntil through from Postgres here, so it reads `+00:00` rather than `Z`.
        const pgTakenUntil = new Date(takenUntil).toJSON().replace(/Z$/, '+00:00');
        claimed.push({ status: store.status(taskId), runId, workerGroup, workerId, takenUntil: pgTakenUntil, task, credentials });
      }
      if (claimed.length > 0 || closed || Date.now() >= until) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    sendJson(ctx.res, 200, { tasks: claimed });
  });

  const runOr404 = (taskId: string, runId: number, missingTask: string): void => {
    if (!store.has(taskId)) throw new QueueError('ResourceNotFound', missingTask, { taskId });
    if (!store.run(taskId, runId)) throw new QueueError('ResourceNotFound', 'Run {{runId}} not found on task `{{taskId}}`.', { taskId, runId });
  };

  for (const target of ['completed', 'failed'] as const) {
    route('POST', `/task/:taskId/runs/:runId/${target}`, target === 'completed' ? 'reportCompleted' : 'reportFailed', async (ctx) => {
      const { taskId } = ctx.params as { taskId: string };
      const runId = Number(ctx.params.runId);
      await authorize(ctx, `queue:resolve-task:${taskId}/${runId}`);
      runOr404(taskId, runId, 'Task `{{taskId}}` not found. Are you sure it was created?');
      const run = store.run(taskId, runId);
      if (run?.state !== 'running' && run?.state !== target) {
        throw new QueueError('RequestConflict', 'Run {{runId}} of task `{{taskId}}` is not running or {{targetState}}.', { taskId, runId, targetState: target });
      }
      sendJson(ctx.res, 200, { status: store.report(taskId, runId, { state: target }, clock()) });
    }, { urlScopes: (p) => `queue:resolve-task:${p.taskId}/${p.runId}` });
  }

  const EXCEPTION_REASONS = ['worker-shutdown', 'malformed-payload', 'resource-unavailable', 'internal-error', 'intermittent-task'];
  route('POST', '/task/:taskId/runs/:runId/exception', 'reportException', async (ctx) => {
    const { taskId } = ctx.params as { taskId: string };
    const runId = Number(ctx.params.runId);
    const reason = (jsonBody(ctx) as { reason?: unknown }).reason;
    if (typeof reason !== 'string' || !EXCEPTION_REASONS.includes(reason)) {
      throw new QueueError('InputValidationError', `\nSchema Validation Failed!\nRejecting Schema: ${rootUrl}/schemas/queue/v1/task-exception-request.json#\nErrors:\n  * data/reason must be equal to one of the allowed values`);
    }
    await authorize(ctx, `queue:resolve-task:${taskId}/${runId}`);
    runOr404(taskId, runId, 'Task `{{taskId}}` not found. Are you sure it exists?');
    sendJson(ctx.res, 200, { status: store.report(taskId, runId, { state: 'exception', reason: reason as 'internal-error' }, clock()) });
  }, { urlScopes: (p) => `queue:resolve-task:${p.taskId}/${p.runId}` });

  route('POST', '/task/:taskId/runs/:runId/artifacts/:name(*)', 'createArtifact', async (ctx) => {
    const { taskId, name } = ctx.params as { taskId: string; name: string };
    const runId = Number(ctx.params.runId);
    const input = jsonBody(ctx) as { storageType?: unknown; expires?: unknown; contentType?: unknown; url?: unknown; reason?: unknown; message?: unknown };
    const expires = typeof input.expires === 'string' ? Date.parse(input.expires) : NaN;
    const validReference = input.storageType === 'reference' && typeof input.url === 'string' && typeof input.contentType === 'string';
    const validError = input.storageType === 'error' && typeof input.reason === 'string' && typeof input.message === 'string';
    if (Number.isNaN(expires) || !(validReference || validError)) {
      if (input.storageType === 's3' || input.storageType === 'object' || input.storageType === 'link') {
        throw new QueueError('InputError', 'storageType {{storageType}} is not implemented by the stand-in queue (reference and error are)', { storageType: input.storageType });
      }
      throw new QueueError('InputValidationError', `\nSchema Validation Failed!\nRejecting Schema: ${rootUrl}/schemas/queue/v1/post-artifact-request.json#\nErrors:\n  * data must match exactly one schema in oneOf`);
    }
    if (expires < clock() - 15 * 60 * 1000) throw new QueueError('InputError', 'Expires must be in the future');
    if (!store.has(taskId)) throw new QueueError('InputError', 'Task not found');
    const run = store.run(taskId, runId);
    if (!run) throw new QueueError('InputError', 'Run not found');
    if (!run.workerGroup || !run.workerId) throw new QueueError('InputError', 'Run was not claimed by a worker and so no artifacts can exist');
    await authorize(ctx, `queue:create-artifact:${taskId}/${runId}`);
    const task = store.definition(taskId);
    if (expires > Date.parse(task.expires)) {
      throw new QueueError(
        'InputError',
        'Artifact expires ({{expires}}) after the task expiration {{taskExpires}} (task.expires < expires) - this is not allowed, artifacts may not expire after the task they belong to expires',
        { taskExpires: task.expires, expires: new Date(expires).toJSON() },
      );
    }
    const lateException = run.state === 'exception' && (run.resolved ?? 0) > clock() - 25 * 60 * 1000;
    if (run.state !== 'running' && !lateException) {
      throw new QueueError(
        'RequestConflict',
        "Artifacts cannot be created for a task after it is resolved, unless it is resolved 'exception', and even in this case only up to 25 min past resolution.This to ensure that artifacts have been uploaded before a task is 'completed' and output is consumed by a dependent task\n\nTask status: {{status}}",
        { status: store.status(taskId) },
      );
    }
    artifacts.put(taskId, runId, {
      name,
      storageType: validReference ? 'reference' : 'error',
      contentType: typeof input.contentType === 'string' ? input.contentType : 'application/binary',
      expires: new Date(expires).toJSON(),
      chunks: [],
      ...(validReference ? { url: input.url as string } : { error: { reason: input.reason as string, message: input.message as string } }),
    });
    sendJson(ctx.res, 200, { storageType: validReference ? 'reference' : 'error' });
  }, { urlScopes: (p) => `queue:create-artifact:${p.taskId}/${p.runId}` });

  const PARAM_PATTERNS: Record<string, RegExp> = {
    taskId: SLUGID_PATTERN,
    taskGroupId: SLUGID_PATTERN,
    runId: RUN_ID_PATTERN,
    name: ARTIFACT_NAME_PATTERN,
    taskQueueId: TASK_QUEUE_ID_PATTERN,
  };

  async function handleQueue(req: IncomingMessage, res: ServerResponse, path: string, query: URLSearchParams): Promise<void> {
    const matches = routes.filter((r) => r.pattern.test(path));
    const r = matches.find((m) => m.method === req.method);
    const ctx: Ctx = { req, res, method: r?.name ?? 'unknown', params: {}, query, body: '', payload: {} };
    if (r?.name === 'createTask') {
      // Every createTask request is recorded, refused ones included, for tests that count calls.
      ctx.call = { taskId: decodeURIComponent(path.slice('/task/'.length)), created: false, status: 0, at: new Date().toJSON() };
      calls.push(ctx.call);
    }
    try {
      if (!r) {
        throw new QueueError('ResourceNotFound', matches.length > 0 ? 'Method not allowed' : 'No such API endpoint');
      }
      const m = r.pattern.exec(path) as RegExpExecArray;
      r.paramNames.forEach((n, i) => {
        ctx.params[n] = decodeURIComponent(m[i + 1] as string);
      });
      // The queue's order: body parsed, then authentication for URL-only scopes, then URL and query checks.
      ctx.body = await readBody(req);
      if (ctx.call) ctx.call.body = ctx.body;
      ctx.payload = parsePayload(ctx);
      if (r.urlScopes) await authorize(ctx, r.urlScopes(ctx.params));
      const errors: string[] = [];
      for (const [n, v] of Object.entries(ctx.params)) {
        const p = PARAM_PATTERNS[n];
        if (p && !p.test(v)) errors.push(`URL parameter '${n}' given as '${v}' must match regular expression: '${p.toString()}'`);
      }
      if (errors.length > 0) throw new QueueError('InvalidRequestArguments', `Invalid URL patterns:\n${errors.join('\n')}`, { errors });
      const qErrors: string[] = [];
      for (const [k, v] of query) {
        if (k === 'bewit') continue;
        if (!r.query.includes(k)) qErrors.push(`Query-string parameter: ${k} is not supported!`);
        else if (k === 'limit' && !/^[0-9]+$/.test(v)) qErrors.push(`Query-string parameter: ${k}="${v}" does not match expression: /^[0-9]+$/`);
      }
      if (qErrors.length > 0) throw new QueueError('InvalidRequestArguments', qErrors.join('\n'), { errors: qErrors });
      await r.handler(ctx);
    } catch (err) {
      let e: QueueError;
      if (err instanceof QueueError) {
        e = err;
      } else {
        // An unexpected failure gets an incident id; the client sees only that.
        const incidentId = randomUUID();
        e = new QueueError('InternalServerError', 'Internal Server Error, incidentId {{incidentId}}.', { incidentId });
      }
      if (ctx.call) ctx.call.status = e.status;
      sendJson(
        res,
        e.status,
        errorBody(e, { method: ctx.method, params: ctx.params, payload: ctx.payload, time: new Date().toJSON() }),
        e.code === 'AuthenticationFailed' ? { 'www-authenticate': 'hawk' } : {},
      );
    }
  }

  function handleStorage(res: ServerResponse, path: string, query: URLSearchParams): void {
    const m = /^\/__storage__\/([^/]+)\/(\d+)\/(.+)$/.exec(path);
    const taskId = m?.[1] ?? '';
    const runId = Number(m?.[2]);
    const name = m ? (m[3] as string).split('/').map(decodeURIComponent).join('/') : '';
    if (!m || !artifacts.mayRead(taskId, runId, name, query.get('sig') ?? undefined)) {
      res.writeHead(m ? 403 : 404, { 'content-type': 'text/plain' }).end(m ? 'Forbidden\n' : 'Not Found\n');
      return;
    }
    const bytes = artifacts.bytes(taskId, runId, name);
    if (!bytes) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('Not Found\n');
      return;
    }
    res.writeHead(200, { 'content-type': bytes.contentType, 'content-length': bytes.body.length });
    res.end(bytes.body);
  }

  const handle: Pick<StandinQueue, 'tasks' | 'createCalls' | 'faults'> = {
    tasks: () => store.taskIds().map((taskId) => ({ taskId, task: store.definition(taskId), status: store.status(taskId) })),
    createCalls: () => calls.map((c) => ({ ...c })),
    faults: { set: (p) => faults.set(p), get: () => faults.get(), reset: () => faults.reset() },
  };

  async function handleTestHandle(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    if (req.method === 'GET' && path === '/__standin__/tasks') return sendJson(res, 200, { tasks: handle.tasks() });
    if (req.method === 'GET' && path === '/__standin__/calls') return sendJson(res, 200, { calls: handle.createCalls() });
    if (req.method === 'GET' && path === '/__standin__/faults') return sendJson(res, 200, { faults: faults.get() });
    if (req.method === 'POST' && path === '/__standin__/faults') {
      try {
        const text = await readBody(req);
        const body = (text ? JSON.parse(text) : {}) as Partial<Faults> & { reset?: boolean };
        const { reset, ...rest } = body;
        if (reset) faults.reset();
        return sendJson(res, 200, { faults: faults.set(rest) });
      } catch (err) {
        return sendJson(res, 400, { error: (err as Error).message });
      }
    }
    sendJson(res, 404, { error: `no such test-handle route: ${req.method} ${path}; known: GET tasks, GET calls, GET|POST faults` });
  }

  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://standin.invalid');
    const path = url.pathname;
    const done = (p: Promise<void> | void): void => {
      Promise.resolve(p).catch(() => {
        if (!res.headersSent) res.writeHead(500).end();
      });
    };
    if (path.startsWith(`${API_PREFIX}/`)) return done(handleQueue(req, res, path.slice(API_PREFIX.length), url.searchParams));
    if (path.startsWith('/__storage__/')) return done(handleStorage(res, path, url.searchParams));
    if (path.startsWith('/__standin__/')) return done(handleTestHandle(req, res, path));
    sendJson(res, 404, { code: 'ResourceNotFound', message: `no service at ${path}` });
  });

  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const rootUrl = `http://${host}:${port}`;

  return {
    rootUrl,
    port,
    ...handle,
    close: async () => {
      clearInterval(resolver);
      worker?.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
