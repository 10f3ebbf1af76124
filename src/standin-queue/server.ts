/**
 * The stand-in queue's HTTP side: Queue v1 routes under `/api/queue/v1/`, the
 * storage URLs artifacts redirect to, and the test handle under
 * `/__standin__/`. Each queue route checks in the real queue's order:
 * URL parameters, body, authentication and scopes, then the handler's rules.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { ArtifactStore } from './artifacts.js';
import { authenticate, type AuthResult, type StandinClient } from './auth.js';
import { QueueError, errorBody } from './errors.js';
import { FaultSwitch, type CreateCall, type Faults } from './faults.js';
import { createTaskScopes, formatExpression, manipulateTaskScopes, satisfies, unsatisfied, type ScopeExpression } from './scopes.js';
import { TaskStore, type StandinTaskStatus, type TaskDefinitionResponse } from './state.js';
import { ARTIFACT_NAME_PATTERN, RUN_ID_PATTERN, SLUGID_PATTERN, checkTaskDates, parseTaskDefinition } from './validate.js';
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
}

type Handler = (ctx: Ctx) => Promise<void>;

interface Route {
  method: string;
  pattern: RegExp;
  name: string;
  paramNames: string[];
  /** Allowed query-string keys (the queue refuses others). */
  query: string[];
  handler: Handler;
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
    if (ctx.body === '') return {};
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
  const route = (method: string, path: string, name: string, handler: Handler, query: string[] = []): void => {
    const paramNames: string[] = [];
    const source = path
      .split('/')
      .map((seg) => {
        if (seg === ':name(*)') {
          paramNames.push('name');
          return '(.+)';
        }
        if (seg.startsWith(':')) {
          paramNames.push(seg.slice(1));
          return '([^/]+)';
        }
        return seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      })
      .join('/');
    routes.push({ method, pattern: new RegExp(`^${source}$`), name, paramNames, query, handler });
  };

  route('GET', '/ping', 'ping', async ({ res }) => {
    sendJson(res, 200, { alive: true, uptime: process.uptime() });
  });

  route('GET', '/task/:taskId', 'task', async (ctx) => {
    const { taskId } = ctx.params as { taskId: string };
    await authorize(ctx, `queue:get-task:${taskId}`);
    taskOr404(taskId, '`{{taskId}}` does not correspond to a task that exists.\nAre you sure this task has already been submitted?');
    sendJson(ctx.res, 200, store.definition(taskId));
  });

  route('GET', '/task/:taskId/status', 'status', async (ctx) => {
    const { taskId } = ctx.params as { taskId: string };
    await authorize(ctx, `queue:status:${taskId}`);
    taskOr404(taskId, '`{{taskId}}` does not correspond to a task that exists.\nAre you sure this task exists?');
    sendJson(ctx.res, 200, { status: store.status(taskId) });
  });

  route('PUT', '/task/:taskId', 'createTask', async (ctx) => {
    const { taskId } = ctx.params as { taskId: string };
    const call: CreateCall = { taskId, created: false, status: 0, at: new Date().toJSON() };
    calls.push(call);
    const answer = (status: number, body: unknown): void => {
      call.status = status;
      sendJson(ctx.res, status, body);
    };
    try {
      if (faults.take('failCreatesBefore')) {
        call.fault = 'fail-before';
        throw new Error('stand-in fault: failing createTask before creating');
      }
      ctx.payload = jsonBody(ctx);
      const parsed = parseTaskDefinition(ctx.payload, taskId, rootUrl);
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
      answer(200, { status: created ? status : store.status(taskId) });
    } catch (err) {
      call.status = err instanceof QueueError ? err.status : 500;
      throw err;
    }
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
    ['continuationToken', 'limit'],
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
    const url = rootUrl + artifacts.storagePath(taskId, runId, name);
    sendJson(ctx.res, 303, { storageType: artifact.storageType, url }, { location: url, 'x-taskcluster-artifact-storage-type': artifact.storageType });
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
    ['continuationToken', 'limit'],
  );

  const PARAM_PATTERNS: Record<string, RegExp> = {
    taskId: SLUGID_PATTERN,
    taskGroupId: SLUGID_PATTERN,
    runId: RUN_ID_PATTERN,
    name: ARTIFACT_NAME_PATTERN,
  };

  async function handleQueue(req: IncomingMessage, res: ServerResponse, path: string, query: URLSearchParams): Promise<void> {
    const matches = routes.filter((r) => r.pattern.test(path));
    const r = matches.find((m) => m.method === req.method);
    const ctx: Ctx = { req, res, method: r?.name ?? 'unknown', params: {}, query, body: '', payload: {} };
    try {
      if (!r) {
        throw new QueueError('ResourceNotFound', matches.length > 0 ? 'Method not allowed' : 'No such API endpoint');
      }
      const m = r.pattern.exec(path) as RegExpExecArray;
      r.paramNames.forEach((n, i) => {
        ctx.params[n] = decodeURIComponent(m[i + 1] as string);
      });
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
      ctx.body = await readBody(req);
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
