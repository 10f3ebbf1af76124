/**
 * The operator's view as plain data: what the admin API answers, what the
 * status page renders and what the `routes` command prints. Pure: every
 * input (table, traffic rows, probes, history, clock) is passed in, so the
 * same numbers come out of the API, the page and the tests.
 */
import type { ConfigVersion } from '../config/history.js';
import type { BackendStatus } from './app.js';
import type { TrafficRow, TrafficWindow } from '../metrics/traffic.js';
import type { CircuitState } from '../resilience/circuit.js';
import { sharesFor, type Shares } from '../routing/plan.js';
import { matchRoute, type Backend, type PatternKind, type Route, type RoutingTable } from '../routing/table.js';
import type { BuildRecord, TaskRecord, TaskState } from '../store/store.js';
import type { BuildComparison } from '../tracking/compare.js';

export const WINDOWS: readonly TrafficWindow[] = ['5m', '1h', 'all'];

/** The traffic rows of each window. */
export type RowsByWindow = Record<TrafficWindow, readonly TrafficRow[]>;

/** The rule name traffic rows carry for requests no route matched (src/metrics: DEFAULT_RULE). */
export const DEFAULT_RULE = '(default)';

/** Job-type labels that are not job types (see JobTypeLabels in src/metrics/metrics.ts). */
const SPECIAL_LABELS: Record<string, JobTypeLabelKind> = { none: 'none', other: 'other', multiple: 'multiple' };
export type JobTypeLabelKind = 'job-type' | 'none' | 'other' | 'multiple';

// ---------------------------------------------------------------- routes

export interface RouteView {
  /** Position in routes.yaml (0-based); the first rule that matches wins. */
  index: number;
  jobType: string;
  kind: PatternKind;
  split: boolean;
  /** Weight as written and share (0 to 1) of the rule's requests. */
  targets: { backend: string; weight: number; share: number }[];
  stickyBy: string[];
  shadow: { backend: string; percent: number; mutating: boolean; ignoreFields: string[] } | null;
  fallback: string | null;
  retries: number;
  /** For an exact rule that an earlier glob or regex rule already matches: that rule's index (this one never applies). */
  overriddenBy: number | null;
}

export interface OwnedJobType {
  jobType: string;
  /** Share (0 to 1) of this job type's requests the backend gets. */
  share: number;
  /** The rule that decides it; null for the default backend. */
  rule: string | null;
}

export interface BackendRoutesView {
  name: string;
  url: string;
  legacy: boolean;
  default: boolean;
  /** What this backend serves, so each system can tell which job types are its own. */
  owns: {
    /** Job types no rule matches, and requests that name none. */
    unmatched: boolean;
    /** Rules that give it a share, in file order (overridden exact rules left out). */
    rules: { index: number; jobType: string; kind: PatternKind; share: number }[];
    /** Exact job types it serves, fully or by a split's share: the file's exact names and the job types the proxy knows of (traffic, the legacy master's builders). */
    jobTypes: OwnedJobType[];
  };
}

export interface RoutesView {
  file: string;
  hash: string;
  loadedAt: string;
  legacy: string;
  default: string;
  backends: BackendRoutesView[];
  routes: RouteView[];
  /** The file's text as loaded (what `plan --admin` compiles). */
  text: string;
}

export function routeView(table: RoutingTable, route: Route): RouteView {
  const winner = route.kind === 'exact' ? matchRoute(table, route.pattern) : route;
  return {
    index: route.index,
    jobType: route.pattern,
    kind: route.kind,
    split: route.isSplit,
    targets: route.targets.map((t) => ({ backend: t.backend, weight: t.weight, share: round4(t.weight / route.totalWeight) })),
    stickyBy: route.stickyBy.map((s) => `${s.from}:${s.name}`),
    shadow: route.shadow ? { backend: route.shadow.backend, percent: route.shadow.percent, mutating: route.shadow.mutating, ignoreFields: [...route.shadow.ignoreFields] } : null,
    fallback: route.fallback ?? null,
    retries: route.retries,
    overriddenBy: winner && winner.index !== route.index ? winner.index : null,
  };
}

