/**
 * Where a Buildbot request names its builder (the job type). Pure functions
 * over untrusted request data: they never throw, and anything unexpected
 * means "no job type here", which routes to the default backend.
 *
 * See shared/reference/buildbot-and-taskcluster-apis.md for the API facts.
 */

/** Buildbot's identifier rule for names in REST paths, with a length cap of ours. */
const BUILDER_NAME = /^[a-zA-Z_-][.a-zA-Z0-9_-]{0,199}$/;
const BUILDER_ID = /^[0-9]{1,15}$/;

export type PathBuilderRef = { kind: 'name'; name: string } | { kind: 'id'; id: number };

export function isBuilderName(value: unknown): value is string {
  return typeof value === 'string' && BUILDER_NAME.test(value);
}

/**
 * The builder named in a REST path: `/api/v2/builders/{name|id}/...` and
 * `/api/v2/masters/{mid}/builders/{name|id}/...`.
 *
 * @example builderFromPath('/api/v2/builders/linux64-opt/builds') // { kind: 'name', name: 'linux64-opt' }
 * @example builderFromPath('/api/v2/builders/12/builds/3')       // { kind: 'id', id: 12 }
 */
export function builderFromPath(pathname: string): PathBuilderRef | undefined {
  if (!pathname.startsWith('/api/v2/')) return undefined;
  // Read segment by segment with indexOf: this runs on every request, and split() built arrays for it.
  let start = 8; // after '/api/v2/'
  if (pathname.startsWith('masters/', start)) {
    const masterEnd = pathname.indexOf('/', start + 8);
    if (masterEnd === -1) return undefined;
    start = masterEnd + 1;
  }
  if (!pathname.startsWith('builders/', start)) return undefined;
  start += 9;
  const end = pathname.indexOf('/', start);
  const raw = end === -1 ? pathname.slice(start) : pathname.slice(start, end);
  if (raw === '') return undefined;
  let segment = raw;
  if (raw.includes('%')) {
    try {
      segment = decodeURIComponent(raw);
    } catch {
      return undefined;
    }
  }
  if (BUILDER_ID.test(segment)) return { kind: 'id', id: Number(segment) };
  if (BUILDER_NAME.test(segment)) return { kind: 'name', name: segment };
  return undefined;
}

/** True for the JSON-RPC calls whose body names builders: `POST /api/v2/forceschedulers/{scheduler}`. */
export function isForceCall(method: string, pathname: string): boolean {
  return method === 'POST' && /^\/api\/v2\/forceschedulers\/[^/]+\/?$/.test(pathname);
}

/** The call's params, for sticky keys such as `param:revision`. */
type Params = { params?: Readonly<Record<string, unknown>> };

export type BodyBuilderRef =
  | ({ kind: 'names'; names: string[] } & Params)
  | ({ kind: 'id'; id: number } & Params)
  /** A well-formed call that names no builder (force on all of a scheduler's builders, or another method). */
  | ({ kind: 'none' } & Params)
  /** Not JSON-RPC we can read: the backend will answer it. */
  | { kind: 'unparsed' };

/**
 * The builders a force call names: `params.builderNames` or `params.builderid`.
 * The body is parsed only to read; the bytes sent upstream are the client's own.
 */
export function buildersFromForceBody(body: Buffer): BodyBuilderRef {
  let call: unknown;
  try {
    call = JSON.parse(body.toString('utf8'));
  } catch {
    return { kind: 'unparsed' }; // also catches RangeError from absurdly deep nesting
  }
  if (!isPlainObject(call)) return { kind: 'unparsed' };
  if (call.method !== 'force') return { kind: 'none' };
  const params = call.params;
  if (params === undefined) return { kind: 'none' };
  if (!isPlainObject(params)) return { kind: 'unparsed' };

  // SECURITY: own properties only; a body may carry "__proto__" or "constructor" keys.
  const builderNames = Object.hasOwn(params, 'builderNames') ? params.builderNames : undefined;
  if (builderNames !== undefined && builderNames !== null) {
    if (!Array.isArray(builderNames) || builderNames.length === 0 || builderNames.length > 1000) return { kind: 'unparsed' };
    if (!builderNames.every(isBuilderName)) return { kind: 'unparsed' };
    return { kind: 'names', names: [...new Set(builderNames as string[])], params };
  }
  const builderid = Object.hasOwn(params, 'builderid') ? params.builderid : undefined;
  if (builderid !== undefined && builderid !== null) {
    if (typeof builderid === 'number' && Number.isSafeInteger(builderid) && builderid >= 0) return { kind: 'id', id: builderid, params };
    if (typeof builderid === 'string' && BUILDER_ID.test(builderid)) return { kind: 'id', id: Number(builderid), params };
    return { kind: 'unparsed' };
  }
  return { kind: 'none', params };
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
