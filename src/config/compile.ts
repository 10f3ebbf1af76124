/**
 * Turns a shape-checked routes.yaml into an immutable {@link RoutingTable},
 * or into the list of every problem that stops it from being one. Pure: the
 * caller supplies where the file came from.
 */
import picomatch from 'picomatch';
import type { Backend, PatternKind, Route, RoutingTable, TableSource } from '../routing/table.js';
import type { Problem, RawConfig, RawRoute } from './schema.js';

export const DEFAULTS = {
  connectTimeoutMs: 5_000,
  responseTimeoutMs: 60_000,
  bodyIdleTimeoutMs: 300_000,
  bodyPeekLimitBytes: 1024 * 1024,
  maxOtherJobTypeLabels: 100,
  health: { path: '/', intervalMs: 5_000, timeoutMs: 2_000, healthyThreshold: 2, unhealthyThreshold: 3 },
} as const;

export type CompileResult = { ok: true; table: RoutingTable } | { ok: false; problems: Problem[] };

export function compileConfig(raw: RawConfig, source: TableSource): CompileResult {
  const problems: Problem[] = [];
  const backends = compileBackends(raw, problems);
  const names = [...backends.keys()];

  // Counted from the file, so that a second legacy is reported even when its URL is also wrong.
  const legacyNames = Object.entries(raw.backends).filter(([, spec]) => spec.legacy === true).map(([name]) => name);
  const legacies = [...backends.values()].filter((b) => b.legacy);
  if (legacyNames.length === 0) {
    problems.push({ path: ['backends'], message: `no legacy backend; expected exactly one backend with "legacy: true" (the Buildbot master), among: ${names.join(', ')}` });
  } else if (legacyNames.length > 1) {
    for (const extra of legacyNames.slice(1)) {
      problems.push({ path: ['backends', extra, 'legacy'], message: `a second legacy backend (the first is "${legacyNames[0]}"); expected exactly one` });
    }
  }

  let defaultBackend = legacies[0];
  if (raw.default !== undefined && raw.default !== null) {
    defaultBackend = backends.get(raw.default);
    if (!defaultBackend) problems.push({ path: ['default'], message: unknownBackend(raw.default, names) });
  }

  const routes: Route[] = [];
  const seen = new Map<string, number>();
  (raw.routes ?? []).forEach((rawRoute, index) => {
    const earlier = seen.get(rawRoute.jobType);
    if (earlier !== undefined) {
      problems.push({ path: ['routes', index, 'jobType'], message: `duplicate rule: jobType "${rawRoute.jobType}" is already routed by routes[${earlier}]; expected each jobType once` });
      return;
    }
    seen.set(rawRoute.jobType, index);
    const route = compileRoute(rawRoute, index, backends, problems);
    if (route) routes.push(route);
  });

  if (problems.length > 0 || !legacies[0] || !defaultBackend) return { ok: false, problems };

  const exactRoutes = new Map<string, Route>();
  for (const route of routes) if (route.kind === 'exact') exactRoutes.set(route.pattern, route);

  const table: RoutingTable = {
    backends,
    legacy: legacies[0],
    defaultBackend,
    routes: Object.freeze(routes),
    settings: Object.freeze({
      bodyPeekLimitBytes: raw.settings?.bodyPeekLimitBytes ?? DEFAULTS.bodyPeekLimitBytes,
      maxOtherJobTypeLabels: raw.settings?.maxOtherJobTypeLabels ?? DEFAULTS.maxOtherJobTypeLabels,
    }),
    source: Object.freeze({ ...source }),
    exactRoutes,
    patternRoutes: Object.freeze(routes.filter((r) => r.kind !== 'exact')),
    matchCache: new Map(),
  };
  return { ok: true, table: Object.freeze(table) };
}