/** The effective table; `knownJobTypes` adds the job types the proxy knows of to each backend's `owns.jobTypes`. */
export function routesView(table: RoutingTable, knownJobTypes: Iterable<string> = []): RoutesView {
  const routes = table.routes.map((r) => routeView(table, r));
  const names = new Set<string>([...table.exactRoutes.keys(), ...knownJobTypes]);
  const owned = new Map<string, OwnedJobType[]>([...table.backends.keys()].map((b) => [b, []]));
  for (const jobType of [...names].sort()) {
    const { shares, rule } = sharesFor(table, jobType);
    for (const [backend, share] of Object.entries(shares)) if (share > 0) owned.get(backend)?.push({ jobType, share: round4(share), rule });
  }
  const backends = [...table.backends.values()].map(
    (b): BackendRoutesView => ({
      name: b.name,
      url: b.url,
      legacy: b.legacy,
      default: b === table.defaultBackend,
      owns: {
        unmatched: b === table.defaultBackend,
        rules: routes
          .filter((r) => r.overriddenBy === null)
          .flatMap((r) => {
            const share = r.targets.filter((t) => t.backend === b.name).reduce((sum, t) => sum + t.share, 0);
            return share > 0 ? [{ index: r.index, jobType: r.jobType, kind: r.kind, share: round4(share) }] : [];
          }),
        jobTypes: owned.get(b.name) ?? [],
      },
    }),
  );
  return {
    file: table.source.file,
    hash: table.source.hash,
    loadedAt: table.source.loadedAt.toISOString(),
    legacy: table.legacy.name,
    default: table.defaultBackend.name,
    backends,
    routes,
    text: table.source.text,
  };
}

// ---------------------------------------------------------------- traffic

export interface Counts {
  requests: number;
  /** 5xx answers, the proxy's own 502/503/504 included. */
  errors: number;
  /** errors / requests; null without requests. */
  errorRatio: number | null;
}

export interface LatencyCounts extends Counts {
  /** Seconds (histogram bucket upper bounds); null without requests. */
  p50: number | null;
  p95: number | null;
  p99: number | null;
}

function counts(requests: number, errors: number): Counts {
  return { requests, errors, errorRatio: requests === 0 ? null : round4(errors / requests) };
}

function sumRows(rows: readonly TrafficRow[]): { requests: number; errors: number } {
  let requests = 0;
  let errors = 0;
  for (const r of rows) {
    requests += r.requests;
    errors += r.errors;
  }
  return { requests, errors };
}

/**
 * Rows of one job type and backend under several rules (a reload in the
 * window) are merged; quantiles cannot be merged exactly, so the larger one
 * is kept: an upper bound, never an optimistic figure.
 */
function mergeLatency(rows: readonly TrafficRow[]): LatencyCounts {
  const { requests, errors } = sumRows(rows);
  const max = (pick: (r: TrafficRow) => number | null) => rows.reduce<number | null>((m, r) => (pick(r) === null ? m : m === null ? pick(r) : Math.max(m, pick(r)!)), null);
  return { ...counts(requests, errors), p50: max((r) => r.p50), p95: max((r) => r.p95), p99: max((r) => r.p99) };
}

function groupBy<T>(items: readonly T[], key: (item: T) => string): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    const list = out.get(k);
    if (list) list.push(item);
    else out.set(k, [item]);
  }
  return out;
}

// ---------------------------------------------------------------- backends

export interface BackendView {
  name: string;
  /** `taskcluster`: a queue the proxy translates for; `buildbot`: answers Buildbot's API itself. */
  kind: Backend['kind'];
  url: string;
  legacy: boolean;
  default: boolean;
  /** From the active health probes; null before the first conclusive one. */
  up: boolean | null;
  lastProbeAt: string | null;
  lastProbeError: string | null;
  circuit: CircuitState;
  inFlight: number;
  /** Requests it served in the last 5 minutes and the share of them that were 5xx. */
  recent: Counts & { window: '5m' };
}

/** `table` gives each backend's kind (a status of a backend it lacks reads as `buildbot`). */
export function backendsView(statuses: readonly BackendStatus[], rows5m: readonly TrafficRow[], table?: RoutingTable): BackendView[] {
  const byBackend = groupBy(rows5m, (r) => r.backend);
  return statuses.map((s) => {
    const { requests, errors } = sumRows(byBackend.get(s.name) ?? []);
    return {
      name: s.name,
      kind: table?.backends.get(s.name)?.kind ?? 'buildbot',
      url: s.url,
      legacy: s.legacy,
      default: s.isDefault,
      up: s.up,
      lastProbeAt: s.lastProbeAt,
      lastProbeError: s.lastProbeError,
      circuit: s.circuit,
      inFlight: s.inFlight,
      recent: { window: '5m', ...counts(requests, errors) },
    };
  });
}

// ---------------------------------------------------------------- queues

