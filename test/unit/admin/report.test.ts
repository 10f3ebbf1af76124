import { expect } from 'chai';
import { alignColumns, buildPlan, formatPlan, formatRoutes, ruleChanges } from '../../../src/admin/report.js';
import { routesView } from '../../../src/admin/views.js';
import { tableFrom, TWO_BACKENDS } from '../../support/tables.js';

const routes = (android: string, extra = '') => `${TWO_BACKENDS}${extra}routes:
  - jobType: linux64-*
    backend: taskservice
  - jobType: android-api-16-test
    split: ${android}
  - jobType: win32-debug
    backend: buildbot
`;
const CURRENT = tableFrom(routes('{ taskservice: 25, buildbot: 75 }'));
const HALF = tableFrom(routes('{ taskservice: 50, buildbot: 50 }'));
// 100 sampled requests: 40 of them on the job type whose split changes.
const TRAFFIC = new Map([
  ['android-api-16-test', 40],
  ['linux64-opt', 30],
  ['win32-debug', 20],
  ['none', 10],
]);

/** `traffic` null: offline (two files). */
function plan(next = HALF, traffic: Map<string, number> | null = TRAFFIC, extra: string[] = []) {
  return buildPlan({
    mode: traffic ? 'admin' : 'files',
    current: CURRENT,
    next,
    currentSource: 'current.yaml',
    nextSource: 'new.yaml',
    extraJobTypes: extra,
    considered: 'test',
    ...(traffic ? { traffic, trafficWindow: '1h', nonJobTypeLabels: new Set(['none']) } : {}),
  });
}

