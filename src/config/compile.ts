/**
 * Turns a shape-checked routes.yaml into an immutable {@link RoutingTable},
 * or into the list of every problem that stops it from being one. Pure: the
 * caller supplies where the file came from.
 */
import picomatch from 'picomatch';
import type { Backend, PatternKind, Route, RouteTarget, RoutingTable, ShadowSpec, StickySource, TableSource } from '../routing/table.js';
import { globLiterals, regexLiterals, withLiterals } from '../routing/pattern-literals.js';
import { compileRouteRegex } from './regex.js';
import { mergeTemplates, renderTask, sampleContext, TemplateError, type TaskTemplate } from '../taskcluster/template.js';
import type { Problem, RawConfig, RawRoute } from './schema.js';

export const DEFAULTS = {
  connectTimeoutMs: 5_000,
  responseTimeoutMs: 60_000,
  bodyIdleTimeoutMs: 300_000,
  bodyPeekLimitBytes: 1024 * 1024,
  maxOtherJobTypeLabels: 100,
  queueHealthPath: '/api/queue/v1/ping',
  queueCredentials: { clientIdEnv: 'TASKCLUSTER_CLIENT_ID', accessTokenEnv: 'TASKCLUSTER_ACCESS_TOKEN', certificateEnv: 'TASKCLUSTER_CERTIFICATE' },
  health: { path: '/', intervalMs: 5_000, timeoutMs: 2_000, healthyThreshold: 2, unhealthyThreshold: 3 },
  circuit: { failureThreshold: 5, coolDownMs: 10_000 },
  shadow: { maxInFlight: 64, maxBodyBytes: 1024 * 1024, timeoutMs: 10_000, mismatchLogsPerMinute: 10 },
} as const;

export type CompileResult = { ok: true; table: RoutingTable } | { ok: false; problems: Problem[] };

export function compileConfig(raw: RawConfig, source: TableSource): CompileResult {
  const steps = compileSteps(raw, source, raw.routes ?? []);
  for (;;) {
    const step = steps.next();
    if (step.done) return step.value;
  }
}

/**
 * {@link compileConfig} one route at a time: it pauses after each route, so
 * that a caller can compile a file of thousands of patterns in slices between
 * requests (src/config/off-thread.ts) and still get one table built whole.
 * `rawRoutes` may be produced as they are needed, so that a large file's
 * routes never all exist as parsed objects at once.
 */
export function* compileSteps(raw: Omit<RawConfig, 'routes'>, source: TableSource, rawRoutes: Iterable<RawRoute>): Generator<void, CompileResult, void> {
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
  const exactRoutes = new Map<string, Route>();
  const patternRoutes: Route[] = [];
  const seen = new Map<string, number>();
  const shared = new SharedParts();
  let index = 0;
  for (const rawRoute of rawRoutes) {
    const earlier = seen.get(rawRoute.jobType);
    if (earlier !== undefined) {
      problems.push({ path: ['routes', index, 'jobType'], message: `duplicate rule: jobType "${rawRoute.jobType}" is already routed by routes[${earlier}]; expected each jobType once` });
    } else {
      seen.set(rawRoute.jobType, index);
      const route = compileRoute(rawRoute, index, backends, problems, shared);
      if (route) {
        routes.push(route);
        if (route.kind === 'exact') exactRoutes.set(route.pattern, route);
        else patternRoutes.push(route);
      }
    }
    index++;
    yield;
  }

  for (const backend of backends.values()) {
    if (backend.kind !== 'taskcluster') continue;
    // A template no route checked (a queue used only as the default, or not yet) must still render.
    if (backend.queue?.task !== undefined && !shared.checkedTemplates.has(backend.name)) {
      shared.checkedTemplates.add(backend.name);
      checkTemplate(backend.queue.task, ['backends', backend.name, 'task'], problems);
    }
    if (backend === defaultBackend && backend.queue?.task === undefined) {
      problems.push({ path: ['default'], message: `the default backend "${backend.name}" is a taskcluster queue without a task template; forces of unrouted job types would have nothing to create. Add "task:" to the backend` });
    }
  }

  if (problems.length > 0 || !legacies[0] || !defaultBackend) return { ok: false, problems };

  const table: RoutingTable = {
    backends,
    legacy: legacies[0],
    defaultBackend,
    routes: Object.freeze(routes),
    settings: Object.freeze({
      bodyPeekLimitBytes: raw.settings?.bodyPeekLimitBytes ?? DEFAULTS.bodyPeekLimitBytes,
      maxOtherJobTypeLabels: raw.settings?.maxOtherJobTypeLabels ?? DEFAULTS.maxOtherJobTypeLabels,
      shadow: Object.freeze({ ...DEFAULTS.shadow, ...definedOnly(raw.settings?.shadow ?? {}) }),
    }),
    source: Object.freeze({ ...source }),
    exactRoutes,
    patternRoutes: Object.freeze(patternRoutes),
    matchCache: new Map(),
    decisionCache: new Map(),
  };
  return { ok: true, table: Object.freeze(table) };
}

