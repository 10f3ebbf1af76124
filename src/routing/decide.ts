/**
 * The routing decision: given what a request says about its job type, which
 * backend serves it and why. Pure; the caller gathers the facts (which may
 * need a builder-id lookup) and supplies the random draw for splits.
 */
import { isBuilderName } from './extract.js';
import { matchRoute, pickTarget, type Backend, type Route, type RoutingTable } from './table.js';

/**
 * Why a request went where it went; also a metric label, so the set is closed.
 * - header: the client said its job type in X-Job-Type
 * - route / split: a route matched the job type (split: a weighted one)
 * - default: no job type, or none of the routes matched it
 * - mixed-builders: a force named builders that live on different backends; the legacy one runs them all
 * - unparsed-body: a force whose body could not be read (too large, not JSON-RPC); the backend answers it
 */
export type DecisionReason = 'header' | 'route' | 'split' | 'default' | 'mixed-builders' | 'unparsed-body';
export const DECISION_REASONS: readonly DecisionReason[] = ['header', 'route', 'split', 'default', 'mixed-builders', 'unparsed-body'];

export interface RequestFacts {
  /** The X-Job-Type header, as sent. */
  headerJobType?: string | undefined;
  /** Builder names found in the path or the body (ids already resolved). */
  jobTypes?: readonly string[];
  /** The body should have named builders but could not be read. */
  unparsedBody?: boolean;
}

export interface Decision {
  backend: Backend;
  reason: DecisionReason;
  /** The job type, or several joined by "," for a force naming more than one builder. */
  jobType?: string;
  /** The route that decided; absent when the default backend was used. */
  route?: Route;
}

/**
 * @example decide(table, { jobTypes: ['linux64-opt'] }) // { backend: taskservice, reason: 'route', route: linux64-* }
 */
export function decide(table: RoutingTable, facts: RequestFacts, draw: number = Math.random()): Decision {
  if (facts.headerJobType !== undefined && isBuilderName(facts.headerJobType)) {
    return { ...decideOne(table, facts.headerJobType, draw), reason: 'header' };
  }
  const jobTypes = facts.jobTypes ?? [];
  if (jobTypes.length === 1) return decideOne(table, jobTypes[0]!, draw);
  if (jobTypes.length > 1) return decideMany(table, jobTypes, draw);
  if (facts.unparsedBody) return { backend: table.defaultBackend, reason: 'unparsed-body' };
  return { backend: table.defaultBackend, reason: 'default' };
}

function decideOne(table: RoutingTable, jobType: string, draw: number): Decision {
  const route = matchRoute(table, jobType);
  if (!route) return { backend: table.defaultBackend, reason: 'default', jobType };
  return { backend: table.backends.get(pickTarget(route, draw))!, reason: route.isSplit ? 'split' : 'route', jobType, route };
}

/**
 * One force naming several builders is one build request: it is never split.
 * If every builder lands on one backend it goes there; otherwise the legacy
 * master, which still has every builder, runs them all.
 */
function decideMany(table: RoutingTable, jobTypes: readonly string[], draw: number): Decision {
  const decisions = jobTypes.map((jobType) => decideOne(table, jobType, draw));
  const first = decisions[0]!;
  const jobType = jobTypes.join(',');
  if (decisions.every((d) => d.backend === first.backend)) return { ...first, jobType };
  return { backend: table.legacy, reason: 'mixed-builders', jobType };
}
