/**
 * Every metric the proxy exports, declared in this one place with its help
 * text; docs/metrics.md describes each and the question it answers (a unit
 * test keeps the two in step). A registry per proxy instance, so tests and
 * the benchmark can run several side by side.
 *
 * Label values are bounded: backends and rules come from routes.yaml, job
 * types go through {@link JobTypeLabels}, methods through a fixed list, and
 * raw paths are never labels.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { HotPathMetrics } from './hot-path.js';
import { RESULT_NAMES } from '../taskcluster/results.js';
import type { DecisionReason } from '../routing/decide.js';
import { matchRoute, type RoutingTable } from '../routing/table.js';

/** 1 ms to 60 s: fast API reads and slow log downloads both land in a bucket that tells them apart. */
export const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** 10 s to 6 h: CI builds run minutes to hours. */
export const BUILD_DURATION_BUCKETS = [1, 5, 10, 30, 60, 120, 300, 600, 900, 1200, 1800, 2700, 3600, 5400, 7200, 10800, 14400, 21600];
/** 1 s to 2 h: a free worker picks work up in seconds, a busy pool in hours. */
export const BUILD_WAIT_BUCKETS = [1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200];

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']);

/** The `rule` label of requests no route decided. */
export const DEFAULT_RULE = '(default)';

export type UpstreamErrorLabel = 'refused' | 'dns' | 'connect_timeout' | 'timeout' | 'reset' | 'bad_response' | 'other';

export interface RequestRecord {
  backend: string;
  jobType: string;
  method: string;
  code: number;
  seconds: number;
  requestBytes: number;
  responseBytes: number;
}

/** The most job type names kept for migration progress and reload plans, however many a file or a master names. */
const MAX_KNOWN_JOB_TYPES = 10_000;

export class ProxyMetrics {
  readonly registry = new Registry();
  private readonly labels = new JobTypeLabels();
  /** Job types seen, routed by exact name or named by the legacy master, for migration progress and `plan` (bounded). */
  private readonly knownJobTypes = new Set<string>();
  private table: RoutingTable | undefined;
  private backendNames = new Set<string>();
  /** Requests, durations, bytes, in-flight and decisions: pre-aggregated, see hot-path.ts. */
  private readonly hot = new HotPathMetrics(this.registry, DURATION_BUCKETS);

