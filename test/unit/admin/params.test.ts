import { expect } from 'chai';
import { BadRequest } from '../../../src/admin/errors.js';
import { explainFromBody, explainFromQuery, intParam, onlyParams } from '../../../src/admin/params.js';

function badRequest(fn: () => unknown): BadRequest {
  try {
    fn();
  } catch (error) {
    expect(error).to.be.instanceOf(BadRequest);
    return error as BadRequest;
  }
  throw new Error('expected a BadRequest');
}

describe('admin/params', () => {
  it('reads an integer parameter within bounds, the fallback when absent', () => {
    expect(intParam({}, 'limit', 1, 100, 20)).to.equal(20);
    expect(intParam({ limit: '' }, 'limit', 1, 100, 20)).to.equal(20);
    expect(intParam({ limit: '7' }, 'limit', 1, 100, 20)).to.equal(7);
    for (const limit of ['0', '101', '-1', '1.5', '1e2', 'abc', ' 5', '9999999999']) {
      expect(badRequest(() => intParam({ limit }, 'limit', 1, 100, 20)).message, limit).to.match(/^query parameter "limit" must be an integer from 1 to 100/);
    }
    expect(badRequest(() => intParam({ limit: ['1', '2'] }, 'limit', 1, 100, 20)).message).to.contain('given once');
  });

  it('refuses unknown parameters, naming them', () => {
    expect(() => onlyParams({ limit: '1' }, ['limit'])).not.to.throw();
    expect(badRequest(() => onlyParams({ limt: '1' }, ['limit'])).message).to.equal('unknown query parameter "limt"; expected "limit"');
    expect(badRequest(() => onlyParams({ x: '1' }, [])).message).to.contain('expected none');
  });

  it('explainFromQuery: method, path and repeated headers', () => {
    expect(explainFromQuery({ method: 'get', path: '/api/v2/builds?limit=1', header: ['X-Job-Type: linux64-opt', 'X-Push-Id:  p1 '] })).to.deep.equal({
      method: 'GET',
      path: '/api/v2/builds?limit=1',
      headers: { 'x-job-type': 'linux64-opt', 'x-push-id': 'p1' },
    });
    expect(explainFromQuery({ method: 'POST', path: '/', header: 'X-A: b' }).headers).to.deep.equal({ 'x-a': 'b' });
    expect(badRequest(() => explainFromQuery({ method: 'GET' })).message).to.contain('needs "method" and "path"');
    expect(badRequest(() => explainFromQuery({ method: 'GE T', path: '/' })).message).to.contain('"method" must be an HTTP method');
    expect(badRequest(() => explainFromQuery({ method: 'GET', path: 'api' })).message).to.contain('"path" must be a request path');
    expect(badRequest(() => explainFromQuery({ method: 'GET', path: `/${'a'.repeat(9000)}` })).message).to.contain('at most 8192');
    expect(badRequest(() => explainFromQuery({ method: 'GET', path: '/', header: ': v' })).message).to.contain('"Name: value"');
    expect(badRequest(() => explainFromQuery({ method: 'GET', path: '/', header: 'Bad Name: v' })).message).to.contain('is not a header name');
    expect(badRequest(() => explainFromQuery({ method: 'GET', path: '/', header: '__proto__: v' })).message).to.contain('is not a header name');
  });

  it('explainFromBody: the JSON form, body as text', () => {
    const input = explainFromBody({ method: 'post', path: '/api/v2/forceschedulers/force', headers: { 'Content-Type': 'application/json' }, body: '{"a":"é"}' });
    expect(input).to.deep.include({ method: 'POST', path: '/api/v2/forceschedulers/force', headers: { 'content-type': 'application/json' } });
    expect(input.body?.equals(Buffer.from('{"a":"é"}'))).to.equal(true);
    expect(explainFromBody({ method: 'GET', path: '/' })).not.to.have.property('body');
    for (const [body, message] of [
      [null, 'expected a JSON object'],
      [[1], 'expected a JSON object'],
      ['GET /', 'expected a JSON object'],
      [{ method: 'GET', path: '/', other: 1 }, 'unknown field "other"'],
      [{ method: 1, path: '/' }, '"method" must be an HTTP method'],
      [{ method: 'GET', path: '/', headers: ['a'] }, '"headers" must be an object'],
      [{ method: 'GET', path: '/', headers: { a: 1 } }, 'must have a string value'],
      [{ method: 'GET', path: '/', body: { not: 'text' } }, '"body" must be a string'],
    ] as const) {
      expect(badRequest(() => explainFromBody(body)).message, JSON.stringify(body)).to.contain(message);
    }
    expect(badRequest(() => explainFromBody(JSON.parse('{"method":"GET","path":"/","headers":{"__proto__":"x"}}'))).message).to.contain('is not a header name');
  });
});