function compileBackends(raw: RawConfig, problems: Problem[]): Map<string, Backend> {
  const backends = new Map<string, Backend>();
  for (const [name, spec] of Object.entries(raw.backends)) {
    const isQueue = spec.kind === 'taskcluster';
    const urlField = isQueue ? 'rootUrl' : 'url';
    const given = isQueue ? (spec.rootUrl ?? spec.url) : spec.url;
    if (!isQueue && (spec.rootUrl !== undefined || spec.credentials !== undefined || spec.task !== undefined)) {
      const key = spec.rootUrl !== undefined ? 'rootUrl' : spec.credentials !== undefined ? 'credentials' : 'task';
      problems.push({ path: ['backends', name, key], atKey: true, message: `"${key}" applies to a Taskcluster queue; expected "kind: taskcluster" on this backend` });
      continue;
    }
    if (isQueue && spec.url !== undefined && spec.rootUrl !== undefined) {
      problems.push({ path: ['backends', name, 'url'], atKey: true, message: 'both "url" and "rootUrl"; a taskcluster backend takes its rootUrl only' });
      continue;
    }
    if (given === undefined || given === null) {
      problems.push({ path: ['backends', name], message: isQueue ? 'missing required field "rootUrl". Example: rootUrl: https://tc.example.com' : `missing required field "url". Example: url: http://127.0.0.1:8011` });
      continue;
    }
    let url: URL;
    try {
      url = new URL(given);
    } catch {
      problems.push({ path: ['backends', name, urlField], message: `"${given}" is not a URL; expected e.g. ${isQueue ? 'https://tc.example.com' : 'http://127.0.0.1:8011'}` });
      continue;
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      problems.push({ path: ['backends', name, urlField], message: `unsupported scheme "${url.protocol}"; expected http: or https:` });
      continue;
    }
    if (url.username || url.password || url.search || url.hash) {
      problems.push({ path: ['backends', name, urlField], message: 'expected a URL without credentials, query or fragment' });
      continue;
    }
    if (isQueue && spec.legacy === true) {
      problems.push({ path: ['backends', name, 'legacy'], message: 'the legacy backend is the Buildbot master; a taskcluster backend cannot be it' });
      continue;
    }
    const rootUrl = url.origin + url.pathname.replace(/\/+$/, '');
    backends.set(
      name,
      Object.freeze({
        name,
        kind: isQueue ? 'taskcluster' : 'buildbot',
        ...(isQueue
          ? {
              queue: Object.freeze({
                rootUrl,
                clientIdEnv: spec.credentials?.clientIdEnv ?? DEFAULTS.queueCredentials.clientIdEnv,
                accessTokenEnv: spec.credentials?.accessTokenEnv ?? DEFAULTS.queueCredentials.accessTokenEnv,
                certificateEnv: spec.credentials?.certificateEnv ?? DEFAULTS.queueCredentials.certificateEnv,
                ...(spec.task !== undefined ? { task: Object.freeze(spec.task) } : {}),
              }),
            }
          : {}),
        url: given,
        origin: url.origin,
        host: url.host,
        basePath: url.pathname.replace(/\/+$/, ''),
        legacy: spec.legacy === true,
        connectTimeoutMs: spec.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs,
        responseTimeoutMs: spec.responseTimeoutMs ?? DEFAULTS.responseTimeoutMs,
        bodyIdleTimeoutMs: spec.bodyIdleTimeoutMs ?? DEFAULTS.bodyIdleTimeoutMs,
        // SECURITY: a queue checks its Hawk signature against its own host, so requests to it always carry that host.
        preserveHost: isQueue ? false : (spec.preserveHost ?? true),
        health: Object.freeze({
          path: spec.health?.path ?? (isQueue ? DEFAULTS.queueHealthPath : DEFAULTS.health.path),
          intervalMs: spec.health?.intervalMs ?? DEFAULTS.health.intervalMs,
          timeoutMs: spec.health?.timeoutMs ?? DEFAULTS.health.timeoutMs,
          healthyThreshold: spec.health?.healthyThreshold ?? DEFAULTS.health.healthyThreshold,
          unhealthyThreshold: spec.health?.unhealthyThreshold ?? DEFAULTS.health.unhealthyThreshold,
        }),
        circuit: Object.freeze({ ...DEFAULTS.circuit, ...definedOnly(spec.circuit ?? {}) }),
      }),
    );
  }
  return backends;
}

