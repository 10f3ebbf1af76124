/**
 * The admin listener: metrics for Prometheus and probes for orchestrators,
 * the operator's JSON API (routes, explain, backends, queues, builds,
 * history, progress, reload) and the status page, kept off the proxy port so
 * clients of the proxy never see them. docs/admin.md documents every endpoint.
 */
import { randomBytes } from 'node:crypto';
import express, { type Express, type NextFunction, type Request, type Response } from 'express';
import type { ConfigVersion } from '../config/history.js';
import type { ReloadEvent } from '../config/store.js';
import type { ExplainInput, Explanation } from '../explain.js';
import type { ProxyMetrics } from '../metrics/metrics.js';
import type { TrafficStats } from '../metrics/traffic.js';
import { isStranglerError } from '../errors.js';
import type { CircuitState } from '../resilience/circuit.js';
import type { Backend, RoutingTable } from '../routing/table.js';
import type { Store, TaskRecord } from '../store/store.js';
import { compareBuilds, DEFAULT_MIN_BUILDS } from '../tracking/compare.js';
import { checkToken, requireToken } from './auth.js';
import { BadRequest, sendAdminError } from './errors.js';
import { renderLockedPage, renderStatusPage, statusPageCsp, type PageModel } from './page.js';
import { explainFromBody, explainFromQuery, intParam, jobTypeParam, MAX_EXPLAIN_BODY_BYTES, onlyParams, windowParam } from './params.js';
import { backendsView, buildsView, historyView, progressView, queuesView, routesView, type BuildsView, type QueuesView, type RowsByWindow, type StoredTask } from './views.js';

export interface BackendStatus {
  name: string;
  url: string;
  legacy: boolean;
  isDefault: boolean;
  /** From the health probes; null before the first conclusive probe. */
  up: boolean | null;
  lastProbeAt: string | null;
  lastProbeError: string | null;
  circuit: CircuitState;
  inFlight: number;
}

/** Everything the admin side may read or do; main wires it to the running parts. */
export interface AdminDeps {
  metrics: ProxyMetrics;
  /** False while starting and while draining on shutdown. */
  isReady: () => boolean;
  /** The routing table in force (its `source` has file, hash, load time and text). */
  table: () => RoutingTable;
  history: () => readonly ConfigVersion[];
  traffic: TrafficStats;
  backends: () => BackendStatus[];
  /** Job types known from routes, traffic and the legacy master. */
  knownJobTypes: () => string[];
  reload: () => Promise<ReloadEvent>;
  explain: (input: ExplainInput) => Promise<Explanation>;
  /** Work on Taskcluster queues: the store once open (undefined before), and whether a queue's credentials are set. */
  queues?: QueueDeps;
  /** Finished builds for the comparison of the two sides: the store once open. */
  builds?: BuildsDeps;
  /** This replica's name (STRANGLER_REPLICA, or the host name): every admin answer says which replica gave it. */
  replica: string;
  /** SECURITY: the bearer token for POST endpoints (and reads, if protectReads); none disables POSTs. */
  auth: { token: string | undefined; protectReads: boolean };
}

export interface QueueDeps {
  store: () => Pick<Store, 'kind' | 'recentTasks' | 'tasksOfBuilder' | 'buildsOfTask'> | undefined;
  /** SECURITY: whether the backend's credential variables are set; never their values. */
  hasCredentials: (backend: Backend) => boolean;
}

export interface BuildsDeps {
  /** The store the finished builds are recorded in, once open; undefined while none is (build tracking is off). */
  outcomes: () => Pick<Store, 'outcomes'> | undefined;
  /** Epoch ms: where the window ends. Date.now unless a test fixes it. */
  now?: () => number;
}

/** How often the status page re-fetches itself. */
export const PAGE_REFRESH_MS = 2000;
const HISTORY_LIMIT_MAX = 100;
const QUEUE_TASKS_MAX = 100;
/** Tasks per queue on the status page; GET /queues?limit= shows up to QUEUE_TASKS_MAX. */
export const PAGE_QUEUE_TASKS = 10;
const MIN_BUILDS_MAX = 1_000_000;
/** SECURITY: the reasons are fixed text; no path, URL or password of the store is in it. */
const TRACKING_OFF =
  'build tracking is off: no store is open, so no finished build is recorded. The store opens when routes.yaml names a Taskcluster queue or a route has `track: true`, or when the proxy is started with --store or --data-dir (STRANGLER_STORE, STRANGLER_DATA_DIR); see docs/build-comparison.md';