/** A task the proxy sent to a queue, by the Buildbot ids clients hold. */
export interface QueueTaskView {
  taskId: string;
  buildsetId: number;
  buildrequestId: number;
  /** The builder, i.e. the job type. */
  builderName: string;
  builderid: number;
  /** Where the task's creation stands (the proxy's record): pending, created, rejected, abandoned. */
  state: TaskState;
  stateReason: string | null;
  submittedAt: string;
  /** The queue's state at the last look (unscheduled, pending, running, completed, failed, exception); null before the first. */
  queueState: string | null;
  /** Runs the queue reported at the last look. */
  runs: number | null;
  statusAt: string | null;
  /** Resolved for good: reads need no queue round trip. */
  final: boolean;
  /** The Buildbot builds minted for its runs so far. */
  builds: { buildid: number; number: number; runId: number }[];
}

export interface QueueBackendView {
  name: string;
  kind: 'taskcluster';
  rootUrl: string;
  /**
   * SECURITY: whether the credentials' environment variables are set, and
   * their names; never their values.
   */
  credentials: { set: boolean; clientIdEnv: string; accessTokenEnv: string };
  /** Job types routed to this queue, fully or by a split's share (as in GET /routes). */
  jobTypes: OwnedJobType[];
  /** Newest first (by buildrequest id). */
  tasks: QueueTaskView[];
}

export interface QueuesView {
  /** The store that holds the work: `embedded` or `postgres`; null while none is open (no queue in the routes yet). */
  store: 'embedded' | 'postgres' | null;
  /** The job type the tasks were filtered to, or null for every job type. */
  jobType: string | null;
  limit: number;
  backends: QueueBackendView[];
}

/** A stored task with the builds minted for it, as the queues view reads them. */
export interface StoredTask {
  task: TaskRecord;
  builds: readonly BuildRecord[];
}

export function queueTaskView({ task, builds }: StoredTask): QueueTaskView {
  const status = parseStatus(task.status);
  return {
    taskId: task.taskId,
    buildsetId: task.buildsetId,
    buildrequestId: task.buildrequestId,
    builderName: task.builderName,
    builderid: task.builderid,
    state: task.state,
    stateReason: task.stateReason,
    submittedAt: new Date(task.submittedAt).toISOString(),
    queueState: status?.state ?? null,
    runs: status?.runs ?? null,
    statusAt: task.statusAt === null ? null : new Date(task.statusAt).toISOString(),
    final: task.final,
    builds: [...builds].sort((a, b) => a.runId - b.runId).map((b) => ({ buildid: b.buildid, number: b.number, runId: b.runId })),
  };
}

/** The state and run count of a stored `status` answer; a text that is not one reads as unknown rather than failing the view. */
function parseStatus(text: string | null): { state: string | null; runs: number | null } | undefined {
  if (text === null) return undefined;
  try {
    const status = JSON.parse(text) as { state?: unknown; runs?: unknown };
    return { state: typeof status.state === 'string' ? status.state : null, runs: Array.isArray(status.runs) ? status.runs.length : null };
  } catch {
    return undefined;
  }
}

/**
 * The backends of kind taskcluster in the table, each with the job types
 * routed to it and its recent tasks. `tasks` holds each queue's tasks,
 * newest first, already limited; `hasCredentials` says whether a backend's
 * credential variables are set.
 */
export function queuesView(
  table: RoutingTable,
  tasks: ReadonlyMap<string, readonly StoredTask[]>,
  options: { store: QueuesView['store']; jobType: string | null; limit: number; hasCredentials: (backend: Backend) => boolean; knownJobTypes?: Iterable<string> },
): QueuesView {
  const routes = routesView(table, options.knownJobTypes ?? []);
  const backends = [...table.backends.values()]
    .filter((b) => b.kind === 'taskcluster' && b.queue !== undefined)
    .map((b): QueueBackendView => {
      const owned = routes.backends.find((r) => r.name === b.name)?.owns.jobTypes ?? [];
      return {
        name: b.name,
        kind: 'taskcluster',
        rootUrl: b.queue!.rootUrl,
        credentials: { set: options.hasCredentials(b), clientIdEnv: b.queue!.clientIdEnv, accessTokenEnv: b.queue!.accessTokenEnv },
        jobTypes: options.jobType === null ? owned : owned.filter((o) => o.jobType === options.jobType),
        tasks: (tasks.get(b.name) ?? []).map(queueTaskView),
      };
    });
  return { store: options.store, jobType: options.jobType, limit: options.limit, backends };
}

// ---------------------------------------------------------------- history

export function historyView(versions: readonly ConfigVersion[], limit: number): { versions: ConfigVersion[]; total: number } {
  return { versions: versions.slice(0, limit), total: versions.length };
}