/**
 * Frozen parts that many routes of one table have in common (one backend with
 * weight 1, no sticky sources), built once: a file of thousands of routes then
 * holds one object per route instead of several.
 */
class SharedParts {
  private readonly single = new Map<string, readonly RouteTarget[]>();
  readonly noSticky: readonly StickySource[] = Object.freeze([]);
  /** Backends whose own task template was already checked (alone), so thousands of routes check it once. */
  readonly checkedTemplates = new Set<string>();

  singleTarget(backend: string): readonly RouteTarget[] {
    let targets = this.single.get(backend);
    if (!targets) this.single.set(backend, (targets = Object.freeze([Object.freeze({ backend, weight: 1 })])));
    return targets;
  }
}

function compileRoute(raw: RawRoute, index: number, backends: Map<string, Backend>, problems: Problem[], shared: SharedParts): Route | undefined {
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

  const stickyBy = (raw.stickyBy ?? []).map((source): StickySource => {
    const colon = source.indexOf(':');
    return Object.freeze({ from: source.slice(0, colon) as StickySource['from'], name: source.slice(colon + 1) });
  });
  if (stickyBy.length > 0 && !hasSplit) problems.push({ path: [...here, 'stickyBy'], message: 'stickyBy applies to split routes only; expected a "split:" on this route' });

  if (raw.fallback !== undefined && raw.fallback !== null && !backends.has(raw.fallback)) {
    problems.push({ path: [...here, 'fallback'], message: unknownBackend(raw.fallback, names) });
  }
  const shadow = compileShadow(raw.shadow, [...here, 'shadow'], backends, problems);
  checkRouteTemplates(raw, here, targets.map((t) => t.backend), backends, problems, shared);

  const pattern = compilePattern(raw.jobType, [...here, 'jobType'], problems);
  if (problems.length > before || !pattern) return undefined;
  const totalWeight = targets.reduce((sum, t) => sum + t.weight, 0);
  return Object.freeze({
    index,
    pattern: raw.jobType,
    kind: pattern.kind,
    targets: hasBackend ? shared.singleTarget(raw.backend!) : Object.freeze(targets.map((t) => Object.freeze(t))),
    totalWeight,
    isSplit: hasSplit,
    stickyBy: stickyBy.length === 0 ? shared.noSticky : Object.freeze(stickyBy),
    retries: raw.retries ?? 0,
    track: raw.track === true,
    ...(raw.task ? { task: Object.freeze(raw.task) } : {}),
    ...(raw.fallback ? { fallback: raw.fallback } : {}),
    ...(shadow ? { shadow } : {}),
    ...(pattern.test ? { test: pattern.test } : {}),
  });
}

const SHADOW_KEYS = ['backend', 'percent', 'mutating', 'ignoreFields'];

