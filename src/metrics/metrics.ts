/**
 * Every metric the proxy exports, declared in this one place with its help
 * text (docs/metrics.md describes each). A registry per proxy instance, so
 * tests and the benchmark can run several side by side.
 */
import { collectDefaultMetrics, Counter, Histogram, Registry } from 'prom-client';
import type { RoutingTable } from '../routing/table.js';

/** 1 ms to 60 s: fast API reads and slow log downloads both land in a bucket that tells them apart. */
export const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']);

export interface ProxyMetrics {
  readonly registry: Registry;
  readonly requests: Counter<'backend' | 'job_type' | 'method' | 'code'>;
  readonly duration: Histogram<'backend' | 'job_type' | 'method'>;
  readonly reloads: Counter<'result'>;
  /** A bounded label for a job type; see {@link JobTypeLabels}. */
  jobTypeLabel(table: RoutingTable, jobType: string | undefined): string;
  methodLabel(method: string | undefined): string;
}

export function createMetrics(options: { defaultMetrics?: boolean } = {}): ProxyMetrics {
  const registry = new Registry();
  if (options.defaultMetrics !== false) collectDefaultMetrics({ register: registry });
  const labels = new JobTypeLabels();
  return {
    registry,
    requests: new Counter({
      name: 'strangler_requests_total',
      help: 'Requests answered, by the backend that served them, job type, method and HTTP status code.',
      labelNames: ['backend', 'job_type', 'method', 'code'],
      registers: [registry],
    }),
    duration: new Histogram({
      name: 'strangler_request_duration_seconds',
      help: 'Time from receiving a request to the end of its response, by backend, job type and method.',
      labelNames: ['backend', 'job_type', 'method'],
      buckets: DURATION_BUCKETS,
      registers: [registry],
    }),
    reloads: new Counter({
      name: 'strangler_config_reloads_total',
      help: 'Attempts to load routes.yaml after startup, by result (success, failure).',
      labelNames: ['result'],
      registers: [registry],
    }),
    jobTypeLabel: (table, jobType) => labels.label(table, jobType),
    methodLabel: (method) => (method !== undefined && METHODS.has(method) ? method : 'OTHER'),
  };
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
