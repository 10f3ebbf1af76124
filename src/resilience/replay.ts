/**
 * What happens to a request after its exchange with a backend failed: sent to
 * the route's fallback, sent again to the same backend, or answered with the
 * error. Pure: a function of the failure, the method, the route's settings
 * and the attempt, whatever engine carried the request.
 *
 * The rule that keeps builds from running twice: a request that may have
 * reached its backend is never sent anywhere else, and is sent again only if
 * its method is safe (GET, HEAD, OPTIONS) and its route allows retries.
 */
import type { UpstreamFailure } from '../upstream/failure.js';

export type ReplayAction = 'fallback' | 'retry' | 'fail';

export interface ReplayInput {
  failure: Pick<UpstreamFailure, 'kind' | 'mayHaveReachedBackend'>;
  method: string;
  /** Part of the answer already went to the client: nothing can be sent in its place. */
  responseStarted: boolean;
  /** The body is held whole (or there is none), so it can be sent again; a streamed body is gone once read. */
  bodyReplayable: boolean;
  /** The route's fallback exists, is not the backend that just failed, and is available. */
  fallbackAvailable: boolean;
  /** The route's `retries` (0 without a route). */
  retries: number;
  /** Attempts already made before this one failed: 0 after the first. */
  attempt: number;
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** GET, HEAD and OPTIONS change nothing on a Buildbot master; every other method may (force, stop, rebuild). */
export function isSafeMethod(method: string): boolean {
  return SAFE_METHODS.has(method);
}

export function replayAfterFailure(input: ReplayInput): ReplayAction {
  if (input.responseStarted || input.failure.kind === 'client-aborted' || !input.bodyReplayable) return 'fail';
  // SAFETY: only a request that provably never arrived goes elsewhere.
  if (!input.failure.mayHaveReachedBackend && input.fallbackAvailable) return 'fallback';
  if (isSafeMethod(input.method) && input.attempt < input.retries) return 'retry';
  return 'fail';
}