// ---------------------------------------------------------------- progress

type PerWindow<T> = Record<TrafficWindow, T>;

export interface ProgressBackend {
  name: string;
  legacy: boolean;
  default: boolean;
  /** False for a backend that served traffic in a window but is gone from the routes. */
  inTable: boolean;
  /** Known job types routed here (a split counts by its share, so fractional) and their share of all known job types. */
  jobTypes: { count: number; share: number };
  /** Requests it served, and its share of all requests, per window. */
  requests: PerWindow<Counts & { share: number }>;
}

export interface ProgressRoute {
  /** Position in routes.yaml; null for "(default)" and for rules gone from the file. */
  index: number | null;
  /** The rule's jobType as written, or "(default)". */
  rule: string;
  inTable: boolean;
  /** Known job types this rule decides, counted per backend by share. */
  jobTypes: { count: number; byBackend: Record<string, number> };
  requests: PerWindow<{ total: number; byBackend: Record<string, Counts & { share: number }> }>;
}

export interface ProgressJobType {
  /** A job type, or a traffic label that is not one: "none" (no job type), "other" (past the label limit), "multiple" (a force naming several). */
  jobType: string;
  label: JobTypeLabelKind;
  /** Known to the proxy (exact route, traffic, the legacy master's builders). */
  known: boolean;
  /** The rule deciding it now (null: the default backend), and the share each backend gets. */
  rule: string | null;
  shares: Shares;
  requests: PerWindow<Counts & { byBackend: Record<string, LatencyCounts> }>;
}

export interface ProgressView {
  generatedAt: string;
  /** When the traffic counts started (the process start). */
  since: string;
  hash: string;
  legacy: string;
  /** The backends that are not the legacy one: "the new service". */
  newBackends: string[];
  /** The migration in two numbers per window: job types and requests on the new service. */
  summary: {
    knownJobTypes: number;
    jobTypesOnNew: number;
    /** jobTypesOnNew / knownJobTypes (0 when none are known). */
    jobTypeShare: number;
    requests: PerWindow<{ total: number; onNew: number; share: number }>;
  };
  backends: ProgressBackend[];
  routes: ProgressRoute[];
  jobTypes: ProgressJobType[];
  knownJobTypeNames: string[];
}