describe('admin/report', () => {
  describe('buildPlan', () => {
    it('25/75 -> 50/50 on a job type with 40 of 100 requests: it moves 25% of its requests, 10% of all traffic', () => {
      const p = plan();
      expect(p.changes).to.deep.equal([
        {
          jobType: 'android-api-16-test',
          before: { taskservice: 0.25, buildbot: 0.75 },
          after: { taskservice: 0.5, buildbot: 0.5 },
          ruleBefore: 'android-api-16-test',
          ruleAfter: 'android-api-16-test',
          moved: 0.25,
          requests: 40,
          shareOfAllRequests: 0.1,
        },
      ]);
      expect(p).to.deep.include({ movedShareOfTraffic: 0.1, movedRequests: 10, sample: { window: '1h', requests: 100 }, noJobType: null, changed: true });
      expect(p.rules).to.deep.equal([
        {
          jobType: 'android-api-16-test',
          change: 'changed',
          indexBefore: 1,
          indexAfter: 1,
          before: 'taskservice 25%, buildbot 75%',
          after: 'taskservice 50%, buildbot 50%',
        },
      ]);
      const text = formatPlan(p);
      expect(text).to.match(/android-api-16-test\s+taskservice 25%, buildbot 75%\s+taskservice 50%, buildbot 50%\s+android-api-16-test -> \(same\)\s+25\.0%\s+40 \(moves 10\.0% of all\)/);
      expect(text).to.contain('traffic: 100 requests in the last hour; 10.0% of them (10 requests) would change backend');
      expect(text).to.contain('result: changes (exit 3)');
    });

    it('counts requests naming no job type when the default backend changes', () => {
      const p = plan(tableFrom(routes('{ taskservice: 50, buildbot: 50 }', 'default: taskservice\n')));
      expect(p.noJobType).to.deep.equal({ requests: 10, before: 'buildbot', after: 'taskservice', moved: 1 });
      expect(p.notes).to.deep.equal(['default: buildbot -> taskservice']);
      // 10 of android-api-16-test's 40, and all 10 naming none: 20 of 100.
      expect([p.movedShareOfTraffic, p.movedRequests]).to.deep.equal([0.2, 20]);
      expect(p.changes.map((c) => c.jobType)).to.deep.equal(['android-api-16-test']);
    });

    it('moves a job type from one rule to another, whole', () => {
      const next = tableFrom(`${TWO_BACKENDS}routes:\n  - jobType: linux64-*\n    backend: taskservice\n  - jobType: android-api-16-test\n    split: { taskservice: 25, buildbot: 75 }\n  - jobType: win32-*\n    backend: taskservice\n`);
      const p = plan(next);
      expect(p.changes).to.have.length(1);
      expect(p.changes[0]).to.deep.include({ jobType: 'win32-debug', ruleBefore: 'win32-debug', ruleAfter: 'win32-*', moved: 1, requests: 20, shareOfAllRequests: 0.2 });
      expect(p.rules.map((r) => [r.change, r.jobType])).to.deep.equal([
        ['removed', 'win32-debug'],
        ['added', 'win32-*'],
      ]);
    });

    it('offline: no sample, only the exact names of both files and --job-type; says globs cannot be enumerated', () => {
      const p = plan(HALF, null, ['linux64-asan']);
      expect(p).to.deep.include({ sample: null, movedShareOfTraffic: null, movedRequests: null, jobTypesConsidered: 3, patternRules: ['linux64-*'] });
      expect(p.changes[0]).to.deep.include({ jobType: 'android-api-16-test', requests: 0, shareOfAllRequests: null });
      const text = formatPlan(p);
      expect(text).to.contain('traffic: none (two files, no running proxy)');
      expect(text).to.contain('job types matched only by glob or regex rules (linux64-*) cannot be enumerated: only those named with --job-type NAME are considered');
      expect(text).to.match(/android-api-16-test .* 25\.0%\s+n\/a/);
    });

    it('no change: the same routing written differently (a comment, the split in another order, weights 3:1 for 75:25) gives changed=false', () => {
      const same = tableFrom(`# a comment\n${routes('{ buildbot: 3, taskservice: 1 }')}`);
      const p = plan(same);
      expect(p).to.deep.include({ changes: [], rules: [], notes: [], changed: false, movedShareOfTraffic: 0 });
      expect(formatPlan(p)).to.contain('result: no change (exit 0)');
    });
  });

  it('ruleChanges: a reorder is a change (first match wins)', () => {
    const a = tableFrom(`${TWO_BACKENDS}routes:\n  - jobType: a-*\n    backend: taskservice\n  - jobType: a-b\n    backend: buildbot\n`);
    const b = tableFrom(`${TWO_BACKENDS}routes:\n  - jobType: a-b\n    backend: buildbot\n  - jobType: a-*\n    backend: taskservice\n`);
    expect(ruleChanges(a, b).map((r) => [r.change, r.jobType, r.indexBefore, r.indexAfter])).to.deep.equal([
      ['reordered', 'a-b', 1, 0],
      ['reordered', 'a-*', 0, 1],
    ]);
    expect(ruleChanges(a, a)).to.deep.equal([]);
  });

  it('formatRoutes: an aligned table, then default and backends', () => {
    const table = tableFrom(`${TWO_BACKENDS}routes:
  - jobType: linux64-*
    backend: taskservice
  - jobType: /^android-api-1[56]-/
    split: { taskservice: 25, buildbot: 75 }
    stickyBy: [header:X-Push-Id]
    fallback: buildbot
  - jobType: linux64-opt
    backend: buildbot
    shadow: { backend: taskservice, percent: 20 }
    retries: 2
`);
    const lines = formatRoutes(routesView(table)).split('\n');
    expect(lines.slice(2)).to.deep.equal([
      '  #  JOB TYPE               KIND   BACKEND / SPLIT                STICKY            SHADOW           FALLBACK  RETRIES',
      '  0  linux64-*              glob   taskservice                    -                 -                -         0',
      '  1  /^android-api-1[56]-/  regex  taskservice 25%, buildbot 75%  header:X-Push-Id  -                buildbot  0',
      '  2  linux64-opt            exact  buildbot                       -                 taskservice 20%  -         2',
      '  note: routes[2] linux64-opt never applies: routes[0] matches it first',
      '',
      'default: buildbot (job types no rule matches, and requests that name none)',
      'backends:',
      '  buildbot     http://127.0.0.1:8011  legacy, default',
      '  taskservice  http://127.0.0.1:8012',
    ]);
    expect(lines[0]).to.equal(`test.yaml  hash ${table.source.hash.slice(0, 12)}  loaded ${table.source.loadedAt.toISOString()}`);
  });

  it('alignColumns pads every column but the last', () => {
    expect(alignColumns([['a', 'bb', 'c'], ['ccc', 'd', '']], '> ')).to.deep.equal(['> a    bb  c', '> ccc  d']);
  });
});
