/**
 * Recent traffic in memory, for the operator's view (status page, admin API,
 * `plan`): requests, errors and latency per job type, route and backend, over
 * the last 5 minutes, the last hour, and since start. Prometheus keeps the
 * long history; this answers "what is happening now" without one.
 *
 * Memory is bounded: keys are (bounded job-type label, rule, backend), and
 * time is kept in fixed buckets (10 s for 5 minutes, 1 minute for an hour).
 */
import { DURATION_BUCKETS } from './metrics.js';

export interface TrafficRecord {
  /** A bounded job-type label (see JobTypeLabels). */
  jobType: string;
  /** The route's jobType as written, or "(default)". */
  rule: string;
  backend: string;
  status: number;
  seconds: number;
}

export interface TrafficRow {
  jobType: string;
  rule: string;
  backend: string;
  requests: number;
  /** Answers of 5xx (the proxy's own 502/503/504 included). */
  errors: number;
  /** Latency quantiles in seconds, from bucket counts (upper bounds); null without requests. */
  p50: number | null;
  p95: number | null;
  p99: number | null;
}

export type TrafficWindow = '5m' | '1h' | 'all';

interface Cell {
  requests: number;
  errors: number;
  /** Counts per DURATION_BUCKETS bound, plus one for larger. */
  buckets: number[];
}

interface Slot {
  start: number;
  cells: Map<string, Cell>;
}

const FIVE_MINUTES = { slotMs: 10_000, slots: 30 };
const ONE_HOUR = { slotMs: 60_000, slots: 60 };

export class TrafficStats {
  private readonly recent: Slot[] = [];
  private readonly hourly: Slot[] = [];
  private readonly total = new Map<string, Cell>();
  private readonly inFlight = new Map<string, number>();
  readonly since: Date;

  constructor(private readonly now: () => number = Date.now) {
    this.since = new Date(now());
  }

  /** A request to `backend` started (for the in-flight count of the admin API). */
  started(backend: string): void {
    this.inFlight.set(backend, (this.inFlight.get(backend) ?? 0) + 1);
  }

  finished(backend: string): void {
    const n = (this.inFlight.get(backend) ?? 1) - 1;
    if (n <= 0) this.inFlight.delete(backend);
    else this.inFlight.set(backend, n);
  }

  inFlightCount(backend: string): number {
    return this.inFlight.get(backend) ?? 0;
  }

  record(r: TrafficRecord): void {
    const key = `${r.jobType}\u0000${r.rule}\u0000${r.backend}`;
    const at = this.now();
    const bucket = bucketOf(r.seconds);
    const error = r.status >= 500;
    add(cellOf(this.total, key), bucket, error);
    add(cellOf(this.slotFor(this.recent, FIVE_MINUTES, at).cells, key), bucket, error);
    add(cellOf(this.slotFor(this.hourly, ONE_HOUR, at).cells, key), bucket, error);
  }

  /** One row per (job type, rule, backend) seen in the window. */
  rows(window: TrafficWindow): TrafficRow[] {
    const merged = new Map<string, Cell>();
    const source = window === 'all' ? [{ start: 0, cells: this.total }] : this.live(window === '5m' ? this.recent : this.hourly, window === '5m' ? FIVE_MINUTES : ONE_HOUR);
    for (const slot of source) {
      for (const [key, cell] of slot.cells) {
        const into = cellOf(merged, key);
        into.requests += cell.requests;
        into.errors += cell.errors;
        cell.buckets.forEach((n, i) => (into.buckets[i]! += n));
      }
    }
    return [...merged].map(([key, cell]) => {
      const [jobType, rule, backend] = key.split('\u0000') as [string, string, string];
      return { jobType, rule, backend, requests: cell.requests, errors: cell.errors, p50: quantile(cell, 0.5), p95: quantile(cell, 0.95), p99: quantile(cell, 0.99) };
    });
  }

  /** Requests per job type in the window. */
  requestsByJobType(window: TrafficWindow): Map<string, number> {
    const out = new Map<string, number>();
    for (const row of this.rows(window)) out.set(row.jobType, (out.get(row.jobType) ?? 0) + row.requests);
    return out;
  }

  private live(slots: Slot[], shape: { slotMs: number; slots: number }): Slot[] {
    const horizon = this.now() - shape.slotMs * shape.slots;
    return slots.filter((s) => s.start > horizon - shape.slotMs);
  }

  private slotFor(slots: Slot[], shape: { slotMs: number; slots: number }, at: number): Slot {
    const start = at - (at % shape.slotMs);
    const last = slots.at(-1);
    if (last && last.start === start) return last;
    const slot = { start, cells: new Map<string, Cell>() };
    slots.push(slot);
    while (slots.length > shape.slots) slots.shift();
    return slot;
  }
}

function cellOf(map: Map<string, Cell>, key: string): Cell {
  let cell = map.get(key);
  if (!cell) {
    cell = { requests: 0, errors: 0, buckets: new Array<number>(DURATION_BUCKETS.length + 1).fill(0) };
    map.set(key, cell);
  }
  return cell;
}

/** The index of the first bucket bound at or above `seconds` (DURATION_BUCKETS.length: above them all). */
function bucketOf(seconds: number): number {
  let i = 0;
  while (i < DURATION_BUCKETS.length && seconds > DURATION_BUCKETS[i]!) i++;
  return i;
}

function add(cell: Cell, bucket: number, error: boolean): void {
  cell.requests++;
  if (error) cell.errors++;
  cell.buckets[bucket]!++;
}

/** The bucket bound under which `q` of the requests fell (the last finite bound for the overflow bucket). */
function quantile(cell: Cell, q: number): number | null {
  if (cell.requests === 0) return null;
  const rank = q * cell.requests;
  let seen = 0;
  for (let i = 0; i < cell.buckets.length; i++) {
    seen += cell.buckets[i]!;
    if (seen >= rank) return DURATION_BUCKETS[Math.min(i, DURATION_BUCKETS.length - 1)]!;
  }
  return DURATION_BUCKETS.at(-1)!;
}