  readonly upstreamErrors = new Counter({
    name: 'strangler_upstream_errors_total',
    help: 'Failures talking to a backend, by kind: refused, dns, connect_timeout (nothing reached the backend), timeout, reset, other (it may have).',
    labelNames: ['backend', 'job_type', 'kind'] as const,
    registers: [this.registry],
  });
  readonly routeWeight = new Gauge({
    name: 'strangler_route_weight',
    help: "Each backend's share of a route's requests as configured, 0 to 1 (1 for a plain backend: route).",
    labelNames: ['rule', 'backend'] as const,
    registers: [this.registry],
  });
  readonly migrationJobTypes = new Gauge({
    name: 'strangler_migration_job_types',
    help: 'Known job types (from routes, the legacy master and traffic) by the backend the routes send them to; a split counts fractionally.',
    labelNames: ['backend'] as const,
    registers: [this.registry],
    collect: () => this.collectMigration('count'),
  });
  readonly migrationShare = new Gauge({
    name: 'strangler_migration_job_types_ratio',
    help: 'Share (0 to 1) of known job types routed to each backend: the migration\'s progress.',
    labelNames: ['backend'] as const,
    registers: [this.registry],
    collect: () => this.collectMigration('ratio'),
  });
  readonly reloads = new Counter({
    name: 'strangler_config_reloads_total',
    help: 'Attempts to load routes.yaml after startup, by result (success, failure).',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly lastReload = new Gauge({
    name: 'strangler_config_last_reload_success_timestamp_seconds',
    help: 'When the routes in force were loaded (Unix time).',
    registers: [this.registry],
  });
  readonly configInfo = new Gauge({
    name: 'strangler_config_info',
    help: 'Always 1; the hash label is the sha256 of the routes.yaml in force.',
    labelNames: ['hash'] as const,
    registers: [this.registry],
  });
  readonly backendInfo = new Gauge({
    name: 'strangler_backend_info',
    help: 'Always 1 per configured backend; the legacy label ("true"/"false") says which one is the Buildbot master, for joins in alerts and dashboards.',
    labelNames: ['backend', 'legacy'] as const,
    registers: [this.registry],
  });
  readonly backendUp = new Gauge({
    name: 'strangler_backend_up',
    help: 'Whether the last health probes found the backend answering (1) or not (0).',
    labelNames: ['backend'] as const,
    registers: [this.registry],
  });

  /** Copies in flight, read from the shadower when scraped (not set per copy). */
  private shadowInFlightSource: () => number = () => 0;
  readonly shadowInFlight: Gauge = new Gauge({
    name: 'strangler_shadow_requests_in_flight',
    help: 'Shadow copies awaiting an answer.',
    registers: [this.registry],
    collect: (): void => this.shadowInFlight.set(this.shadowInFlightSource()),
  });
  readonly circuitState = new Gauge({
    name: 'strangler_backend_circuit_state',
    help: 'The circuit breaker of each backend: 1 for its current state (closed, open, half-open), 0 for the others.',
    labelNames: ['backend', 'state'] as const,
    registers: [this.registry],
  });
  readonly fallbacks = new Counter({
    name: 'strangler_fallbacks_total',
    help: "Requests sent to a route's fallback backend because they provably never reached their own (cause: circuit_open, unhealthy, refused, dns, connect_timeout).",
    labelNames: ['from', 'to', 'cause'] as const,
    registers: [this.registry],
  });
  readonly retries = new Counter({
    name: 'strangler_retries_total',
    help: 'Safe-method requests (GET, HEAD, OPTIONS) sent again after a failure, on routes that allow retries.',
    labelNames: ['backend'] as const,
    registers: [this.registry],
  });
  readonly internalErrors = new Counter({
    name: 'strangler_internal_errors_total',
    help: "Faults in the proxy's own request handling, caught by the last-resort guard: logged with the request id and answered 500 where nothing was sent yet.",
    registers: [this.registry],
  });
  readonly clientBodyTimeouts = new Counter({
    name: 'strangler_client_body_timeouts_total',
    help: 'Request bodies that stalled longer than the body idle timeout, by phase: reading (nothing was sent to a backend; answered 408) or forwarding (part of the request may have gone to a backend; the connection was cut and the backend request aborted).',
    labelNames: ['phase'] as const,
    registers: [this.registry],
  });
  readonly busyRejections = new Counter({
    name: 'strangler_busy_rejections_total',
    help: 'Requests answered 503 PROXY_BUSY because their body did not fit the budget of request-body bytes held in memory; nothing was sent to a backend.',
    registers: [this.registry],
  });
  /** Bytes held, read from the listener's budget when scraped. */
  private heldBodyBytesSource: () => number = () => 0;
  readonly heldBodyBytes: Gauge = new Gauge({
    name: 'strangler_held_body_bytes',
    help: 'Request-body bytes reserved in memory right now (force bodies read to find builder names), against the held-body budget.',
    registers: [this.registry],
    collect: (): void => this.heldBodyBytes.set(this.heldBodyBytesSource()),
  });
  readonly unavailable = new Counter({
    name: 'strangler_unavailable_total',
    help: 'Requests answered 503 by the proxy because their backend was marked unavailable (circuit open or health probes failing) and no fallback applied.',
    labelNames: ['backend', 'job_type'] as const,
    registers: [this.registry],
  });

  readonly queueCalls = new Counter({
    name: 'strangler_queue_calls_total',
    help: 'Calls the proxy made to a Taskcluster queue on behalf of Buildbot clients, by backend, Queue method (createTask, task, status, cancelTask, rerunTask, artifact) and outcome (2xx, 3xx, 4xx, 5xx, or the failure kind when there was no answer).',
    labelNames: ['backend', 'method', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly queueCallSeconds = new Histogram({
    name: 'strangler_queue_call_seconds',
    help: 'How long each call to a Taskcluster queue took, to its whole answer, by backend and Queue method.',
    labelNames: ['backend', 'method'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly tasksCreated = new Counter({
    name: 'strangler_queue_tasks_created_total',
    help: 'Tasks created on a Taskcluster queue for Buildbot forces and rebuilds (each counted once, when the queue confirmed it).',
    labelNames: ['backend'] as const,
    registers: [this.registry],
  });
  readonly storeErrors = new Counter({
    name: 'strangler_store_errors_total',
    help: "Operations on the proxy's store (minted ids, task definitions, statuses) that failed; requests that needed it were answered 503.",
    labelNames: ['operation'] as const,
    registers: [this.registry],
  });
  readonly recoveredTasks = new Counter({
    name: 'strangler_queue_tasks_recovered_total',
    help: 'Stored tasks whose creation a crash or an unreachable queue had left open, settled later by the recovery loop (created, found on the queue, or refused).',
    registers: [this.registry],
  });

  readonly buildsFinished = new Counter({
    name: 'strangler_builds_finished_total',
    help: 'Builds seen to finish, by job type, backend and Buildbot result (success, warnings, failure, skipped, exception, retry, cancelled; a queue run maps by docs/taskcluster.md). Each build is counted once, by the replica that recorded it.',
    labelNames: ['job_type', 'backend', 'result'] as const,
    registers: [this.registry],
  });
  readonly buildDuration = new Histogram({
    name: 'strangler_build_duration_seconds',
    help: 'How long finished builds ran, started to finished, by job type and backend.',
    labelNames: ['job_type', 'backend'] as const,
    buckets: BUILD_DURATION_BUCKETS,
    registers: [this.registry],
  });
  readonly buildWait = new Histogram({
    name: 'strangler_build_wait_seconds',
    help: 'How long finished builds waited for a worker, submitted to started, by job type and backend.',
    labelNames: ['job_type', 'backend'] as const,
    buckets: BUILD_WAIT_BUCKETS,
    registers: [this.registry],
  });
  /** The (backend, job type) pairs whose build series exist. */
  private readonly buildSeries = new Set<string>();
  /** Builds in flight, read from the tracker when scraped. */
  private buildsInFlightSource: () => Iterable<{ jobType: string; backend: string; count: number }> = () => [];
  readonly buildsInFlight: Gauge = new Gauge({
    name: 'strangler_builds_in_flight',
    help: 'Builds submitted through the proxy (or tracked on the legacy master) and not yet finished, by job type and backend.',
    labelNames: ['job_type', 'backend'] as const,
    registers: [this.registry],
    collect: (): void => {
      this.buildsInFlight.reset();
      for (const { jobType, backend, count } of this.buildsInFlightSource()) this.buildsInFlight.inc({ job_type: jobType, backend }, count);
    },
  });
  readonly buildTrackingLag = new Histogram({
    name: 'strangler_build_tracking_lag_seconds',
    help: 'How long after a build finished the proxy recorded it, by backend: how fresh the build comparison is.',
    labelNames: ['backend'] as const,
    buckets: [0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600],
    registers: [this.registry],
  });
  readonly buildTrackingErrors = new Counter({
    name: 'strangler_build_tracking_errors_total',
    help: 'Failures while following builds, by backend and operation (events: the master /ws; scan: new builds; poll: unfinished builds; request: a quiet buildrequest; force: the buildrequests of a force; store); the next round tries again.',
    labelNames: ['backend', 'operation'] as const,
    registers: [this.registry],
  });

  /** One finished build, recorded for the first time: counted, and its duration and wait observed. */
  buildFinished(b: { jobTypeLabel: string; backend: string; result: string; durationSeconds: number; waitSeconds: number | null; lagSeconds: number }): void {
    const labels = { job_type: b.jobTypeLabel, backend: b.backend };
    this.buildUnderWay(b.jobTypeLabel, b.backend);
    this.buildsFinished.inc({ ...labels, result: b.result });
    this.buildDuration.observe(labels, Math.max(0, b.durationSeconds));
    if (b.waitSeconds !== null) this.buildWait.observe(labels, Math.max(0, b.waitSeconds));
    this.buildTrackingLag.observe({ backend: b.backend }, Math.max(0, b.lagSeconds));
  }

  /**
   * A build of a job type on a backend is under way: its result series are
   * created at 0 (once per label pair), so that `increase()` over the window
   * sees the first build that finishes too, not only the ones after it.
   */
  buildUnderWay(jobTypeLabel: string, backend: string): void {
    const key = `${backend}\n${jobTypeLabel}`;
    if (this.buildSeries.has(key)) return;
    this.buildSeries.add(key);
    for (const result of RESULT_NAMES) this.buildsFinished.inc({ job_type: jobTypeLabel, backend, result }, 0);
    // zero() resets a series: only ever before its first observation, which the set guarantees.
    this.buildDuration.zero({ job_type: jobTypeLabel, backend });
    this.buildWait.zero({ job_type: jobTypeLabel, backend });
  }

  /** Where the builds-in-flight gauge reads its values at scrape time (job types already bounded labels). */
  countBuildsInFlightWith(source: () => Iterable<{ jobType: string; backend: string; count: number }>): void {
    this.buildsInFlightSource = source;
  }

  /** Told of every queue call (src/taskcluster/queue-client.ts). */
  readonly queueCallObserved = (backend: string, method: string, outcome: string, seconds: number): void => {
    this.queueCalls.inc({ backend, method, outcome });
    this.queueCallSeconds.observe({ backend, method }, seconds);
  };

  constructor(options: { defaultMetrics?: boolean } = {}) {
    if (options.defaultMetrics !== false) {
      collectDefaultMetrics({ register: this.registry });
      // prom-client names these gauges "_total", which Prometheus reserves for counters (promtool flags them);
      // nodejs_active_handles, _requests and _resources carry the same counts by type.
      for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) this.registry.removeSingleMetric(name);
    }
    // Both series exist from the start, so increase() sees the first failure too.
    this.reloads.inc({ result: 'success' }, 0);
    this.reloads.inc({ result: 'failure' }, 0);
    this.clientBodyTimeouts.inc({ phase: 'reading' }, 0);
    this.clientBodyTimeouts.inc({ phase: 'forwarding' }, 0);
  }

  /** Called whenever a routing table comes into force (startup and each good reload). */
  tableLoaded(table: RoutingTable): void {
    const steps = this.tableLoadedSteps(table);
    while (!steps.next().done);
  }

  /** tableLoaded a route at a time, for a reload to run in slices between requests (src/config/slices.ts). */
  *tableLoadedSteps(table: RoutingTable): Generator<void, void> {
    this.table = table;
    this.lastReload.set(table.source.loadedAt.getTime() / 1000);
    this.configInfo.reset();
    this.configInfo.set({ hash: table.source.hash }, 1);
    this.routeWeight.reset();
    for (const route of table.routes) {
      for (const target of route.targets) this.routeWeight.set({ rule: route.pattern, backend: target.backend }, target.weight / route.totalWeight);
      yield;
    }
    for (const name of table.exactRoutes.keys()) if (this.knownJobTypes.size < MAX_KNOWN_JOB_TYPES) this.knownJobTypes.add(name);
    // Backends gone from the file leave no stale series behind; the others keep theirs without a gap.
    for (const name of this.backendNames) if (!table.backends.has(name)) this.backendUp.remove({ backend: name });
    this.backendNames = new Set(table.backends.keys());
    this.backendInfo.reset();
    for (const backend of table.backends.values()) this.backendInfo.set({ backend: backend.name, legacy: String(backend.legacy) }, 1);
  }

  setCircuitState(backend: string, state: 'closed' | 'open' | 'half-open'): void {
    for (const s of ['closed', 'open', 'half-open'] as const) this.circuitState.set({ backend, state: s }, s === state ? 1 : 0);
  }

  /** Job types seen in traffic, routed by exact name, or named by the legacy master (bounded). */
  knownJobTypeNames(): string[] {
    return [...this.knownJobTypes].sort();
  }

  /** Builder names from the legacy master: the job types the migration has to move. */
  addKnownJobTypes(names: Iterable<string>): void {
    for (const name of names) if (this.knownJobTypes.size < MAX_KNOWN_JOB_TYPES) this.knownJobTypes.add(name);
  }

  jobTypeLabel(table: RoutingTable, jobType: string | undefined): string {
    const label = this.labels.label(table, jobType);
    if (label === jobType && this.knownJobTypes.size < MAX_KNOWN_JOB_TYPES) this.knownJobTypes.add(label);
    return label;
  }

  methodLabel(method: string | undefined): string {
    return method !== undefined && METHODS.has(method) ? method : 'OTHER';
  }

  decided(rule: string | undefined, reason: DecisionReason, backend: string): void {
    this.hot.decided(rule ?? DEFAULT_RULE, reason, backend);
  }

  /** A request to `backend` is under way (the in-flight gauge). */
  sending(backend: string, jobType: string): void {
    this.hot.started(backend, jobType);
  }

  sent(backend: string, jobType: string): void {
    this.hot.finished(backend, jobType);
  }

  /** One shadow copy's result (match, mismatch, error, primary_failed, dropped, skipped_mutating, skipped_body); pre-aggregated. */
  shadowResult(backend: string, jobType: string, result: string): void {
    this.hot.shadowResult(backend, jobType, result);
  }

  /** Where the held-body-bytes gauge reads its value at scrape time. */
  countHeldBodyBytesWith(source: () => number): void {
    this.heldBodyBytesSource = source;
  }

  /** Where the shadow-copies-in-flight gauge reads its value at scrape time. */
  countShadowsInFlightWith(source: () => number): void {
    this.shadowInFlightSource = source;
  }

  requestFinished(r: RequestRecord): void {
    this.hot.request(r.backend, r.jobType, r.method, r.code, r.seconds, r.requestBytes, r.responseBytes);
  }

  private collectMigration(what: 'count' | 'ratio'): void {
    const gauge = what === 'count' ? this.migrationJobTypes : this.migrationShare;
    gauge.reset();
    if (!this.table) return;
    const shares = migrationShares(this.table, this.knownJobTypes);
    for (const [backend, count] of shares.counts) {
      gauge.set({ backend }, what === 'count' ? count : shares.total === 0 ? 0 : count / shares.total);
    }
  }
}

/**
 * How many of `jobTypes` each backend serves under `table`: a job type on a
 * split route counts for each backend by its weight. Every backend appears,
 * with 0 if it serves none.
 */
export function migrationShares(table: RoutingTable, jobTypes: Iterable<string>): { counts: Map<string, number>; total: number } {
  const counts = new Map<string, number>([...table.backends.keys()].map((name) => [name, 0]));
  let total = 0;
  for (const jobType of jobTypes) {
    total++;
    const route = matchRoute(table, jobType);
    if (!route) {
      counts.set(table.defaultBackend.name, counts.get(table.defaultBackend.name)! + 1);
      continue;
    }
    for (const target of route.targets) counts.set(target.backend, counts.get(target.backend)! + target.weight / route.totalWeight);
  }
  return { counts, total };
}

/**
 * Job types are request data, so they cannot be label values as they come:
 * names routed exactly in routes.yaml always get their own label; other names
 * get one until `maxOtherJobTypeLabels` distinct ones have been seen, and
 * then count as "other". No job type is "none"; a force naming several
 * builders is "multiple".
 */
export class JobTypeLabels {
  private readonly others = new Set<string>();

  label(table: RoutingTable, jobType: string | undefined): string {
    if (jobType === undefined) return 'none';
    if (table.exactRoutes.has(jobType)) return jobType;
    if (jobType.includes(',')) return 'multiple';
    if (this.others.has(jobType)) return jobType;
    if (this.others.size < table.settings.maxOtherJobTypeLabels) {
      this.others.add(jobType);
      return jobType;
    }
    return 'other';
  }
}

export function upstreamErrorLabel(kind: string): UpstreamErrorLabel {
  switch (kind) {
    case 'refused':
    case 'dns':
    case 'timeout':
    case 'reset':
      return kind;
    case 'connect-timeout':
      return 'connect_timeout';
    case 'bad-response':
      return 'bad_response';
    default:
      return 'other';
  }
}
