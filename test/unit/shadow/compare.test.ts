import { expect } from 'chai';
import { compareResponses } from '../../../src/shadow/compare.js';

const json = (status: number, value: unknown) => ({ status, contentType: 'application/json', body: Buffer.from(JSON.stringify(value)) });

describe('proxy/compare: compareResponses', () => {
  it('matches equal JSON with ignored fields left out at any depth', () => {
    const a = json(200, { builds: [{ buildid: 1, number: 3, results: 0, started_at: 100 }], meta: { total: 1 } });
    const b = json(200, { builds: [{ buildid: 99, number: 3, results: 0, started_at: 200 }], meta: { total: 1 } });
    expect(compareResponses(a, b, new Set(['buildid', 'started_at']))).to.deep.equal({ match: true, compared: 'json', differences: [] });
  });

  it('names each differing field with both values', () => {
    const a = json(200, { builds: [{ number: 3, results: 0 }], extra: true });
    const b = json(200, { builds: [{ number: 3, results: 2 }] });
    const c = compareResponses(a, b, new Set());
    expect(c.match).to.equal(false);
    expect(c.differences).to.deep.equal([
      { path: 'builds[0].results', primary: 0, shadow: 2 },
      { path: 'extra', primary: true, shadow: undefined },
    ]);
  });

  it('compares status, then bytes for non-JSON, and only status when a body was too large', () => {
    expect(compareResponses(json(200, {}), json(500, {}), new Set()).differences[0]).to.deep.equal({ path: '(status)', primary: 200, shadow: 500 });
    const text = (s: string) => ({ status: 200, contentType: 'text/plain', body: Buffer.from(s) });
    expect(compareResponses(text('a'), text('a'), new Set())).to.include({ match: true, compared: 'bytes' });
    expect(compareResponses(text('a'), text('b'), new Set())).to.include({ match: false, compared: 'bytes' });
    expect(compareResponses({ status: 200, contentType: 'text/plain', body: undefined }, text('b'), new Set())).to.include({ match: true, compared: 'status' });
  });
});
