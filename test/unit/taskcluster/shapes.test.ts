/**
 * Queue work in Buildbot 3.7's shapes: exact objects for the common cases,
 * the key sets a real 3.7 master sends (captured from one; the e2e suite
 * buildbot-shapes checks them against a live master), and properties over
 * every run sequence the queue can produce.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import { MINTED_ID_BASE, MINTED_ID_LIMIT } from '../../../src/store/store.js';
import type { QueueRun, QueueTaskStatus, ReasonCreated, ReasonResolved } from '../../../src/taskcluster/queue-types.js';
import { CANCELLED, EXCEPTION, FAILURE, RETRY, SUCCESS, isResultCode } from '../../../src/taskcluster/results.js';
import {
  SOURCESTAMPS_PER_BUILDSET,
  buildOf,
  buildrequestOf,
  buildsOf,
  buildsetOf,
  logOf,
  parseStoredStatus,
  runsThatAreBuilds,
  sourcestampOfSsid,
  ssidOf,
  stepOf,
} from '../../../src/taskcluster/shapes.js';
import { BRID, BSID, BUILDID, buildRecord, buildset, pending, resolved, running, S0, statusOf, task } from '../../support/queue-work.js';

// Key sets of a real Buildbot 3.7.0 master's answers (GET /api/v2/buildrequests, /builds, /buildsets, /builds/1/steps, /logs/1).
const REAL_KEYS = {
  buildrequest: ['builderid', 'buildrequestid', 'buildsetid', 'claimed', 'claimed_at', 'claimed_by_masterid', 'complete', 'complete_at', 'priority', 'properties', 'results', 'submitted_at', 'waited_for'],
  build: ['builderid', 'buildid', 'buildrequestid', 'complete', 'complete_at', 'masterid', 'number', 'properties', 'results', 'started_at', 'state_string', 'workerid'],
  buildset: ['bsid', 'complete', 'complete_at', 'external_idstring', 'parent_buildid', 'parent_relationship', 'reason', 'results', 'sourcestamps', 'submitted_at'],
  sourcestamp: ['branch', 'codebase', 'created_at', 'patch', 'project', 'repository', 'revision', 'ssid'],
  step: ['buildid', 'complete', 'complete_at', 'hidden', 'name', 'number', 'results', 'started_at', 'state_string', 'stepid', 'urls'],
  log: ['complete', 'logid', 'name', 'num_lines', 'slug', 'stepid', 'type'],
};

const sorted = (o: object) => Object.keys(o).sort();

describe('taskcluster/shapes', () => {
  describe('buildrequestOf', () => {
    it('a task without a status yet: unclaimed, incomplete, results -1, properties null', () => {
      expect(buildrequestOf(task(), undefined)).to.deep.equal({
        buildrequestid: BRID,
        buildsetid: BSID,
        builderid: 3,
        priority: 0,
        claimed: false,
        claimed_at: null,
        claimed_by_masterid: null,
        complete: false,
        complete_at: null,
        results: -1,
        submitted_at: S0,
        waited_for: false,
        properties: null,
      });
    });

    it('running: claimed at the start (whole seconds, floored), by the configured masterid', () => {
      const br = buildrequestOf(task(), statusOf([running(0)]), { masterid: 1 });
      expect(br).to.include({ claimed: true, claimed_at: S0 + 60, claimed_by_masterid: 1, complete: false, complete_at: null, results: -1 });
    });

    it('finished: complete at the resolution with the last run\'s result', () => {
      const br = buildrequestOf(task(), statusOf([resolved(0, 'exception', 'claim-expired'), resolved(1, 'failed', 'failed', { reasonCreated: 'retry' })]));
      expect(br).to.include({ claimed: true, claimed_at: S0 + 60, complete: true, complete_at: S0 + 120, results: FAILURE });
    });

    it('a retry waiting for a worker is unclaimed again, as Buildbot unclaims a request after RETRY', () => {
      const br = buildrequestOf(task(), statusOf([resolved(0, 'exception', 'worker-shutdown'), pending(1, 'retry')]));
      expect(br).to.include({ claimed: false, claimed_at: null, complete: false, results: -1 });
    });

    it('canceled before any run started: CANCELLED, and claimed at its completion (Buildbot claims a request to cancel it)', () => {
      const br = buildrequestOf(task(), statusOf([resolved(0, 'exception', 'canceled', { started: false })]), { masterid: 1 });
      expect(br).to.include({ claimed: true, claimed_at: S0 + 120, claimed_by_masterid: 1, complete: true, complete_at: S0 + 120, results: CANCELLED });
    });

    it('a task the queue refused never runs: complete, EXCEPTION, unclaimed', () => {
      const br = buildrequestOf(task({ state: 'rejected', stateReason: 'InsufficientScopes', statusAt: (S0 + 5) * 1000 }), undefined);
      expect(br).to.include({ claimed: false, complete: true, complete_at: S0 + 5, results: EXCEPTION });
    });

    it("properties: the buildset's, only when asked, filtered by name, '*' for all", () => {
      const opts = { buildset };
      expect(buildrequestOf(task(), undefined, opts).properties).to.equal(null);
      expect(buildrequestOf(task(), undefined, { ...opts, properties: ['*'] }).properties).to.deep.equal(JSON.parse(buildset.properties));
      expect(buildrequestOf(task(), undefined, { ...opts, properties: ['owner', 'nope'] }).properties).to.deep.equal({ owner: ['alice', 'Force Build Form'] });
      expect(buildrequestOf(task(), undefined, { ...opts, properties: ['nope'] }).properties).to.equal(null);
    });

    it("has a real Buildbot 3.7 buildrequest's keys", () => {
      expect(sorted(buildrequestOf(task(), undefined))).to.deep.equal(REAL_KEYS.buildrequest);
    });
  });

  describe('buildsetOf', () => {
    it('incomplete while any buildrequest is: results -1, complete_at null; sourcestamps with derived ssids', () => {
      const bs = buildsetOf(buildset, [{ task: task(), status: statusOf([running(0)]) }]);
      expect(bs).to.deep.equal({
        bsid: BSID,
        external_idstring: null,
        reason: 'A build was forced by alice',
        submitted_at: S0,
        complete: false,
        complete_at: null,
        results: -1,
        sourcestamps: [{ ssid: ssidOf(BSID, 0), branch: 'main', revision: 'abc123', project: 'fx', repository: 'https://hg.example/repo', codebase: '', created_at: S0, patch: null }],
        parent_buildid: null,
        parent_relationship: null,
      });
      expect(sorted(bs)).to.deep.equal(REAL_KEYS.buildset);
      expect(sorted(bs.sourcestamps[0]!)).to.deep.equal(REAL_KEYS.sourcestamp);
    });

    it('complete when all are: the worst result (worst_status), the last completion', () => {
      const other = task({ buildrequestId: BRID + 1, taskId: 'other' });
      const bs = buildsetOf(buildset, [
        { task: task(), status: statusOf([resolved(0, 'completed', 'completed')]) },
        { task: other, status: statusOf([{ ...resolved(0, 'failed', 'failed'), resolved: '2026-01-01T00:05:00Z' }]) },
      ]);
      expect(bs).to.include({ complete: true, complete_at: S0 + 300, results: FAILURE });
    });

    it('a buildset without buildrequests is complete with SUCCESS at once (maybeBuildsetComplete)', () => {
      expect(buildsetOf(buildset, [])).to.include({ complete: true, complete_at: S0, results: SUCCESS });
    });
  });

  describe('ssids', () => {
    it('are injective, above the legacy range, invertible, below 2^53', () => {
      fc.assert(
        fc.property(fc.integer({ min: 0, max: 5e14 - 1 }), fc.integer({ min: 0, max: SOURCESTAMPS_PER_BUILDSET - 1 }), (offset, index) => {
          const bsid = MINTED_ID_BASE + offset;
          const ssid = ssidOf(bsid, index);
          expect(ssid).to.be.at.least(MINTED_ID_BASE).and.at.most(MINTED_ID_LIMIT);
          expect(Number.isSafeInteger(ssid)).to.equal(true);
          expect(sourcestampOfSsid(ssid)).to.deep.equal({ bsid, index });
        }),
      );
      expect(() => ssidOf(BSID, SOURCESTAMPS_PER_BUILDSET)).to.throw(RangeError);
      expect(() => ssidOf(5, 0)).to.throw(RangeError);
      expect(sourcestampOfSsid(12)).to.equal(undefined);
    });
  });

  describe('builds', () => {
    it('only runs a worker started are builds', () => {
      const status = statusOf([
        resolved(0, 'exception', 'claim-expired'),
        resolved(1, 'exception', 'deadline-exceeded', { started: false, reasonCreated: 'retry' }),
      ]);
      expect(runsThatAreBuilds(status)).to.deep.equal([0]);
      expect(runsThatAreBuilds(undefined)).to.deep.equal([]);
      const builds = buildsOf(task(), status, [buildRecord(1), buildRecord(0)]);
      expect(builds.map((b) => b.buildid)).to.deep.equal([BUILDID]);
    });

    it('a running build: results null, "building", properties {} unless asked', () => {
      const b = buildOf(buildRecord(0), task(), statusOf([running(0)]));
      expect(b).to.deep.equal({
        buildid: BUILDID,
        number: 100,
        builderid: 3,
        buildrequestid: BRID,
        workerid: null,
        masterid: null,
        started_at: S0 + 60,
        complete: false,
        complete_at: null,
        results: null,
        state_string: 'building',
        properties: {},
      });
      expect(sorted(b)).to.deep.equal(REAL_KEYS.build);
    });

    it("finished builds are worded as Buildbot's allStepsDone, with the queue's reason", () => {
      const words = (runs: QueueRun[], runId = 0) => buildOf(buildRecord(runId), task(), statusOf(runs)).state_string;
      expect(words([resolved(0, 'completed', 'completed')])).to.equal('build successful');
      expect(words([resolved(0, 'failed', 'failed')])).to.equal('failed');
      expect(words([resolved(0, 'exception', 'malformed-payload')])).to.equal('exception (malformed-payload)');
      expect(words([resolved(0, 'exception', 'canceled')])).to.equal('cancelled (canceled)');
      expect(words([resolved(0, 'exception', 'claim-expired'), pending(1, 'retry')])).to.equal('retry (claim-expired)');
    });

    it('a retried run is a finished RETRY build and its retry a build of its own', () => {
      const status = statusOf([resolved(0, 'exception', 'worker-shutdown'), resolved(1, 'completed', 'completed', { reasonCreated: 'retry' })]);
      const [first, second] = buildsOf(task(), status, [buildRecord(0), buildRecord(1)]);
      expect(first).to.include({ complete: true, results: RETRY, complete_at: S0 + 120 });
      expect(second).to.include({ complete: true, results: SUCCESS, number: 101 });
    });

    it('properties when asked: the buildset\'s, the sourcestamp\'s, and the run\'s (taskId, runId, worker)', () => {
      const b = buildOf(buildRecord(0), task(), statusOf([running(0)]), { properties: ['*'], buildset });
      expect(b.properties).to.deep.equal({
        owner: ['alice', 'Force Build Form'],
        reason: ['because', 'Force Build Form'],
        scheduler: ['force', 'Scheduler'],
        branch: ['main', 'Build'],
        revision: ['abc123', 'Build'],
        repository: ['https://hg.example/repo', 'Build'],
        project: ['fx', 'Build'],
        codebase: ['', 'Build'],
        buildername: ['linux64-opt', 'Builder'],
        buildnumber: [100, 'Build'],
        taskId: ['fN1kbb2nQ1u8bqdFRv0b4Q', 'Taskcluster'],
        runId: [0, 'Taskcluster'],
        workerGroup: ['us-east-1', 'Taskcluster'],
        workerId: ['i-0abc', 'Taskcluster'],
        workername: ['i-0abc', 'Worker'],
      });
      expect(buildOf(buildRecord(0), task(), statusOf([running(0)]), { properties: ['taskId'] }).properties).to.deep.equal({ taskId: ['fN1kbb2nQ1u8bqdFRv0b4Q', 'Taskcluster'] });
    });
  });

  describe('steps and logs', () => {
    it('one step per build, ids shared with the build, a link to the run in the queue UI', () => {
      const status = statusOf([resolved(0, 'failed', 'failed')]);
      const step = stepOf(buildRecord(0), task(), status, { rootUrl: 'https://tc.example.com/' });
      expect(step).to.deep.equal({
        stepid: BUILDID,
        number: 0,
        name: 'task',
        buildid: BUILDID,
        started_at: S0 + 60,
        complete: true,
        complete_at: S0 + 120,
        results: FAILURE,
        state_string: 'finished (failure)',
        urls: [{ name: 'task', url: 'https://tc.example.com/tasks/fN1kbb2nQ1u8bqdFRv0b4Q/runs/0' }],
        hidden: false,
      });
      expect(sorted(step)).to.deep.equal(REAL_KEYS.step);
      expect(stepOf(buildRecord(0), task(), statusOf([running(0)])).urls).to.deep.equal([]);
      expect(stepOf(buildRecord(0), task(), statusOf([running(0)])).state_string).to.equal('running');
    });

    it('one log per step, ids shared with the build', () => {
      const log = logOf(buildRecord(0), statusOf([running(0)]));
      expect(log).to.deep.equal({ logid: BUILDID, name: 'stdio', slug: 'stdio', stepid: BUILDID, complete: false, num_lines: 0, type: 't' });
      expect(sorted(log)).to.deep.equal(REAL_KEYS.log);
      expect(logOf(buildRecord(0), statusOf([resolved(0, 'completed', 'completed')]), 12)).to.include({ complete: true, num_lines: 12 });
    });
  });

  describe('parseStoredStatus', () => {
    it('reads the stored JSON text, and nothing from text that is not a status', () => {
      const status = statusOf([running(0)]);
      expect(parseStoredStatus(task({ status: JSON.stringify(status) }))).to.deep.equal(status);
      expect(parseStoredStatus(task())).to.equal(undefined);
      expect(parseStoredStatus(task({ status: '{' }))).to.equal(undefined);
      expect(parseStoredStatus(task({ status: '{"runs": 3}' }))).to.equal(undefined);
    });
  });

  describe('properties', () => {
    it('a task whose last run is unfinished is never complete, and a complete one never -1; builds agree with their runs', () => {
      fc.assert(
        fc.property(statusArb, (status) => {
          const br = buildrequestOf(task(), status);
          const last = status.runs.at(-1);
          const unfinished = last === undefined || last.state === 'pending' || last.state === 'running';
          expect(br.complete).to.equal(!unfinished);
          if (br.complete) {
            expect(isResultCode(br.results)).to.equal(true);
            expect(br.complete_at).to.be.a('number');
            expect(br.claimed).to.equal(true);
          } else {
            expect(br.results).to.equal(-1);
            expect(br.complete_at).to.equal(null);
          }
          expect(br.claimed_at === null).to.equal(!br.claimed);

          const records = status.runs.map((r) => buildRecord(r.runId));
          const builds = buildsOf(task(), status, records);
          expect(builds.map((b) => b.buildid - BUILDID)).to.deep.equal(runsThatAreBuilds(status));
          for (const b of builds) {
            expect(b.complete).to.equal(b.results !== null);
            expect(b.complete_at === null).to.equal(!b.complete);
            if (b.results !== null) expect(isResultCode(b.results)).to.equal(true);
            expect(stepOf(buildRecord(b.buildid - BUILDID), task(), status).results).to.equal(b.results);
          }
          // The buildset of one task finishes with it, with the same result.
          const bs = buildsetOf(buildset, [{ task: task(), status }]);
          expect(bs.complete).to.equal(br.complete);
          expect(bs.results).to.equal(br.complete ? br.results : -1);
        }),
        { numRuns: 500 },
      );
    });
  });
});

const EXCEPTION_REASONS: ReasonResolved[] = [
  'deadline-exceeded',
  'canceled',
  'superseded',
  'claim-expired',
  'worker-shutdown',
  'malformed-payload',
  'resource-unavailable',
  'internal-error',
  'intermittent-task',
];

/** Run sequences the queue can produce: every run but the last resolved; the queue's own retries only after an exception. */
const statusArb: fc.Arbitrary<QueueTaskStatus> = fc
  .tuple(
    fc.array(
      fc.record({
        state: fc.constantFrom<'completed' | 'failed' | 'exception'>('completed', 'failed', 'exception'),
        reason: fc.constantFrom(...EXCEPTION_REASONS),
        started: fc.boolean(),
        next: fc.constantFrom<ReasonCreated>('retry', 'task-retry', 'rerun'),
      }),
      { maxLength: 5 },
    ),
    fc.constantFrom('pending', 'running', 'none'),
  )
  .map(([finished, tail]) => {
    const runs: QueueRun[] = [];
    let created: ReasonCreated = 'scheduled';
    for (const f of finished) {
      const reason: ReasonResolved = f.state === 'exception' ? f.reason : f.state;
      runs.push(resolved(runs.length, f.state, reason, { started: f.state !== 'exception' || f.started, reasonCreated: created }));
      created = f.state === 'exception' ? f.next : 'rerun';
    }
    if (tail === 'pending') runs.push(pending(runs.length, created));
    if (tail === 'running') runs.push(running(runs.length, created));
    return statusOf(runs);
  });