const ENDPOINTS: Record<string, readonly string[]> = {
  '/': ['GET'],
  '/metrics': ['GET'],
  '/healthz': ['GET'],
  '/readyz': ['GET'],
  '/routes': ['GET'],
  '/explain': ['GET', 'POST'],
  '/backends': ['GET'],
  '/queues': ['GET'],
  '/builds': ['GET'],
  '/history': ['GET'],
  '/progress': ['GET'],
  '/reload': ['POST'],
};

export function createAdminApp(deps: AdminDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag'); // every answer is "now"; a 304 would only hide a change
  const read = requireToken(deps.auth, 'read');
  const write = requireToken(deps.auth, 'write');
  const noStore = (_req: Request, res: Response, next: NextFunction) => {
    res.set('cache-control', 'no-store');
    next();
  };
  app.use(noStore);
  app.use((_req, res, next) => {
    res.setHeader('x-strangler-replica', deps.replica);
    next();
  });

  // Always open, whatever protectReads says: scrapers and orchestrators carry no token.
  app.get('/metrics', async (_req, res) => {
    res.set('content-type', deps.metrics.registry.contentType);
    res.end(await deps.metrics.registry.metrics());
  });
  // Alive: the process answers. Nothing else is checked, so a backend outage never gets the proxy restarted.
  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok', replica: deps.replica });
  });
  // Ready: routes loaded and the proxy listening; false while draining, so load balancers stop sending.
  app.get('/readyz', (_req, res) => {
    const ready = deps.isReady();
    res.status(ready ? 200 : 503).json({ status: ready ? 'ready' : 'not ready' });
  });

  const rowsByWindow = (): RowsByWindow => ({ '5m': deps.traffic.rows('5m'), '1h': deps.traffic.rows('1h'), all: deps.traffic.rows('all') });

  app.get('/routes', read, (req, res) => {
    onlyParams(req.query, []);
    res.json(routesView(deps.table(), deps.knownJobTypes()));
  });

  app.get('/explain', read, async (req, res) => {
    res.json(await deps.explain(explainFromQuery(req.query)));
  });
  // SECURITY: the token is checked before the body is read, so an unauthenticated client cannot make the proxy parse anything.
  app.post('/explain', write, express.json({ limit: MAX_EXPLAIN_BODY_BYTES, strict: true }), async (req, res) => {
    if (!req.is('application/json')) throw new UnsupportedMediaType();
    res.json(await deps.explain(explainFromBody(req.body)));
  });

  app.get('/backends', read, (req, res) => {
    onlyParams(req.query, []);
    res.json({ backends: backendsView(deps.backends(), deps.traffic.rows('5m'), deps.table()) });
  });

  app.get('/queues', read, async (req, res) => {
    onlyParams(req.query, ['jobType', 'limit']);
    const jobType = jobTypeParam(req.query, 'jobType');
    const limit = intParam(req.query, 'limit', 1, QUEUE_TASKS_MAX, 20);
    const view = await readQueues(deps, jobType, limit);
    if (!view.ok) return sendAdminError(res, view.status, view.code, view.message);
    res.json(view.view);
  });

  app.get('/builds', read, async (req, res) => {
    onlyParams(req.query, ['window', 'jobType', 'minBuilds']);
    const window = windowParam(req.query, 'window');
    const jobType = jobTypeParam(req.query, 'jobType');
    const minBuilds = intParam(req.query, 'minBuilds', 1, MIN_BUILDS_MAX, DEFAULT_MIN_BUILDS);
    const builds = await readBuilds(deps, window, jobType, minBuilds);
    if (!builds.ok) return sendAdminError(res, builds.status, builds.code, builds.message, builds.code === 'BUILD_TRACKING_OFF' ? { tracking: false } : {});
    res.json(builds.view);
  });

  app.get('/history', read, (req, res) => {
    onlyParams(req.query, ['limit']);
    res.json(historyView(deps.history(), intParam(req.query, 'limit', 1, HISTORY_LIMIT_MAX, 20)));
  });

  app.get('/progress', read, (req, res) => {
    onlyParams(req.query, []);
    res.json(progressView(deps.table(), deps.knownJobTypes(), rowsByWindow(), deps.traffic.since, new Date()));
  });

  app.post('/reload', write, async (_req, res) => {
    const event = await deps.reload();
    const version = deps.history().find((v) => v.at === event.at.toISOString());
    if (event.result === 'success') {
      res.json({
        result: 'success',
        trigger: event.trigger,
        at: event.at.toISOString(),
        hash: event.table.source.hash,
        previousHash: event.previous?.source.hash ?? null,
        routes: event.table.routes.length,
        moved: version?.moved ?? [],
        movedShareOfLastHour: version?.movedShareOfLastHour ?? 0,
      });
      return;
    }
    // A rejected file is not the caller's fault, but it is not success either: 422 lets `curl -f` fail.
    const error = event.error;
    sendAdminError(res, 422, error?.code === 'CONFIG_UNREADABLE' ? 'CONFIG_UNREADABLE' : 'CONFIG_INVALID', error?.message ?? 'the routes file was rejected', {
      result: 'failure',
      trigger: event.trigger,
      at: event.at.toISOString(),
      hash: event.hash ?? null,
      problems: (error?.details.problems as unknown[] | undefined) ?? [],
      inForce: { hash: event.table.source.hash, loadedAt: event.table.source.loadedAt.toISOString() },
    });
  });

  app.get('/', async (req, res) => {
    // SECURITY: a fresh nonce per answer; the CSP lets only the page's own script run.
    const nonce = randomBytes(16).toString('base64');
    res.set('content-security-policy', statusPageCsp(nonce));
    res.set('x-content-type-options', 'nosniff');
    res.set('referrer-policy', 'no-referrer');
    res.set('x-frame-options', 'DENY');
    res.type('html');
    const check = checkToken(deps.auth, 'read', req.headers.authorization);
    if (!check.ok) {
      if (check.wwwAuthenticate) res.set('WWW-Authenticate', check.wwwAuthenticate);
      res.status(check.status).send(renderLockedPage(check.message, PAGE_REFRESH_MS, nonce));
      return;
    }
    // The page is for browsers: a bad jobType shows every job type, a bad window the default one, rather than an error page.
    const jobType = orElse(() => jobTypeParam(req.query, 'jobType'), null);
    const window = orElse(() => windowParam(req.query, 'window'), windowParam({}, 'window'));
    const [queues, builds] = await Promise.all([readQueues(deps, jobType, PAGE_QUEUE_TASKS), readBuilds(deps, window, jobType, DEFAULT_MIN_BUILDS)]);
    const buildsSection: PageModel['builds'] = builds.ok
      ? { window: window.name, view: builds.view }
      : builds.code === 'BUILD_TRACKING_OFF'
        ? { window: window.name, off: builds.message }
        : { window: window.name, error: builds.message };
    res.send(renderStatusPage(pageModel(deps, rowsByWindow(), queues.ok ? queues.view : { error: queues.message }, buildsSection, jobType), nonce));
  });

  app.use((req, res) => {
    const allowed = ENDPOINTS[req.path];
    if (allowed) {
      res.set('allow', [...allowed, ...(allowed.includes('GET') ? ['HEAD'] : [])].join(', '));
      return sendAdminError(res, 405, 'METHOD_NOT_ALLOWED', `${req.method} is not allowed on ${req.path}; expected ${allowed.join(' or ')}`);
    }
    sendAdminError(res, 404, 'NOT_FOUND', 'not found', { endpoints: Object.entries(ENDPOINTS).flatMap(([path, methods]) => methods.map((m) => `${m} ${path}`)) });
  });

  // One error shape for everything thrown: bad input is a 400 with its message, never a 500.
  app.use((error: unknown, _req: Request, res: Response, _next: NextFunction) => {
    if (error instanceof BadRequest) return sendAdminError(res, 400, 'BAD_REQUEST', error.message, error.details);
    if (error instanceof UnsupportedMediaType) return sendAdminError(res, 415, 'UNSUPPORTED_MEDIA_TYPE', error.message);
    const type = (error as { type?: unknown }).type;
    if (type === 'entity.parse.failed') return sendAdminError(res, 400, 'BAD_REQUEST', `the body is not valid JSON: ${(error as Error).message}`);
    if (type === 'entity.too.large') return sendAdminError(res, 413, 'PAYLOAD_TOO_LARGE', `the body is larger than ${MAX_EXPLAIN_BODY_BYTES} bytes`);
    if (type === 'encoding.unsupported' || type === 'charset.unsupported') return sendAdminError(res, 415, 'UNSUPPORTED_MEDIA_TYPE', (error as Error).message);
    if (type === 'request.aborted') return; // the client is gone
    // SECURITY: no internals (stack, paths) to the client.
    sendAdminError(res, 500, 'INTERNAL', 'internal error in the admin API');
  });
  return app;
}