function compileBackends(raw: RawConfig, problems: Problem[]): Map<string, Backend> {
  const backends = new Map<string, Backend>();
  for (const [name, spec] of Object.entries(raw.backends)) {
    let url: URL;
    try {
      url = new URL(spec.url);
    } catch {
      problems.push({ path: ['backends', name, 'url'], message: `"${spec.url}" is not a URL; expected e.g. http://127.0.0.1:8011` });
      continue;
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      problems.push({ path: ['backends', name, 'url'], message: `unsupported scheme "${url.protocol}"; expected http: or https:` });
      continue;
    }
    if (url.username || url.password || url.search || url.hash) {
      problems.push({ path: ['backends', name, 'url'], message: 'expected a URL without credentials, query or fragment' });
      continue;
    }
    backends.set(
      name,
      Object.freeze({
        name,
        url: spec.url,
        origin: url.origin,
        basePath: url.pathname.replace(/\/+$/, ''),
        legacy: spec.legacy === true,
        connectTimeoutMs: spec.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs,
        responseTimeoutMs: spec.responseTimeoutMs ?? DEFAULTS.responseTimeoutMs,
        bodyIdleTimeoutMs: spec.bodyIdleTimeoutMs ?? DEFAULTS.bodyIdleTimeoutMs,
        preserveHost: spec.preserveHost ?? true,
        health: Object.freeze({
          path: spec.health?.path ?? DEFAULTS.health.path,
          intervalMs: spec.health?.intervalMs ?? DEFAULTS.health.intervalMs,
          timeoutMs: spec.health?.timeoutMs ?? DEFAULTS.health.timeoutMs,
          healthyThreshold: spec.health?.healthyThreshold ?? DEFAULTS.health.healthyThreshold,
          unhealthyThreshold: spec.health?.unhealthyThreshold ?? DEFAULTS.health.unhealthyThreshold,
        }),
      }),
    );
  }
  return backends;
}

function compileRoute(raw: RawRoute, index: number, backends: Map<string, Backend>, problems: Problem[]): Route | undefined {
  const names = [...backends.keys()];
  const here = ['routes', index];
  const before = problems.length;
  const hasBackend = raw.backend !== undefined && raw.backend !== null;
  const hasSplit = raw.split !== undefined && raw.split !== null;
  if (hasBackend === hasSplit) {
    problems.push({
      path: here,
      message: hasBackend
        ? 'both "backend" and "split"; expected one of them'
        : 'expected "backend: NAME" or "split: { NAME: WEIGHT, ... }"',
    });
  }

  let targets: { backend: string; weight: number }[] = [];
  if (hasBackend) {
    if (!backends.has(raw.backend!)) problems.push({ path: [...here, 'backend'], message: unknownBackend(raw.backend!, names) });
    targets = [{ backend: raw.backend!, weight: 1 }];
  } else if (hasSplit) {
    for (const [backend, weight] of Object.entries(raw.split!)) {
      if (!backends.has(backend)) problems.push({ path: [...here, 'split', backend], atKey: true, message: unknownBackend(backend, names) });
      if (weight > 0) targets.push({ backend, weight });
    }
    if (targets.length === 0) problems.push({ path: [...here, 'split'], message: 'weights add up to 0; expected at least one weight above 0' });
  }

  const pattern = compilePattern(raw.jobType, [...here, 'jobType'], problems);
  if (problems.length > before || !pattern) return undefined;
  const totalWeight = targets.reduce((sum, t) => sum + t.weight, 0);
  return Object.freeze({
    index,
    pattern: raw.jobType,
    kind: pattern.kind,
    targets: Object.freeze(targets.map((t) => Object.freeze(t))),
    totalWeight,
    isSplit: hasSplit,
    ...(pattern.test ? { test: pattern.test } : {}),
  });
}

const REGEX_LITERAL = /^\/(.+)\/([i]?)$/s;

function compilePattern(
  jobType: string,
  path: (string | number)[],
  problems: Problem[],
): { kind: PatternKind; test?: (s: string) => boolean } | undefined {
  const literal = REGEX_LITERAL.exec(jobType);
  if (literal) {
    try {
      const regex = new RegExp(literal[1]!, literal[2]);
      return { kind: 'regex', test: (s) => regex.test(s) };
    } catch (error) {
      problems.push({ path, message: `bad regular expression: ${(error as Error).message.replace(/^Invalid regular expression: /, '')}; expected /PATTERN/ or /PATTERN/i` });
      return undefined;
    }
  }
  if (jobType.startsWith('/')) {
    problems.push({ path, message: `"${jobType}" starts with "/" but is not /PATTERN/; expected a regular expression between slashes` });
    return undefined;
  }
  if (picomatch.scan(jobType).isGlob) {
    try {
      const matcher = picomatch(jobType, { dot: true, strictBrackets: true });
      return { kind: 'glob', test: (s) => matcher(s) };
    } catch (error) {
      problems.push({ path, message: `bad glob: ${(error as Error).message}` });
      return undefined;
    }
  }
  return { kind: 'exact' };
}

function unknownBackend(name: string, known: string[]): string {
  return `unknown backend "${name}"; expected one of: ${known.join(', ')}`;
}
