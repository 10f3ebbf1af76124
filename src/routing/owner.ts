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