class UnsupportedMediaType extends Error {
  constructor() {
    super('expected content-type application/json');
  }
}

/** The value `read` gives, or `fallback` when it throws: for the page's parameters. */
function orElse<T>(read: () => T, fallback: T): T {
  try {
    return read();
  } catch {
    return fallback;
  }
}

type StoreProblem = { ok: false; status: 500 | 503; code: 'STORE_UNAVAILABLE' | 'STORE_CORRUPT'; message: string };
type QueuesRead = { ok: true; view: QueuesView } | StoreProblem;
type BuildsRead = { ok: true; view: BuildsView } | StoreProblem | { ok: false; status: 503; code: 'BUILD_TRACKING_OFF'; message: string };

/** A store that failed a read: a 503 naming what failed (500 when what it holds cannot be read back), counted. */
function storeProblem(deps: AdminDeps, error: unknown, what: string): StoreProblem {
  deps.metrics.storeErrors.inc({ operation: 'admin' });
  const corrupt = isStranglerError(error, 'STORE_CORRUPT');
  // Store errors name what failed and never carry a password (src/store); anything else stays generic.
  const message = isStranglerError(error) ? error.message : 'the store could not be read';
  return { ok: false, status: corrupt ? 500 : 503, code: corrupt ? 'STORE_CORRUPT' : 'STORE_UNAVAILABLE', message: `${what} could not be read from the store: ${message}` };
}

