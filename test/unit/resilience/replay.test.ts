import { expect } from 'chai';
import fc from 'fast-check';
import { replayAfterFailure, type ReplayAction, type ReplayInput } from '../../../src/resilience/replay.js';
import type { UpstreamErrorKind } from '../../../src/upstream/failure.js';

const NEVER_REACHED = { kind: 'refused', mayHaveReachedBackend: false } as const;
const MAY_HAVE_REACHED = { kind: 'reset', mayHaveReachedBackend: true } as const;

const base: ReplayInput = { failure: NEVER_REACHED, method: 'GET', responseStarted: false, bodyReplayable: true, fallbackAvailable: true, retries: 2, attempt: 0 };

describe('resilience/replay: replayAfterFailure', () => {
  const table: Array<[string, Partial<ReplayInput>, ReplayAction]> = [
    ['never reached, fallback there: fallback (GET)', {}, 'fallback'],
    ['never reached, fallback there: fallback (force POST too)', { method: 'POST' }, 'fallback'],
    ['never reached, no fallback, GET with retries: retry', { fallbackAvailable: false }, 'retry'],
    ['never reached, no fallback, POST: fail (retries are for safe methods only)', { method: 'POST', fallbackAvailable: false }, 'fail'],
    ['may have reached, GET with retries: retry', { failure: MAY_HAVE_REACHED }, 'retry'],
    ['may have reached, HEAD with retries: retry', { failure: MAY_HAVE_REACHED, method: 'HEAD' }, 'retry'],
    ['may have reached, OPTIONS with retries: retry', { failure: MAY_HAVE_REACHED, method: 'OPTIONS' }, 'retry'],
    ['may have reached, fallback there, POST: fail, never sent elsewhere', { failure: MAY_HAVE_REACHED, method: 'POST' }, 'fail'],
    ['may have reached, DELETE: fail', { failure: MAY_HAVE_REACHED, method: 'DELETE' }, 'fail'],
    ['may have reached, PUT: fail', { failure: MAY_HAVE_REACHED, method: 'PUT' }, 'fail'],
    ['may have reached, GET, retries used up: fail', { failure: MAY_HAVE_REACHED, attempt: 2 }, 'fail'],
    ['may have reached, GET, route without retries: fail', { failure: MAY_HAVE_REACHED, retries: 0 }, 'fail'],
    ['response already started: fail', { responseStarted: true }, 'fail'],
    ['streamed body, never reached: fail (the body is gone)', { bodyReplayable: false }, 'fail'],
    ['client gone: fail', { failure: { kind: 'client-aborted', mayHaveReachedBackend: true } }, 'fail'],
    ['a timeout on a GET with retries: retry', { failure: { kind: 'timeout', mayHaveReachedBackend: true } }, 'retry'],
    ['a bad answer to a POST: fail', { failure: { kind: 'bad-response', mayHaveReachedBackend: true }, method: 'POST' }, 'fail'],
  ];
  for (const [name, change, expected] of table) {
    it(name, () => expect(replayAfterFailure({ ...base, ...change })).to.equal(expected));
  }

  it('never sends a request that may have reached its backend anywhere else, nor an unsafe one again', () => {
    const kinds: UpstreamErrorKind[] = ['refused', 'dns', 'connect-timeout', 'timeout', 'reset', 'bad-response', 'client-aborted', 'other'];
    fc.assert(
      fc.property(
        fc.record({
          failure: fc.record({ kind: fc.constantFrom(...kinds), mayHaveReachedBackend: fc.boolean() }),
          method: fc.constantFrom('GET', 'HEAD', 'OPTIONS', 'POST', 'PUT', 'PATCH', 'DELETE', 'QUERY'),
          responseStarted: fc.boolean(),
          bodyReplayable: fc.boolean(),
          fallbackAvailable: fc.boolean(),
          retries: fc.integer({ min: 0, max: 5 }),
          attempt: fc.integer({ min: 0, max: 6 }),
        }),
        (input) => {
          const action = replayAfterFailure(input);
          if (input.failure.mayHaveReachedBackend) expect(action).to.not.equal('fallback');
          if (action === 'retry') {
            expect(['GET', 'HEAD', 'OPTIONS']).to.include(input.method);
            expect(input.attempt).to.be.below(input.retries);
          }
          if (input.responseStarted || !input.bodyReplayable) expect(action).to.equal('fail');
        },
      ),
    );
  });
});
