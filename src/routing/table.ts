/**
 * The compiled, immutable routing snapshot and the rule matcher.
 *
 * Pure and framework-free: no I/O, no express, no clock. `src/config` builds a
 * {@link RoutingTable} from routes.yaml; the proxy reads one table at the start
 * of each request and never looks at another for that request.
 */

import type { Decision } from './decide.js';
import { createHash } from 'node:crypto';

/** A Taskcluster queue's settings, for a backend of kind `taskcluster`. */
export interface QueueSettings {
  /** The deployment's root URL; the queue is at `<rootUrl>/api/queue/v1`. */
  readonly rootUrl: string;
  /** Names of the environment variables that hold the credentials (never the secrets). */
  readonly clientIdEnv: string;
  readonly accessTokenEnv: string;
  readonly certificateEnv: string;
  /** The backend's task template (json-e), if any; a route's own replaces its top-level keys. */
  readonly task?: Readonly<Record<string, unknown>>;
}

export type BackendKind = 'buildbot' | 'taskcluster';

export interface Backend {
  readonly name: string;
  /** `buildbot`: answers Buildbot's API itself, requests are forwarded. `taskcluster`: the proxy translates. */
  readonly kind: BackendKind;
  readonly queue?: QueueSettings;
  /** As written in routes.yaml. */
  readonly url: string;
  /** `http://host:port`, what connections are opened to. */
  readonly origin: string;
  /** `host:port` of the origin: the Host header sent when `preserveHost` is false. */
  readonly host: string;
  /** Path prefix prepended to every forwarded path ('' for none). */
  readonly basePath: string;
  readonly legacy: boolean;
  readonly connectTimeoutMs: number;
  /** Time allowed until the response headers arrive. */
  readonly responseTimeoutMs: number;
  /** Longest silence allowed between two chunks of a response body (0: no limit). */
  readonly bodyIdleTimeoutMs: number;
  /** Send the client's Host header upstream (true) or the backend's own (false). */
  readonly preserveHost: boolean;
  readonly health: HealthCheck;
  readonly circuit: CircuitSettings;
}

/** Passive failure detection: this many failures in a row open the circuit for `coolDownMs` (0: never). */
export interface CircuitSettings {
  readonly failureThreshold: number;
  readonly coolDownMs: number;
}

export type StickySourceKind = 'header' | 'query' | 'param';

/** Where a sticky key may be found: a request header, a query parameter, or a force call's JSON-RPC param. */
export interface StickySource {
  readonly from: StickySourceKind;
  readonly name: string;
}

export interface ShadowSpec {
  readonly backend: string;
  /** Share of eligible requests copied, 0 to 100. */
  readonly percent: number;
  /** Also copy mutating calls (force, rebuild, stop, cancel), which run real builds on the shadow side. */
  readonly mutating: boolean;
  /** JSON fields (by key, at any depth) left out of the comparison: ids, timestamps. */
  readonly ignoreFields: ReadonlySet<string>;
}

/** The active health probe: GET `path` every `intervalMs` (0: never); any answer below 500 counts as healthy. */
export interface HealthCheck {
  readonly path: string;
  readonly intervalMs: number;
  readonly timeoutMs: number;
  /** Consecutive good probes that bring a down backend back up. */
  readonly healthyThreshold: number;
  /** Consecutive failed probes that mark an up backend down. */
  readonly unhealthyThreshold: number;
}

export interface RouteTarget {
  readonly backend: string;
  readonly weight: number;
}

export type PatternKind = 'exact' | 'glob' | 'regex';

export interface Route {
  /** Position in routes.yaml (0-based): first match wins. */
  readonly index: number;
  /** The jobType as written; unique within a table, so it doubles as the rule's name. */
  readonly pattern: string;
  readonly kind: PatternKind;
  /** One target with weight > 0 for `backend:`, several for `split:`. Weight-0 targets are dropped. */
  readonly targets: readonly RouteTarget[];
  readonly totalWeight: number;
  readonly isSplit: boolean;
  /** For a split: where to find the key that keeps a request on the same backend, tried in order. */
  readonly stickyBy: readonly StickySource[];
  readonly shadow?: ShadowSpec;
  /** Where a request goes when it provably never reached its backend (refused, DNS, circuit open). */
  readonly fallback?: string;
  /** Extra attempts for safe methods (GET, HEAD, OPTIONS) that failed without an answer. */
  readonly retries: number;
  /**
   * `track: true`: every build of the route's job types on the legacy master
   * is followed for the build comparison, including those its own schedulers
   * start; otherwise only builds of forces that went through the proxy.
   */
  readonly track: boolean;
  /** The route's task template for its taskcluster targets, over the backend's own. */
  readonly task?: Readonly<Record<string, unknown>>;
  /** For glob and regex routes. */
  readonly test?: (jobType: string) => boolean;
}

