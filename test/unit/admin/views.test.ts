import { expect } from 'chai';
import { backendsView, historyView, progressView, routesView, type RowsByWindow } from '../../../src/admin/views.js';
import type { TrafficRow } from '../../../src/metrics/traffic.js';
import { tableFrom, TWO_BACKENDS } from '../../support/tables.js';

const TABLE = tableFrom(`${TWO_BACKENDS}routes:
  - jobType: linux64-*
    backend: taskservice
  - jobType: linux64-asan
    backend: buildbot
  - jobType: android-api-16-test
    split: { taskservice: 1, buildbot: 3 }
  - jobType: win32-debug
    backend: buildbot
`);

function row(jobType: string, rule: string, backend: string, requests: number, errors = 0, p = 0.005): TrafficRow {
  return { jobType, rule, backend, requests, errors, p50: p, p95: p * 2, p99: p * 4 };
}

describe('admin/views', () => {
  describe('routesView', () => {
    it('lists routes in order with targets, weights and shares, and marks an exact rule an earlier pattern overrides', () => {
      const view = routesView(TABLE);
      expect(view.routes.map((r) => [r.index, r.jobType, r.kind, r.overriddenBy])).to.deep.equal([
        [0, 'linux64-*', 'glob', null],
        [1, 'linux64-asan', 'exact', 0],
        [2, 'android-api-16-test', 'exact', null],
        [3, 'win32-debug', 'exact', null],
      ]);
      expect(view.routes[2]!.targets).to.deep.equal([
        { backend: 'taskservice', weight: 1, share: 0.25 },
        { backend: 'buildbot', weight: 3, share: 0.75 },
      ]);
      expect(view).to.include({ file: 'test.yaml', legacy: 'buildbot', default: 'buildbot', hash: TABLE.source.hash, text: TABLE.source.text });
    });

    it('tells each backend the job types and rules it owns, fully or by share, by the first match', () => {
      const [buildbot, taskservice] = routesView(TABLE, ['linux64-opt', 'mac-opt']).backends;
      // linux64-asan's own rule never applies: linux64-* takes it to the task service first.
      expect(taskservice!.owns.jobTypes).to.deep.equal([
        { jobType: 'android-api-16-test', share: 0.25, rule: 'android-api-16-test' },
        { jobType: 'linux64-asan', share: 1, rule: 'linux64-*' },
        { jobType: 'linux64-opt', share: 1, rule: 'linux64-*' },
      ]);
      expect(buildbot!.owns.jobTypes).to.deep.equal([
        { jobType: 'android-api-16-test', share: 0.75, rule: 'android-api-16-test' },
        { jobType: 'mac-opt', share: 1, rule: null },
        { jobType: 'win32-debug', share: 1, rule: 'win32-debug' },
      ]);
      expect(buildbot!.owns.rules.map((r) => r.jobType)).to.deep.equal(['android-api-16-test', 'win32-debug']); // not the overridden linux64-asan
      expect([buildbot!.owns.unmatched, taskservice!.owns.unmatched]).to.deep.equal([true, false]);
    });
  });

  describe('progressView', () => {
    const rows: TrafficRow[] = [
      row('linux64-opt', 'linux64-*', 'taskservice', 30, 3),
      row('android-api-16-test', 'android-api-16-test', 'taskservice', 10),
      row('android-api-16-test', 'android-api-16-test', 'buildbot', 30, 0, 0.01),
      row('android-api-16-test', 'old-rule', 'buildbot', 5, 0, 0.1), // before a reload: a rule gone from the file
      row('none', '(default)', 'buildbot', 20),
      row('win32-debug', 'win32-debug', 'gone', 5, 5), // a backend gone from the file
    ];
    const byWindow: RowsByWindow = { '5m': rows.slice(0, 2), '1h': rows, all: rows };
    const known = ['android-api-16-test', 'linux64-opt', 'mac-opt', 'win32-debug'];
    const view = progressView(TABLE, known, byWindow, new Date(0), new Date(1000));

    it('counts known job types per backend by share: 1 + 0.25 of 4 on the new side', () => {
      expect(view.summary).to.deep.include({ knownJobTypes: 4, jobTypesOnNew: 1.25, jobTypeShare: 0.3125 });
      const backend = (name: string) => view.backends.find((b) => b.name === name)!;
      expect(backend('taskservice').jobTypes).to.deep.equal({ count: 1.25, share: 0.3125 });
      expect(backend('buildbot').jobTypes).to.deep.equal({ count: 2.75, share: 0.6875 });
    });

    it('gives requests per backend and window with their shares; the new side is every backend but the legacy one', () => {
      expect(view.summary.requests['5m']).to.deep.equal({ total: 40, onNew: 40, share: 1 });
      // all: 100 requests; taskservice 40, buildbot 55, gone 5 (not legacy, so "new").
      expect(view.summary.requests.all).to.deep.equal({ total: 100, onNew: 45, share: 0.45 });
      const gone = view.backends.find((b) => b.name === 'gone')!;
      expect(gone).to.deep.include({ inTable: false, legacy: false });
      expect(gone.requests.all).to.deep.equal({ requests: 5, errors: 5, errorRatio: 1, share: 0.05 });
      expect(view.backends.find((b) => b.name === 'taskservice')!.requests.all).to.deep.equal({ requests: 40, errors: 3, errorRatio: 0.075, share: 0.4 });
    });

    it('gives each route (and default, and rules gone from the file) its job types and traffic by backend', () => {
      expect(view.routes.map((r) => [r.rule, r.index, r.inTable])).to.deep.equal([
        ['linux64-*', 0, true],
        ['linux64-asan', 1, true],
        ['android-api-16-test', 2, true],
        ['win32-debug', 3, true],
        ['(default)', null, true],
        ['old-rule', null, false],
      ]);
      const android = view.routes[2]!;
      expect(android.jobTypes).to.deep.equal({ count: 1, byBackend: { taskservice: 0.25, buildbot: 0.75 } });
      expect(android.requests.all).to.deep.equal({
        total: 40,
        byBackend: { taskservice: { requests: 10, errors: 0, errorRatio: 0, share: 0.25 }, buildbot: { requests: 30, errors: 0, errorRatio: 0, share: 0.75 } },
      });
      expect(view.routes[4]!.jobTypes).to.deep.equal({ count: 1, byBackend: { buildbot: 1 } }); // mac-opt
    });

    it('lists job types busiest first, traffic labels that are not job types marked, latency merged as an upper bound', () => {
      expect(view.jobTypes.map((j) => [j.jobType, j.label, j.known])).to.deep.equal([
        ['android-api-16-test', 'job-type', true],
        ['linux64-opt', 'job-type', true],
        ['none', 'none', false],
        ['win32-debug', 'job-type', true],
        ['mac-opt', 'job-type', true],
      ]);
      const android = view.jobTypes[0]!;
      expect(android.shares).to.deep.equal({ taskservice: 0.25, buildbot: 0.75 });
      // Two rows for buildbot (two rules): counts add up; quantiles cannot, the larger is kept.
      expect(android.requests.all.byBackend.buildbot).to.deep.equal({ requests: 35, errors: 0, errorRatio: 0, p50: 0.1, p95: 0.2, p99: 0.4 });
      expect(view.jobTypes.find((j) => j.jobType === 'mac-opt')!.requests['5m']).to.deep.equal({ requests: 0, errors: 0, errorRatio: null, byBackend: {} });
      expect(view.jobTypes.find((j) => j.jobType === 'none')!.shares).to.deep.equal({ buildbot: 1 });
    });

    it('says 0, not NaN, when nothing is known and nothing was served', () => {
      const empty = progressView(TABLE, [], { '5m': [], '1h': [], all: [] }, new Date(0), new Date(0));
      expect(empty.summary).to.deep.equal({ knownJobTypes: 0, jobTypesOnNew: 0, jobTypeShare: 0, requests: { '5m': { total: 0, onNew: 0, share: 0 }, '1h': { total: 0, onNew: 0, share: 0 }, all: { total: 0, onNew: 0, share: 0 } } });
      expect(JSON.stringify(empty)).not.to.contain('NaN');
    });
  });

  it('backendsView: the error ratio of the last 5 minutes per backend', () => {
    const status = { url: 'http://x', legacy: false, isDefault: false, up: true, lastProbeAt: null, lastProbeError: null, circuit: 'closed' as const, inFlight: 2 };
    const view = backendsView([{ ...status, name: 'taskservice' }, { ...status, name: 'idle', up: null }], [row('a', 'a', 'taskservice', 8, 2), row('b', 'b', 'taskservice', 2, 0)]);
    expect(view[0]).to.deep.include({ name: 'taskservice', up: true, inFlight: 2, default: false, recent: { window: '5m', requests: 10, errors: 2, errorRatio: 0.2 } });
    expect(view[1]!.recent).to.deep.equal({ window: '5m', requests: 0, errors: 0, errorRatio: null });
  });

  it('historyView: the newest N', () => {
    const v = (hash: string) => ({ at: '', trigger: 'admin' as const, result: 'success' as const, hash, error: null, moved: [], movedShareOfLastHour: 0 });
    expect(historyView([v('c'), v('b'), v('a')], 2)).to.deep.equal({ versions: [v('c'), v('b')], total: 3 });
  });
});