/** The build comparison over the window that ends now, for one job type or all; off while no store is open. */
async function readBuilds(deps: AdminDeps, window: { name: string; ms: number }, jobType: string | null, minBuilds: number): Promise<BuildsRead> {
  const store = deps.builds?.outcomes();
  if (store === undefined) return { ok: false, status: 503, code: 'BUILD_TRACKING_OFF', message: TRACKING_OFF };
  const until = deps.builds?.now?.() ?? Date.now();
  const since = until - window.ms;
  let outcomes;
  try {
    outcomes = await store.outcomes({ since, until, ...(jobType === null ? {} : { jobType }) });
  } catch (error) {
    return storeProblem(deps, error, 'finished builds');
  }
  const comparison = compareBuilds(outcomes, { legacy: deps.table().legacy.name, since, until, minBuilds });
  return { ok: true, view: buildsView(comparison, { window: window.name, jobType }) };
}

/**
 * The queues of the table in force with their recent tasks: per queue the
 * newest `limit`, or with `jobType` that builder's newest `limit` (tasks the
 * queue refused or the proxy abandoned are not a builder's, so they show only
 * without `jobType`). A store that fails is a 503 naming what failed.
 */
async function readQueues(deps: AdminDeps, jobType: string | null, limit: number): Promise<QueuesRead> {
  const table = deps.table();
  const store = deps.queues?.store();
  const queueBackends = [...table.backends.values()].filter((b) => b.kind === 'taskcluster');
  const tasks = new Map<string, StoredTask[]>();
  if (store !== undefined && queueBackends.length > 0) {
    try {
      if (jobType === null) {
        for (const b of queueBackends) tasks.set(b.name, await withBuilds(store, await store.recentTasks(b.name, limit)));
      } else {
        const ofBuilder = await store.tasksOfBuilder(jobType, { limit, offset: 0, newestFirst: true });
        for (const item of await withBuilds(store, ofBuilder)) tasks.set(item.task.backend, [...(tasks.get(item.task.backend) ?? []), item]);
      }
    } catch (error) {
      return storeProblem(deps, error, 'recent tasks');
    }
  }
  const view = queuesView(table, tasks, {
    store: store?.kind ?? null,
    jobType,
    limit,
    hasCredentials: (b) => deps.queues?.hasCredentials(b) ?? false,
    knownJobTypes: deps.knownJobTypes(),
  });
  return { ok: true, view };
}

async function withBuilds(store: Pick<Store, 'buildsOfTask'>, tasks: readonly TaskRecord[]): Promise<StoredTask[]> {
  return Promise.all(tasks.map(async (task) => ({ task, builds: await store.buildsOfTask(task.buildrequestId) })));
}

/** The store as the page names it: PostgreSQL's URL without its password, or "embedded"; null while none is open. */
function storeShown(deps: AdminDeps): string | null {
  const store = deps.queues?.store();
  if (store === undefined) return null;
  return 'shownUrl' in store && typeof store.shownUrl === 'string' ? store.shownUrl : store.kind;
}

function pageModel(deps: AdminDeps, rows: RowsByWindow, queues: QueuesView | { error: string }, builds: PageModel['builds'], jobType: string | null): PageModel {
  const table = deps.table();
  const known = deps.knownJobTypes();
  return {
    routes: routesView(table, []),
    progress: progressView(table, known, rows, deps.traffic.since, new Date()),
    backends: backendsView(deps.backends(), rows['5m'], table),
    queues,
    builds,
    jobType,
    history: deps.history(),
    now: new Date(),
    postsEnabled: deps.auth.token !== undefined && deps.auth.token !== '',
    refreshMs: PAGE_REFRESH_MS,
    replica: { name: deps.replica, store: storeShown(deps) },
  };
}
