import { expect } from 'chai';
import { StranglerError } from '../../../src/errors.js';
import { classifyUpstreamError } from '../../../src/upstream/failure.js';

const withCode = (code: string, extra: object = {}) => Object.assign(new Error(code), { code }, extra);

describe('proxy/upstream-errors: classifyUpstreamError', () => {
  it('marks only failures before any byte was sent as never having reached the backend', () => {
    const cases: Array<[unknown, string, string, boolean]> = [
      [withCode('ECONNREFUSED'), 'refused', 'BACKEND_REFUSED', false],
      [withCode('ENOTFOUND'), 'dns', 'BACKEND_DNS', false],
      [withCode('UND_ERR_CONNECT_TIMEOUT'), 'connect-timeout', 'BACKEND_CONNECT_TIMEOUT', false],
      [withCode('UND_ERR_HEADERS_TIMEOUT'), 'timeout', 'BACKEND_TIMEOUT', true],
      [withCode('UND_ERR_BODY_TIMEOUT'), 'timeout', 'BACKEND_TIMEOUT', true],
      [withCode('UND_ERR_SOCKET'), 'reset', 'BACKEND_RESET', true],
      [withCode('ECONNRESET'), 'reset', 'BACKEND_RESET', true],
      [withCode('UND_ERR_ABORTED'), 'client-aborted', 'BAD_REQUEST', true],
      [new StranglerError('BACKEND_CONNECT_TIMEOUT', 'no connection'), 'connect-timeout', 'BACKEND_CONNECT_TIMEOUT', false],
      [new StranglerError('BACKEND_TIMEOUT', 'no answer'), 'timeout', 'BACKEND_TIMEOUT', true],
      [new StranglerError('BACKEND_RESET', 'closed'), 'reset', 'BACKEND_RESET', true],
      [new StranglerError('BACKEND_ERROR', 'unreadable'), 'other', 'BACKEND_ERROR', true],
      [new Error('something else'), 'other', 'BACKEND_ERROR', true],
      ['not even an error', 'other', 'BACKEND_ERROR', true],
    ];
    for (const [error, kind, code, reached] of cases) {
      expect(classifyUpstreamError(error), String(error)).to.include({ kind, code, mayHaveReachedBackend: reached });
    }
  });

  it('looks through causes and happy-eyeballs AggregateErrors', () => {
    const aggregate = Object.assign(new AggregateError([withCode('ECONNREFUSED'), withCode('ECONNREFUSED')], 'all failed'));
    expect(classifyUpstreamError(aggregate).kind).to.equal('refused');
    expect(classifyUpstreamError(new Error('wrapped', { cause: withCode('EAI_AGAIN') })).kind).to.equal('dns');
  });
});
