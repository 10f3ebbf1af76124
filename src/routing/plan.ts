/**
 * What a routes.yaml edit changes, before it is saved: per job type, the
 * share of its requests each backend gets before and after, and, weighted by
 * recent traffic, the share of all requests that would move. Pure: the
 * caller supplies the job types to consider and their traffic.
 *
 * A job type's requests that move is the total-variation distance between its
 * before and after shares: with 25% on the new side before and 50% after,
 * a quarter of its requests change backend (sticky splits move exactly those).
 */
import { matchRoute, type RoutingTable } from './table.js';

export type Shares = Record<string, number>;

export interface JobTypeChange {
  jobType: string;
  before: Shares;
  after: Shares;
  /** Rule (jobType as written) deciding before and after; null for the default backend. */
  ruleBefore: string | null;
  ruleAfter: string | null;
  /** Share (0 to 1) of this job type's requests that would change backend. */
  moved: number;
  /** Its requests in the traffic sample (0 when it had none). */
  requests: number;
}

export interface Plan {
  changes: JobTypeChange[];
  /** Share (0 to 1) of all sampled requests that would change backend. */
  movedShareOfTraffic: number;
  sampledRequests: number;
  /** Backends added or removed, default changed. */
  notes: string[];
}

/** The share of a job type's requests each backend gets under `table`. */
export function sharesFor(table: RoutingTable, jobType: string): { shares: Shares; rule: string | null } {
  const route = matchRoute(table, jobType);
  if (!route) return { shares: { [table.defaultBackend.name]: 1 }, rule: null };
  const shares: Shares = {};
  for (const target of route.targets) shares[target.backend] = (shares[target.backend] ?? 0) + target.weight / route.totalWeight;
  return { shares, rule: route.pattern };
}

export function movedShare(before: Shares, after: Shares): number {
  const names = new Set([...Object.keys(before), ...Object.keys(after)]);
  let sum = 0;
  for (const name of names) sum += Math.abs((before[name] ?? 0) - (after[name] ?? 0));
  return sum / 2;
}

/**
 * @param jobTypes the job types to consider: traffic's, the exact names of both files, the legacy master's builders
 * @param traffic requests per job type in the recent sample (may be empty)
 */
export function planChanges(current: RoutingTable, next: RoutingTable, jobTypes: Iterable<string>, traffic: ReadonlyMap<string, number> = new Map()): Plan {
  const steps = planSteps(current, next, jobTypes, traffic);
  for (;;) {
    const step = steps.next();
    if (step.done) return step.value;
  }
}

/**
 * planChanges one job type at a time: a reload of tens of thousands of routes
 * plans in slices between requests (src/config/slices.ts) instead of holding
 * them up.
 */
export function* planSteps(current: RoutingTable, next: RoutingTable, jobTypes: Iterable<string>, traffic: ReadonlyMap<string, number> = new Map()): Generator<void, Plan> {
  const changes: JobTypeChange[] = [];
  let sampled = 0;
  let moved = 0;
  for (const [, n] of traffic) sampled += n;
  for (const jobType of new Set(jobTypes)) {
    yield;
    const before = sharesFor(current, jobType);
    const after = sharesFor(next, jobType);
    const share = movedShare(before.shares, after.shares);
    const requests = traffic.get(jobType) ?? 0;
    moved += share * requests;
    if (share > 1e-9) {
      changes.push({ jobType, before: round(before.shares), after: round(after.shares), ruleBefore: before.rule, ruleAfter: after.rule, moved: round1(share), requests });
    }
  }
  changes.sort((a, b) => b.requests * b.moved - a.requests * a.moved || a.jobType.localeCompare(b.jobType));

  const notes: string[] = [];
  for (const name of next.backends.keys()) if (!current.backends.has(name)) notes.push(`backend added: ${name} (${next.backends.get(name)!.url})`);
  for (const name of current.backends.keys()) if (!next.backends.has(name)) notes.push(`backend removed: ${name}`);
  for (const [name, b] of next.backends) {
    const old = current.backends.get(name);
    if (old && old.url !== b.url) notes.push(`backend ${name} moves: ${old.url} -> ${b.url}`);
  }
  if (current.defaultBackend.name !== next.defaultBackend.name) notes.push(`default: ${current.defaultBackend.name} -> ${next.defaultBackend.name}`);
  if (current.legacy.name !== next.legacy.name) notes.push(`legacy: ${current.legacy.name} -> ${next.legacy.name}`);
  return { changes, movedShareOfTraffic: sampled === 0 ? 0 : round1(moved / sampled), sampledRequests: sampled, notes };
}

function round1(x: number): number {
  return Math.round(x * 10_000) / 10_000;
}

function round(shares: Shares): Shares {
  return Object.fromEntries(Object.entries(shares).map(([k, v]) => [k, round1(v)]));
}