export interface ShadowSettings {
  /** Copies in flight at once; beyond it copies are dropped (and counted). */
  readonly maxInFlight: number;
  /** Largest request or response body a copy buffers for sending and comparing. */
  readonly maxBodyBytes: number;
  readonly timeoutMs: number;
  readonly mismatchLogsPerMinute: number;
}

export interface TableSettings {
  readonly shadow: ShadowSettings;
  /** Largest JSON-RPC body read to find builder names; larger bodies go to default unparsed. */
  readonly bodyPeekLimitBytes: number;
  /** Distinct job types outside the routes that get their own metric label before the rest count as "other". */
  readonly maxOtherJobTypeLabels: number;
}

export interface TableSource {
  readonly file: string;
  /** sha256 of the file's bytes, hex. */
  readonly hash: string;
  readonly loadedAt: Date;
  /** The file's text, for `plan` against a running proxy and the admin API. */
  readonly text: string;
}

export interface RoutingTable {
  readonly backends: ReadonlyMap<string, Backend>;
  readonly legacy: Backend;
  readonly defaultBackend: Backend;
  readonly routes: readonly Route[];
  readonly settings: TableSettings;
  readonly source: TableSource;
  /** Exact names, so that looking one up costs the same whatever the number of routes. */
  readonly exactRoutes: ReadonlyMap<string, Route>;
  /** Glob and regex routes, in file order. */
  readonly patternRoutes: readonly Route[];
  /** Memo of pattern matching per job type; see {@link matchRoute}. */
  readonly matchCache: Map<string, Route | null>;
  /** Memo of whole decisions per job type where the table alone decides (no split); see decide(). Bounded like matchCache. */
  readonly decisionCache: Map<string, Decision>;
}

/** Empties both memos (a benchmark measuring first sight; a test). */
export function forgetMemos(table: RoutingTable): void {
  table.matchCache.clear();
  table.decisionCache.clear();
}

/**
 * Job-type strings are client data: the memo is bounded so that a client
 * sending endless made-up names cannot grow memory. When full it starts over,
 * which costs a re-scan, never a wrong answer.
 */
export const MATCH_CACHE_LIMIT = 10_000;

/**
 * The first route, in file order, whose jobType matches `jobType`; undefined
 * when none does (the request then goes to the table's default backend).
 *
 * Exact names come from a Map. Patterns are scanned in order, but only those
 * placed before the exact hit can win, and each name's answer is memoised, so
 * the cost stays flat as the table grows to thousands of routes.
 *
 * @example matchRoute(table, 'linux64-opt')?.pattern // 'linux64-*'
 */
export function matchRoute(table: RoutingTable, jobType: string): Route | undefined {
  const cached = table.matchCache.get(jobType);
  if (cached !== undefined) return cached ?? undefined;

  const exact = table.exactRoutes.get(jobType);
  const limit = exact ? exact.index : Number.POSITIVE_INFINITY;
  let found: Route | undefined = exact;
  for (const route of table.patternRoutes) {
    if (route.index >= limit) break;
    if (route.test!(jobType)) {
      found = route;
      break;
    }
  }
  if (table.matchCache.size >= MATCH_CACHE_LIMIT) table.matchCache.clear();
  table.matchCache.set(jobType, found ?? null);
  return found;
}

/**
 * The backend a split sends the requests with this sticky key to, by
 * weighted rendezvous hashing: each backend draws a number from a hash of
 * (backend, key) and the smallest -ln(u)/weight wins. The same key always
 * gives the same backend for the same weights, in every process (no shared
 * state); a backend wins a key with probability weight/total; and raising one
 * backend's weight only ever moves keys to it, never between the others or
 * back.
 */
export function pickSticky(route: Route, key: string): string {
  const targets = route.targets;
  if (targets.length === 1) return targets[0]!.backend;
  let best = targets[0]!.backend;
  let bestScore = Number.POSITIVE_INFINITY;
  for (const target of targets) {
    const score = -Math.log(hashUnit(target.backend, key)) / target.weight;
    if (score < bestScore) {
      bestScore = score;
      best = target.backend;
    }
  }
  return best;
}

/** A uniform number in (0, 1) from sha256(backend NUL key): 48 bits, never 0. */
export function hashUnit(backend: string, key: string): number {
  const digest = createHash('sha256').update(backend).update('\u0000').update(key).digest();
  return (digest.readUIntBE(0, 6) + 0.5) / 2 ** 48;
}

/**
 * The backend a route sends a request to. `draw` is a number in [0, 1): the
 * same draw gives the same answer, which lets one request that names several
 * job types ask each of its routes with a single draw.
 */
export function pickTarget(route: Route, draw: number): string {
  const targets = route.targets;
  if (targets.length === 1) return targets[0]!.backend;
  let point = draw * route.totalWeight;
  for (const target of targets) {
    if (point < target.weight) return target.backend;
    point -= target.weight;
  }
  return targets[targets.length - 1]!.backend;
}
