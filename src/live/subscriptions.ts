/**
 * What one web UI connection on `/ws` asked to hear, as Buildbot 3.7 keeps
 * it (`www/ws.py`, `util/tuplematch.py`): a path such as `builds/*\/*` is a
 * filter of `/`-separated segments, `*` matches any one segment, and a key
 * matches when it has as many segments and every other segment is equal.
 * Each subscription is its own consumer: a key matching two subscriptions is
 * delivered twice, as the master's message queue does.
 *
 * The proxy reads the client's frames only to keep this list; the frames go
 * to the master unchanged and the master answers them.
 */

/**
 * Subscriptions kept per connection. Buildbot keeps any number; the proxy
 * stops tracking past this (the master still gets them) so that one client
 * cannot grow its memory without bound.
 */
export const MAX_SUBSCRIPTIONS = 1_000;
/** Longer paths are not tracked: no event key of queue work comes near. */
export const MAX_PATH_LENGTH = 512;

/** A path's segments, `null` for a `*` (Buildbot's `parsePath`). */
export type Filter = readonly (string | null)[];

export function parsePath(path: string): Filter {
  return path.split('/').map((segment) => (segment === '*' ? null : segment));
}

/**
 * Buildbot's `matchTuple`: same length, and each segment equal unless the filter's is a wildcard.
 *
 * @example filterMatches(parsePath('builds/*\/*'), ['builds', '7', 'new']) // true
 */
export function filterMatches(filter: Filter, key: readonly string[]): boolean {
  if (filter.length !== key.length) return false;
  for (let i = 0; i < key.length; i++) {
    const f = filter[i];
    if (f !== null && f !== key[i]) return false;
  }
  return true;
}

/**
 * One client frame as Buildbot's `onMessage` dispatches it: with `type`, the
 * GraphQL protocol (the proxy injects nothing there); with `_id` and no
 * `type`, its own protocol, where `startConsuming` and `stopConsuming` with
 * a string path (Buildbot's `isPath`) change what the connection consumes.
 * Anything else (not JSON, neither field) is only relayed: the master answers it.
 */
export type Frame = { protocol: 'graphql' } | { protocol: 'buildbot'; cmd?: 'startConsuming' | 'stopConsuming'; path?: string } | undefined;

/** Reads one text frame. Request data: never throws, and trusts no field's type. */
export function readFrame(text: string): Frame {
  let frame: unknown;
  try {
    frame = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof frame !== 'object' || frame === null || Array.isArray(frame)) return undefined;
  const fields = frame as Record<string, unknown>;
  if (fields['type'] !== undefined && fields['type'] !== null) return { protocol: 'graphql' };
  if (fields['_id'] === undefined || fields['_id'] === null) return undefined;
  const cmd = fields['cmd'];
  const path = fields['path'];
  if ((cmd === 'startConsuming' || cmd === 'stopConsuming') && typeof path === 'string') return { protocol: 'buildbot', cmd, path };
  return { protocol: 'buildbot' };
}

export class Subscriptions {
  private readonly byPath = new Map<string, Filter>();
  /** Buildbot fixes a connection's protocol with its first frame that names one, and refuses the other's frames after. */
  private protocol: 'graphql' | 'buildbot' | undefined;

  /** Applies a client frame; says what it did (for tests and logs). */
  apply(text: string): 'started' | 'stopped' | 'ignored' {
    const frame = readFrame(text);
    if (frame === undefined) return 'ignored';
    this.protocol ??= frame.protocol;
    if (frame.protocol !== 'buildbot' || this.protocol !== 'buildbot' || frame.path === undefined) return 'ignored';
    if (frame.cmd === 'stopConsuming') return this.byPath.delete(frame.path) ? 'stopped' : 'ignored';
    if (this.byPath.has(frame.path) || this.byPath.size >= MAX_SUBSCRIPTIONS || frame.path.length > MAX_PATH_LENGTH) return 'ignored';
    this.byPath.set(frame.path, parsePath(frame.path));
    return 'started';
  }

  /** How many of the subscriptions a key matches: how many times Buildbot would deliver it. */
  count(key: readonly string[]): number {
    let n = 0;
    for (const filter of this.byPath.values()) if (filterMatches(filter, key)) n++;
    return n;
  }

  get size(): number {
    return this.byPath.size;
  }
}