/** `shadow: NAME` or `shadow: { backend, percent, mutating, ignoreFields }`. */
function compileShadow(raw: unknown, path: (string | number)[], backends: Map<string, Backend>, problems: Problem[]): ShadowSpec | undefined {
  if (raw === undefined || raw === null) return undefined;
  const spec = typeof raw === 'string' ? { backend: raw } : (raw as Record<string, unknown>);
  if (typeof spec !== 'object' || Array.isArray(spec)) {
    problems.push({ path, message: 'expected a backend name or { backend: NAME, percent: 0-100, mutating: false, ignoreFields: [...] }' });
    return undefined;
  }
  const before = problems.length;
  for (const key of Object.keys(spec)) {
    if (!SHADOW_KEYS.includes(key)) problems.push({ path: [...path, key], atKey: true, message: `unknown key "${key}"; expected one of: ${SHADOW_KEYS.join(', ')}` });
  }
  const { backend, percent = 100, mutating = false, ignoreFields = [] } = spec;
  if (typeof backend !== 'string') problems.push({ path, message: 'missing required field "backend". Example: shadow: { backend: taskservice, percent: 10 }' });
  else if (!backends.has(backend)) problems.push({ path: typeof raw === 'string' ? path : [...path, 'backend'], message: unknownBackend(backend, [...backends.keys()]) });
  if (typeof percent !== 'number' || !(percent >= 0 && percent <= 100)) problems.push({ path: [...path, 'percent'], message: 'expected a number from 0 to 100' });
  if (typeof mutating !== 'boolean') problems.push({ path: [...path, 'mutating'], message: 'expected true or false' });
  if (!Array.isArray(ignoreFields) || !ignoreFields.every((f) => typeof f === 'string')) problems.push({ path: [...path, 'ignoreFields'], message: 'expected a list of field names' });
  if (problems.length > before) return undefined;
  return Object.freeze({ backend: backend as string, percent: percent as number, mutating: mutating as boolean, ignoreFields: new Set(ignoreFields as string[]) });
}

/** Renders a template with a sample force, so that a template the queue would refuse is rejected when the file loads. */
function checkTemplate(template: TaskTemplate, path: (string | number)[], problems: Problem[], builderName = 'sample-builder'): boolean {
  try {
    renderTask(template, sampleContext(builderName));
    return true;
  } catch (error) {
    if (!(error instanceof TemplateError)) throw error;
    problems.push({ path: [...path, ...error.path], message: `task template: ${error.message}` });
    return false;
  }
}

/** Every taskcluster backend a route sends to needs a template (its own or the backend's), and the two together must render. */
function checkRouteTemplates(raw: RawRoute, here: (string | number)[], targetNames: string[], backends: Map<string, Backend>, problems: Problem[], shared: SharedParts): void {
  const queues = [...new Set([...targetNames, ...(raw.fallback ? [raw.fallback] : [])])].map((n) => backends.get(n)).filter((b): b is Backend => b?.kind === 'taskcluster');
  if (raw.task !== undefined && raw.task !== null && queues.length === 0) {
    problems.push({ path: [...here, 'task'], atKey: true, message: 'a task template applies to routes that send to a taskcluster backend; none of this route\'s backends is one' });
    return;
  }
  const jobType = /^[A-Za-z0-9_.-]+$/.test(raw.jobType) ? raw.jobType : 'sample-builder';
  for (const queue of queues) {
    const merged = mergeTemplates(queue.queue?.task, raw.task ?? undefined);
    if (merged === undefined) {
      problems.push({ path: here, message: `job types of this route go to taskcluster backend "${queue.name}", which needs a task template: add "task:" to the route or to the backend. Example: task: { taskQueueId: proj-ci/linux, payload: { command: [make] } }` });
      continue;
    }
    if (raw.task !== undefined && raw.task !== null) checkTemplate(merged, [...here, 'task'], problems, jobType);
    else if (!shared.checkedTemplates.has(queue.name)) {
      shared.checkedTemplates.add(queue.name);
      checkTemplate(merged, ['backends', queue.name, 'task'], problems);
    }
  }
}

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined && v !== null)) as Partial<T>;
}

const REGEX_LITERAL = /^\/(.+)\/([i]?)$/s;

function compilePattern(
  jobType: string,
  path: (string | number)[],
  problems: Problem[],
): { kind: PatternKind; test?: (s: string) => boolean } | undefined {
  const literal = REGEX_LITERAL.exec(jobType);
  if (literal) {
    const source = literal[1]!;
    const flags = literal[2] === 'i' ? 'i' : '';
    const regex = compileRouteRegex(source, flags);
    if (!regex.ok) {
      problems.push({ path, message: regex.reason });
      return undefined;
    }
    return { kind: 'regex', test: withLiterals(regexLiterals(source, flags), regex.test) };
  }
  if (jobType.startsWith('/')) {
    problems.push({ path, message: `"${jobType}" starts with "/" but is not /PATTERN/; expected a regular expression between slashes` });
    return undefined;
  }
  if (picomatch.scan(jobType).isGlob) {
    try {
      const matcher = picomatch(jobType, { dot: true, strictBrackets: true });
      return { kind: 'glob', test: withLiterals(globLiterals(jobType), (s) => matcher(s)) };
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
