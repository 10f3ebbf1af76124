/**
 * The per-request metrics, pre-aggregated: a request costs one map lookup
 * and a few additions, and the Prometheus series are built only when
 * /metrics is scraped. prom-client hashes the label set on every call,
 * which costs more than everything else the metrics do per request
 * (measurements in docs/decisions/0001-forwarding-engine.md).
 *
 * Each family registers with a prom-client Registry as a collector object
 * (name, help, type, labelNames, get()), so exposition, /metrics and the
 * registry's JSON are prom-client's own.
 */
import type { Registry } from 'prom-client';

interface SeriesValue {
  value: number;
  labels: Record<string, string | number>;
  metricName?: string;
}

/** What prom-client's Registry needs of a metric. */
class Family {
  readonly aggregator = 'sum';
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: 'counter' | 'gauge' | 'histogram',
    readonly labelNames: readonly string[],
    private readonly values: () => SeriesValue[],
    registry: Registry,
  ) {
    registry.registerMetric(this as never);
  }

  get(): { name: string; help: string; type: string; values: SeriesValue[]; aggregator: string } {
    return { name: this.name, help: this.help, type: this.type, values: this.values(), aggregator: this.aggregator };
  }

  reset(): void {
    // Series live in HotPathMetrics; resetting a family alone would make the others disagree with it.
  }
}

/** One (backend, job type, method): everything its requests add up to. */
interface RequestSeries {
  backend: string;
  jobType: string;
  method: string;
  codes: Map<number, number>;
  /** Counts per bucket (not cumulative); the last one is +Inf. */
  buckets: Float64Array;
  sum: number;
  count: number;
  requestBytes: number;
  responseBytes: number;
}

interface Tally<L extends string> {
  labels: Record<L, string>;
  value: number;
}

/**
 * Values under two or three string keys, found level by level: no joined key
 * string is built per request (V8 keeps a string's hash on the string, so
 * each level is a cheap lookup). `values` lists every value, for scrapes.
 */
class TupleIndex<V> {
  private readonly root = new Map<string, Map<string, V | Map<string, V>>>();
  readonly values: V[] = [];

  constructor(private readonly create: (a: string, b: string, c: string) => V) {}

  get(a: string, b: string, c?: string): V {
    let level1 = this.root.get(a);
    if (level1 === undefined) this.root.set(a, (level1 = new Map()));
    if (c === undefined) {
      let value = level1.get(b) as V | undefined;
      if (value === undefined) level1.set(b, (value = this.add(a, b, '')));
      return value;
    }
    let level2 = level1.get(b) as Map<string, V> | undefined;
    if (level2 === undefined) level1.set(b, (level2 = new Map()));
    let value = level2.get(c);
    if (value === undefined) level2.set(c, (value = this.add(a, b, c)));
    return value;
  }

  private add(a: string, b: string, c: string): V {
    const value = this.create(a, b, c);
    this.values.push(value);
    return value;
  }
}

export class HotPathMetrics {
  private readonly series: TupleIndex<RequestSeries>;
  private readonly inFlight = new TupleIndex<Tally<'backend' | 'job_type'>>((backend, jobType) => ({ labels: { backend, job_type: jobType }, value: 0 }));
  private readonly decisions = new TupleIndex<Tally<'rule' | 'reason' | 'backend'>>((rule, reason, backend) => ({ labels: { rule, reason, backend }, value: 0 }));
  private readonly shadows = new TupleIndex<Tally<'backend' | 'job_type' | 'result'>>((backend, jobType, result) => ({ labels: { backend, job_type: jobType, result }, value: 0 }));

