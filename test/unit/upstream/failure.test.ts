import { expect } from 'chai';
import { classifyUpstreamError } from '../../../src/upstream/failure.js';

const withCode = (code: string, extra: object = {}) => Object.assign(new Error(code), { code }, extra);

describe('upstream/failure: classifyUpstreamError', () => {
  it('marks only failures before any byte was sent as never having reached the backend', () => {
    const cases: Array<[unknown, string, string, boolean]> = [
      [withCode('ECONNREFUSED'), 'refused', 'BACKEND_REFUSED', false],
      [withCode('ENOTFOUND'), 'dns', 'BACKEND_DNS', false],
      [withCode('UND_ERR_CONNECT_TIMEOUT'), 'connect-timeout', 'BACKEND_CONNECT_TIMEOUT', false],
      [withCode('UND_ERR_HEADERS_TIMEOUT'), 'timeout', 'BACKEND_TIMEOUT', true],
      [withCode('UND_ERR_BODY_TIMEOUT'), 'timeout', 'BACKEND_TIMEOUT', true],
      [withCode('UND_ERR_SOCKET'), 'reset', 'BACKEND_RESET', true],
      [withCode('ECONNRESET'), 'reset', 'BACKEND_RESET', true],
      [withCode('HPE_INVALID_STATUS'), 'bad-response', 'BACKEND_BAD_RESPONSE', true],
      [withCode('UND_ERR_RES_CONTENT_LENGTH_MISMATCH'), 'bad-response', 'BACKEND_BAD_RESPONSE', true],
      [withCode('EBADANSWER'), 'bad-response', 'BACKEND_BAD_RESPONSE', true],
      [withCode('EUPSTREAMTIMEOUT'), 'timeout', 'BACKEND_TIMEOUT', true],
      [withCode('ECLIENTABORTED'), 'client-aborted', 'BAD_REQUEST', true],
      [new Error('something else'), 'other', 'BACKEND_ERROR', true],
      ['not even an error', 'other', 'BACKEND_ERROR', true],
    ];
    for (const [error, kind, code, reached] of cases) {
      expect(classifyUpstreamError(error), String(error)).to.include({ kind, code, mayHaveReachedBackend: reached });
    }
  });

  it('says nothing reached the backend when the engine never began writing the request, whatever the error', () => {
    for (const code of ['UND_ERR_SOCKET', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_INVALID_ARG', 'HPE_INVALID_STATUS', 'ECONNREFUSED']) {
      expect(classifyUpstreamError(withCode(code), false).mayHaveReachedBackend, code).to.equal(false);
    }
  });

  it('looks through causes and happy-eyeballs AggregateErrors', () => {
    const aggregate = Object.assign(new AggregateError([withCode('ECONNREFUSED'), withCode('ECONNREFUSED')], 'all failed'));
    expect(classifyUpstreamError(aggregate).kind).to.equal('refused');
    expect(classifyUpstreamError(new Error('wrapped', { cause: withCode('EAI_AGAIN') })).kind).to.equal('dns');
  });
});