export function progressView(table: RoutingTable, knownJobTypes: readonly string[], rows: RowsByWindow, since: Date, now: Date): ProgressView {
  const known = [...new Set(knownJobTypes)].sort();
  const knownSet = new Set(known);
  const legacy = table.legacy.name;

  // Job types per backend and per rule, by share.
  const jobTypeCounts = new Map<string, number>([...table.backends.keys()].map((b) => [b, 0]));
  const ruleCounts = new Map<string, { count: number; byBackend: Record<string, number> }>();
  const sharesOf = new Map<string, { shares: Shares; rule: string | null }>();
  for (const jobType of known) {
    const decided = sharesFor(table, jobType);
    sharesOf.set(jobType, decided);
    const rule = decided.rule ?? DEFAULT_RULE;
    const perRule = ruleCounts.get(rule) ?? { count: 0, byBackend: {} };
    perRule.count++;
    for (const [backend, share] of Object.entries(decided.shares)) {
      jobTypeCounts.set(backend, (jobTypeCounts.get(backend) ?? 0) + share);
      perRule.byBackend[backend] = round4((perRule.byBackend[backend] ?? 0) + share);
    }
    ruleCounts.set(rule, perRule);
  }

  // Backends: those of the table, then any that served traffic but are gone.
  const backendNames = [...table.backends.keys()];
  for (const w of WINDOWS) for (const r of rows[w]) if (!backendNames.includes(r.backend)) backendNames.push(r.backend);
  const totals = Object.fromEntries(WINDOWS.map((w) => [w, sumRows(rows[w]).requests])) as PerWindow<number>;
  const backends = backendNames.map((name): ProgressBackend => {
    const b = table.backends.get(name);
    const count = jobTypeCounts.get(name) ?? 0;
    return {
      name,
      legacy: name === legacy,
      default: name === table.defaultBackend.name,
      inTable: b !== undefined,
      jobTypes: { count: round4(count), share: known.length === 0 ? 0 : round4(count / known.length) },
      requests: perWindow((w) => {
        const { requests, errors } = sumRows(rows[w].filter((r) => r.backend === name));
        return { ...counts(requests, errors), share: totals[w] === 0 ? 0 : round4(requests / totals[w]) };
      }),
    };
  });
  const newBackends = backendNames.filter((n) => n !== legacy);
  const jobTypesOnNew = newBackends.reduce((sum, n) => sum + (jobTypeCounts.get(n) ?? 0), 0);

  // Routes: the table's in order, "(default)", then rules that served traffic but are gone.
  const ruleNames: { rule: string; index: number | null; inTable: boolean }[] = [
    ...table.routes.map((r) => ({ rule: r.pattern, index: r.index, inTable: true })),
    { rule: DEFAULT_RULE, index: null, inTable: true },
  ];
  for (const w of WINDOWS) for (const r of rows[w]) if (!ruleNames.some((n) => n.rule === r.rule)) ruleNames.push({ rule: r.rule, index: null, inTable: false });
  const routes = ruleNames.map(({ rule, index, inTable }): ProgressRoute => {
    const jt = ruleCounts.get(rule);
    return {
      index,
      rule,
      inTable,
      jobTypes: { count: jt?.count ?? 0, byBackend: jt?.byBackend ?? {} },
      requests: perWindow((w) => {
        const mine = rows[w].filter((r) => r.rule === rule);
        const total = sumRows(mine).requests;
        const byBackend: Record<string, Counts & { share: number }> = {};
        for (const [backend, list] of groupBy(mine, (r) => r.backend)) {
          const { requests, errors } = sumRows(list);
          byBackend[backend] = { ...counts(requests, errors), share: total === 0 ? 0 : round4(requests / total) };
        }
        return { total, byBackend };
      }),
    };
  });

  // Job types: the known ones and every traffic label, busiest (since start) first.
  const labels = new Set<string>(known);
  for (const w of WINDOWS) for (const r of rows[w]) labels.add(r.jobType);
  const byLabel = Object.fromEntries(WINDOWS.map((w) => [w, groupBy(rows[w], (r) => r.jobType)])) as PerWindow<Map<string, TrafficRow[]>>;
  const jobTypes = [...labels].map((jobType): ProgressJobType => {
    const label: JobTypeLabelKind = knownSet.has(jobType) ? 'job-type' : (SPECIAL_LABELS[jobType] ?? 'job-type');
    const decided = label === 'job-type' ? (sharesOf.get(jobType) ?? sharesFor(table, jobType)) : label === 'none' ? { shares: { [table.defaultBackend.name]: 1 }, rule: null } : { shares: {}, rule: null };
    return {
      jobType,
      label,
      known: knownSet.has(jobType),
      rule: decided.rule,
      shares: Object.fromEntries(Object.entries(decided.shares).map(([b, s]) => [b, round4(s)])),
      requests: perWindow((w) => {
        const mine = byLabel[w].get(jobType) ?? [];
        const { requests, errors } = sumRows(mine);
        const byBackend: Record<string, LatencyCounts> = {};
        for (const [backend, list] of groupBy(mine, (r) => r.backend)) byBackend[backend] = mergeLatency(list);
        return { ...counts(requests, errors), byBackend };
      }),
    };
  });
  jobTypes.sort((a, b) => b.requests.all.requests - a.requests.all.requests || a.jobType.localeCompare(b.jobType));

  return {
    generatedAt: now.toISOString(),
    since: since.toISOString(),
    hash: table.source.hash,
    legacy,
    newBackends,
    summary: {
      knownJobTypes: known.length,
      jobTypesOnNew: round4(jobTypesOnNew),
      jobTypeShare: known.length === 0 ? 0 : round4(jobTypesOnNew / known.length),
      requests: perWindow((w) => {
        const onNew = sumRows(rows[w].filter((r) => r.backend !== legacy)).requests;
        return { total: totals[w], onNew, share: totals[w] === 0 ? 0 : round4(onNew / totals[w]) };
      }),
    },
    backends,
    routes,
    jobTypes,
    knownJobTypeNames: known,
  };
}

function perWindow<T>(make: (w: TrafficWindow) => T): PerWindow<T> {
  return { '5m': make('5m'), '1h': make('1h'), all: make('all') };
}

export function round4(x: number): number {
  return Math.round(x * 10_000) / 10_000;
}

// ---------------------------------------------------------------- builds

/** GET /builds: the build comparison (tracking/compare.ts) over the named window, for one job type or all. */
export interface BuildsView extends Omit<BuildComparison, 'window'> {
  window: BuildComparison['window'] & { name: string };
  /** The job type asked for, or null for every job type. */
  jobType: string | null;
}

export function buildsView(comparison: BuildComparison, query: { window: string; jobType: string | null }): BuildsView {
  return { ...comparison, window: { name: query.window, ...comparison.window }, jobType: query.jobType };
}