  constructor(
    registry: Registry,
    private readonly bounds: readonly number[],
  ) {
    this.series = new TupleIndex((backend, jobType, method) => ({ backend, jobType, method, codes: new Map(), buckets: new Float64Array(bounds.length + 1), sum: 0, count: 0, requestBytes: 0, responseBytes: 0 }));
    new Family(
      'strangler_requests_total',
      'Requests answered, by the backend that served them, job type, method and HTTP status code (499: the client hung up).',
      'counter',
      ['backend', 'job_type', 'method', 'code'],
      () => this.series.values.flatMap((s) => [...s.codes].map(([code, value]) => ({ value, labels: { backend: s.backend, job_type: s.jobType, method: s.method, code: String(code) } }))),
      registry,
    );
    new Family(
      'strangler_request_duration_seconds',
      'Time from receiving a request to the end of its response, by backend, job type and method.',
      'histogram',
      ['backend', 'job_type', 'method'],
      () => this.series.values.flatMap((s) => this.histogramValues(s)),
      registry,
    );
    new Family(
      'strangler_requests_in_flight',
      'Requests being served right now, by backend and job type.',
      'gauge',
      ['backend', 'job_type'],
      () => this.inFlight.values.map((t) => ({ value: t.value, labels: t.labels })),
      registry,
    );
    new Family(
      'strangler_request_bytes_total',
      'Request body bytes sent to each backend, by job type.',
      'counter',
      ['backend', 'job_type'],
      () => this.bytes('requestBytes'),
      registry,
    );
    new Family(
      'strangler_response_bytes_total',
      'Response body bytes received from each backend and passed to clients, by job type.',
      'counter',
      ['backend', 'job_type'],
      () => this.bytes('responseBytes'),
      registry,
    );
    new Family(
      'strangler_routing_decisions_total',
      'Routing decisions by rule (the route\'s jobType as written, or "(default)"), reason and chosen backend.',
      'counter',
      ['rule', 'reason', 'backend'],
      () => this.decisions.values.map((t) => ({ value: t.value, labels: t.labels })),
      registry,
    );
    new Family(
      'strangler_shadow_requests_total',
      'Shadow copies by shadow backend, job type and result: match, mismatch, error (the copy failed), primary_failed (nothing to compare), dropped (too many in flight), skipped_mutating, skipped_body.',
      'counter',
      ['backend', 'job_type', 'result'],
      () => this.shadows.values.map((t) => ({ value: t.value, labels: t.labels })),
      registry,
    );
  }

  shadowResult(backend: string, jobType: string, result: string): void {
    this.shadows.get(backend, jobType, result).value++;
  }

  decided(rule: string, reason: string, backend: string): void {
    this.decisions.get(rule, reason, backend).value++;
  }

  started(backend: string, jobType: string): void {
    this.inFlight.get(backend, jobType).value++;
  }

  finished(backend: string, jobType: string): void {
    this.inFlight.get(backend, jobType).value--;
  }

  request(backend: string, jobType: string, method: string, code: number, seconds: number, requestBytes: number, responseBytes: number): void {
    const s = this.series.get(backend, jobType, method);
    s.codes.set(code, (s.codes.get(code) ?? 0) + 1);
    let i = 0;
    while (i < this.bounds.length && seconds > this.bounds[i]!) i++;
    s.buckets[i]!++;
    s.sum += seconds;
    s.count++;
    s.requestBytes += requestBytes;
    s.responseBytes += responseBytes;
  }

  private histogramValues(s: RequestSeries): SeriesValue[] {
    const labels = { backend: s.backend, job_type: s.jobType, method: s.method };
    const values: SeriesValue[] = [];
    let cumulative = 0;
    this.bounds.forEach((le, i) => {
      cumulative += s.buckets[i]!;
      values.push({ value: cumulative, labels: { le, ...labels }, metricName: 'strangler_request_duration_seconds_bucket' });
    });
    values.push({ value: s.count, labels: { le: '+Inf', ...labels }, metricName: 'strangler_request_duration_seconds_bucket' });
    values.push({ value: s.sum, labels, metricName: 'strangler_request_duration_seconds_sum' });
    values.push({ value: s.count, labels, metricName: 'strangler_request_duration_seconds_count' });
    return values;
  }

  /** Bytes per (backend, job type), summed over methods; series with no bytes yet are left out. */
  private bytes(field: 'requestBytes' | 'responseBytes'): SeriesValue[] {
    const sums = new Map<string, SeriesValue>();
    for (const s of this.series.values) {
      if (s[field] === 0) continue;
      const key = `${s.backend}\u0001${s.jobType}`;
      const entry = sums.get(key);
      if (entry) entry.value += s[field];
      else sums.set(key, { value: s[field], labels: { backend: s.backend, job_type: s.jobType } });
    }
    return [...sums.values()];
  }
}
