/**
 * The routing decision: given what a request says about its job type, which
 * backend serves it and why. Pure; the caller gathers the facts (which may
 * need a builder-id lookup) and supplies the random draw for splits.
 */
import { isBuilderName } from './extract.js';
import { MATCH_CACHE_LIMIT, matchRoute, pickSticky, pickTarget, type Backend, type Route, type RoutingTable, type StickySource } from './table.js';

/**
 * Why a request went where it went; also a metric label, so the set is closed.
 * - header: the client said its job type in X-Job-Type
 * - route / split: a route matched the job type (split: a weighted one)
 * - default: no job type, or none of the routes matched it
 * - mixed-builders: a force named builders that live on different backends; the legacy one runs them all
 * - unparsed-body: a force whose body could not be read (too large, not JSON-RPC); the backend answers it
 */
export type DecisionReason = 'header' | 'route' | 'split' | 'default' | 'mixed-builders' | 'unparsed-body' | 'owner';
export const DECISION_REASONS: readonly DecisionReason[] = ['header', 'route', 'split', 'default', 'mixed-builders', 'unparsed-body', 'owner'];

export interface RequestFacts {
  /** The X-Job-Type header, as sent. */
  headerJobType?: string | undefined;
  /** Builder names found in the path or the body (ids already resolved). */
  jobTypes?: readonly string[];
  /** The body should have named builders but could not be read. */
  unparsedBody?: boolean;
  /** The path names a Buildbot object by an id of the legacy master's (a build, buildrequest, buildset, step or log). */
  legacyObject?: boolean;
  /** Looks up a sticky-key source in the request (header, query parameter, JSON-RPC param). */
  sticky?: (source: StickySource) => string | undefined;
}

/** Read-only: a decision may be a memoised one shared by every request for its job type. */
export interface Decision {
  readonly backend: Backend;
  readonly reason: DecisionReason;
  /** The job type, or several joined by "," for a force naming more than one builder. */
  readonly jobType?: string;
  /** The route that decided; absent when the default backend was used. */
  readonly route?: Route;
  /** For a sticky split: which source gave the key, and the key. */
  readonly sticky?: { readonly source: string; readonly key: string };
}

/**
 * @example decide(table, { jobTypes: ['linux64-opt'] }) // { backend: taskservice, reason: 'route', route: linux64-* }
 */
export function decide(table: RoutingTable, facts: RequestFacts, draw: number = Math.random()): Decision {
  if (facts.headerJobType !== undefined && isBuilderName(facts.headerJobType)) {
    return { ...decideOne(table, facts.headerJobType, draw, facts), reason: 'header' };
  }
  const jobTypes = facts.jobTypes ?? [];
  if (jobTypes.length === 1) return decideOne(table, jobTypes[0]!, draw, facts);
  if (jobTypes.length > 1) return decideMany(table, jobTypes, draw, facts);
  if (facts.unparsedBody) return { backend: table.defaultBackend, reason: 'unparsed-body' };
  if (facts.legacyObject) return { backend: table.legacy, reason: 'owner' };
  return { backend: table.defaultBackend, reason: 'default' };
}

/**
 * Where the table alone decides (no route, or a route without a split) the
 * decision is the same for every request of the job type: it is built once
 * and memoised, so a decision costs a lookup whatever the table's size.
 */
function decideOne(table: RoutingTable, jobType: string, draw: number, facts: RequestFacts): Decision {
  const memo = table.decisionCache.get(jobType);
  if (memo !== undefined) return memo;
  const route = matchRoute(table, jobType);
  if (!route) return remember(table, jobType, { backend: table.defaultBackend, reason: 'default', jobType });
  if (!route.isSplit) return remember(table, jobType, { backend: table.backends.get(pickTarget(route, draw))!, reason: 'route', jobType, route });
  const sticky = stickyKey(route, facts);
  const backend = table.backends.get(sticky ? pickSticky(route, sticky.key) : pickTarget(route, draw))!;
  return sticky ? { backend, reason: 'split', jobType, route, sticky } : { backend, reason: 'split', jobType, route };
}

function remember(table: RoutingTable, jobType: string, decision: Decision): Decision {
  // Bounded like the match memo: job types are client data.
  if (table.decisionCache.size >= MATCH_CACHE_LIMIT) table.decisionCache.clear();
  table.decisionCache.set(jobType, Object.freeze(decision));
  return decision;
}

/** The first of the route's sticky sources the request carries; requests without one split at random. */
function stickyKey(route: Route, facts: RequestFacts): { source: string; key: string } | undefined {
  if (!facts.sticky) return undefined;
  for (const source of route.stickyBy) {
    const key = facts.sticky(source);
    if (key !== undefined && key !== '') return { source: `${source.from}:${source.name}`, key };
  }
  return undefined;
}

/**
 * One force naming several builders is one build request: it is never split.
 * If every builder lands on one backend it goes there; otherwise the legacy
 * master, which still has every builder, runs them all.
 */
function decideMany(table: RoutingTable, jobTypes: readonly string[], draw: number, facts: RequestFacts): Decision {
  const decisions = jobTypes.map((jobType) => decideOne(table, jobType, draw, facts));
  const first = decisions[0]!;
  const jobType = jobTypes.join(',');
  if (decisions.every((d) => d.backend === first.backend)) return { ...first, jobType };
  return { backend: table.legacy, reason: 'mixed-builders', jobType };
}
