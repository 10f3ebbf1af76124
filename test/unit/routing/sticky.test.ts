/** Property tests of sticky splits: shares, stickiness, monotonic ramps. */
import { expect } from 'chai';
import fc from 'fast-check';
import { decide } from '../../../src/routing/decide.js';
import { pickSticky } from '../../../src/routing/table.js';
import { tableFrom } from '../../support/tables.js';

const splitRoute = (weights: Record<string, number>) => {
  const backends = Object.keys(weights);
  const yaml = `backends:\n${backends.map((b, i) => `  ${b}: { url: http://127.0.0.1:${9000 + i}${i === 0 ? ', legacy: true' : ''} }`).join('\n')}\nroutes:\n  - jobType: a\n    split: ${JSON.stringify(weights)}\n    stickyBy: [header:x-push]\n`;
  return { yaml };
};

const keys = (n: number, seed: number) => Array.from({ length: n }, (_, i) => `push-${seed}-${i}`);

describe('routing: sticky splits (weighted rendezvous hashing)', () => {
  it('gives each backend a share within 2.5 points of its weight over 8000 keys', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 100 }), fc.integer({ min: 0, max: 1000 }), (newWeight, seed) => {
        const route = tableFrom(splitRoute({ old: 100 - newWeight, fresh: newWeight }).yaml).routes[0]!;
        const sample = keys(8000, seed);
        const onNew = sample.filter((k) => pickSticky(route, k) === 'fresh').length / sample.length;
        return Math.abs(onNew - newWeight / 100) <= 0.025;
      }),
      { numRuns: 25 },
    );
  });

  it('splits three ways by weight too', () => {
    const route = tableFrom(splitRoute({ a: 50, b: 30, c: 20 }).yaml).routes[0]!;
    const counts: Record<string, number> = { a: 0, b: 0, c: 0 };
    for (const k of keys(10_000, 7)) counts[pickSticky(route, k)]!++;
    expect(counts.a! / 10_000).to.be.closeTo(0.5, 0.02);
    expect(counts.b! / 10_000).to.be.closeTo(0.3, 0.02);
    expect(counts.c! / 10_000).to.be.closeTo(0.2, 0.02);
  });

  it('sends the same key to the same backend every time, in a freshly built table too (no shared state)', () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1, maxLength: 80 }), fc.integer({ min: 1, max: 99 }), (key, w) => {
        const yaml = splitRoute({ old: 100 - w, fresh: w }).yaml;
        const first = pickSticky(tableFrom(yaml).routes[0]!, key);
        return pickSticky(tableFrom(yaml).routes[0]!, key) === first && pickSticky(tableFrom(yaml).routes[0]!, key) === first;
      }),
    );
  });

  it('moves keys only from old to new when the new weight rises, never back', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 99 }), fc.integer({ min: 1, max: 100 }), fc.integer(), (from, step, seed) => {
        const to = Math.min(100, from + step);
        const before = tableFrom(splitRoute({ old: 100 - from, fresh: from }).yaml).routes[0]!;
        const after = tableFrom(splitRoute({ old: 100 - to, fresh: to }).yaml).routes[0]!;
        return keys(500, seed).every((k) => {
          const was = pickSticky(before, k);
          const now = pickSticky(after, k);
          return !(was === 'fresh' && now === 'old');
        });
      }),
      { numRuns: 60 },
    );
  });

  it('with three backends, raising one weight moves keys only to it', () => {
    const before = tableFrom(splitRoute({ a: 60, b: 30, c: 10 }).yaml).routes[0]!;
    const after = tableFrom(splitRoute({ a: 60, b: 30, c: 40 }).yaml).routes[0]!;
    for (const k of keys(5000, 3)) {
      const was = pickSticky(before, k);
      const now = pickSticky(after, k);
      if (was !== now) expect(now, k).to.equal('c');
    }
  });

  it('takes the key from the first source present: header, query parameter, or JSON-RPC param', () => {
    const t = tableFrom(`backends:\n  buildbot: { url: http://127.0.0.1:1, legacy: true }\n  taskservice: { url: http://127.0.0.1:2 }\nroutes:\n  - jobType: a\n    split: { taskservice: 50, buildbot: 50 }\n    stickyBy: [header:X-Push, query:rev, param:revision]\n`);
    const lookup = (values: Record<string, string>) => (s: { from: string; name: string }) => values[`${s.from}:${s.name}`];
    const byParam = decide(t, { jobTypes: ['a'], sticky: lookup({ 'param:revision': 'abc' }) });
    expect(byParam.sticky).to.deep.equal({ source: 'param:revision', key: 'abc' });
    const byHeader = decide(t, { jobTypes: ['a'], sticky: lookup({ 'header:X-Push': 'p1', 'param:revision': 'abc' }) });
    expect(byHeader.sticky).to.deep.equal({ source: 'header:X-Push', key: 'p1' });
    expect(decide(t, { jobTypes: ['a'], sticky: lookup({}) }).sticky).to.equal(undefined);
    // Same key, same answer, whatever the random draw.
    const draws = [0.01, 0.5, 0.99].map((d) => decide(t, { jobTypes: ['a'], sticky: lookup({ 'query:rev': 'r9' }) }, d).backend.name);
    expect(new Set(draws).size).to.equal(1);
  });
});
