/**
 * Objects found by their own id: `/api/v2/builds/{id}`, `/buildrequests/{id}`,
 * `/buildsets/{id}`, `/steps/{id}`, `/logs/{id}` and whatever lies below them.
 * An id in the proxy's minted range belongs to work it sent to a queue, so the
 * request goes to that work's owner whatever the routes say. Pure.
 */
import { isMintedId } from '../store/store.js';

export type OwnedKind = 'build' | 'buildrequest' | 'buildset' | 'step' | 'log';

export interface OwnedRef {
  kind: OwnedKind;
  id: number;
  /** The path segments after the id (`['steps', '0', 'logs']`), percent-decoding left to the reader. */
  rest: string[];
}

const KINDS: Record<string, OwnedKind> = { builds: 'build', buildrequests: 'buildrequest', buildsets: 'buildset', steps: 'step', logs: 'log' };
const OWNED_PATH = /^\/api\/v2\/(builds|buildrequests|buildsets|steps|logs)\/([0-9]{1,16})(?:\/(.*))?$/;

/**
 * The minted id a path names, or undefined for every other path.
 *
 * @example ownedIdIn('/api/v2/builds/1000000000000007/steps') // { kind: 'build', id: 1000000000000007, rest: ['steps'] }
 * @example ownedIdIn('/api/v2/builds/12')                     // undefined: the legacy master's
 */
export function ownedIdIn(pathname: string): OwnedRef | undefined {
  const match = OWNED_PATH.exec(pathname);
  if (match === null) return undefined;
  const id = Number(match[2]);
  if (!isMintedId(id)) return undefined;
  const rest = match[3] === undefined || match[3] === '' ? [] : match[3].split('/').filter((s) => s !== '');
  return { kind: KINDS[match[1]!]!, id, rest };
}

const FILTERED: Record<string, { param: string; kind: OwnedKind; rest: string[] }> = {
  '/api/v2/builds': { param: 'buildrequestid', kind: 'buildrequest', rest: ['builds'] },
  '/api/v2/buildrequests': { param: 'buildsetid', kind: 'buildset', rest: ['buildrequests'] },
};

/**
 * A collection read filtered by one minted id (`/api/v2/builds?buildrequestid=ID`,
 * `/api/v2/buildrequests?buildsetid=ID`): the same as reading below that id.
 *
 * @example ownedFilterIn('/api/v2/builds', 'buildrequestid=1000000000000003') // { kind: 'buildrequest', id: 1000000000000003, rest: ['builds'] }
 */
export function ownedFilterIn(pathname: string, search: string): OwnedRef | undefined {
  const filtered = FILTERED[pathname.endsWith('/') ? pathname.slice(0, -1) : pathname];
  if (filtered === undefined || search === '') return undefined;
  const query = new URLSearchParams(search);
  const values = [...query.getAll(filtered.param), ...query.getAll(`${filtered.param}__eq`)];
  if (values.length !== 1 || !/^[0-9]{1,16}$/.test(values[0]!)) return undefined;
  const id = Number(values[0]);
  return isMintedId(id) ? { kind: filtered.kind, id, rest: filtered.rest } : undefined;
}

/**
 * Whether a path names an object by an id below the minted range: the legacy
 * master's, whichever backend is the default.
 *
 * @example namesLegacyObject('/api/v2/builds/12/steps') // true
 */
export function namesLegacyObject(pathname: string): boolean {
  const match = OWNED_PATH.exec(pathname);
  return match !== null && !isMintedId(Number(match[2]));
}
