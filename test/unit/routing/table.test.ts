import { expect } from 'chai';
import fc from 'fast-check';
import { MATCH_CACHE_LIMIT, matchRoute, pickTarget } from '../../../src/routing/table.js';
import { tableWithRoutes } from '../../support/tables.js';

describe('routing/table: matchRoute', () => {
  const table = tableWithRoutes([
    ['linux64-*', 'taskservice'],
    ['/^android-api-1[56]-/', { taskservice: 25, buildbot: 75 }],
    ['win32-debug', 'buildbot'],
    ['linux64-asan', 'buildbot'], // shadowed by the glob above it
    ['/^WIN/i', 'taskservice'],
  ]);

  it('matches exact names, globs and regular expressions', () => {
    expect(matchRoute(table, 'win32-debug')?.pattern).to.equal('win32-debug');
    expect(matchRoute(table, 'linux64-opt')?.pattern).to.equal('linux64-*');
    expect(matchRoute(table, 'android-api-16-test')?.pattern).to.equal('/^android-api-1[56]-/');
    expect(matchRoute(table, 'android-api-17-test')).to.equal(undefined);
    expect(matchRoute(table, 'win64-opt')?.pattern).to.equal('/^WIN/i');
  });

  it('lets the first rule in file order win, also over a later exact name', () => {
    expect(matchRoute(table, 'linux64-asan')?.pattern).to.equal('linux64-*');
  });

  it('lets an exact name win over a pattern placed after it', () => {
    const t = tableWithRoutes([
      ['mac-opt', 'taskservice'],
      ['mac-*', 'buildbot'],
    ]);
    expect(matchRoute(t, 'mac-opt')?.pattern).to.equal('mac-opt');
    expect(matchRoute(t, 'mac-debug')?.pattern).to.equal('mac-*');
  });

  it('gives the same answer from its memo as from a fresh scan, and keeps the memo bounded', () => {
    for (let i = 0; i < MATCH_CACHE_LIMIT + 50; i++) matchRoute(table, `made-up-${i}`);
    expect(table.matchCache.size).to.be.at.most(MATCH_CACHE_LIMIT);
    expect(matchRoute(table, 'linux64-opt')?.pattern).to.equal('linux64-*');
    expect(matchRoute(table, 'linux64-opt')?.pattern).to.equal('linux64-*');
  });

  it('looks exact names up in a map, whatever their number', () => {
    const many = tableWithRoutes(Array.from({ length: 5000 }, (_, i) => [`builder-${i}`, i % 2 ? 'taskservice' : 'buildbot'] as [string, string]));
    expect(many.exactRoutes.size).to.equal(5000);
    expect(many.patternRoutes).to.have.length(0);
    expect(matchRoute(many, 'builder-4999')?.targets[0]?.backend).to.equal('taskservice');
  });
});

describe('routing/table: pickTarget', () => {
  const table = tableWithRoutes([['a', { taskservice: 25, buildbot: 75 }]]);
  const route = table.routes[0]!;

  it('maps the draw onto the weights in order', () => {
    expect(pickTarget(route, 0)).to.equal('taskservice');
    expect(pickTarget(route, 0.2499)).to.equal('taskservice');
    expect(pickTarget(route, 0.25)).to.equal('buildbot');
    expect(pickTarget(route, 0.9999)).to.equal('buildbot');
  });

  it('gives shares close to the weights over many draws', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 99 }), (weight) => {
        const r = tableWithRoutes([['a', { taskservice: weight, buildbot: 100 - weight }]]).routes[0]!;
        let hits = 0;
        const n = 2000;
        for (let i = 0; i < n; i++) if (pickTarget(r, (i + 0.5) / n) === 'taskservice') hits++;
        return Math.abs(hits / n - weight / 100) <= 1 / n + 1e-9;
      }),
      { numRuns: 50 },
    );
  });
});
