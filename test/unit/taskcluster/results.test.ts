/**
 * The queue-run → Buildbot result mapping: the documented table row by row,
 * and properties over every run sequence the queue can produce.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import type { QueueRun, QueueTaskStatus, ReasonCreated, ReasonResolved } from '../../../src/taskcluster/queue-types.js';
import {
  CANCELLED,
  EXCEPTION,
  FAILURE,
  RESULT_CODES,
  RESULT_NAMES,
  RESULT_TABLE,
  RETRY,
  SUCCESS,
  buildrequestResult,
  isResultCode,
  resultOfRun,
  resultOfRunId,
  statusToString,
  worstStatus,
} from '../../../src/taskcluster/results.js';
import { statusOf } from '../../support/queue-work.js';

const T0 = '2026-01-01T00:00:00.000Z';
const T1 = '2026-01-01T00:01:00.000Z';
const T2 = '2026-01-01T00:02:00.000Z';

function run(runId: number, state: QueueRun['state'], reasonResolved?: ReasonResolved, reasonCreated: ReasonCreated = 'scheduled'): QueueRun {
  return {
    runId,
    state,
    reasonCreated,
    ...(reasonResolved === undefined ? {} : { reasonResolved, resolved: T2 }),
    ...(state === 'pending' ? {} : { started: T1, workerGroup: 'wg', workerId: 'w1' }),
    scheduled: T0,
  };
}

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

/** Run sequences the queue can produce: every run but the last resolved; a retry run only after an exception. */
const statusArb: fc.Arbitrary<QueueTaskStatus> = fc
  .array(
    fc.record({
      finished: fc.constantFrom<QueueRun['state']>('completed', 'failed', 'exception'),
      reason: fc.constantFrom(...EXCEPTION_REASONS),
      started: fc.boolean(),
      nextCreated: fc.constantFrom<ReasonCreated>('retry', 'task-retry', 'rerun'),
    }),
    { minLength: 0, maxLength: 5 },
  )
  .chain((resolved) =>
    fc.constantFrom<'pending' | 'running' | 'resolved' | 'none'>('pending', 'running', 'resolved', 'none').map((lastKind) => {
      const runs: QueueRun[] = [];
      let created: ReasonCreated = 'scheduled';
      for (const r of resolved) {
        const state = r.finished;
        const reasonResolved: ReasonResolved = state === 'completed' ? 'completed' : state === 'failed' ? 'failed' : r.reason;
        const started = state !== 'exception' || r.started;
        runs.push({
          runId: runs.length,
          state,
          reasonCreated: created,
          reasonResolved,
          scheduled: T0,
          ...(started ? { started: T1, workerGroup: 'wg', workerId: `w${runs.length}` } : {}),
          resolved: T2,
        });
        // The queue retries on its own only after an exception; anything may be rerun by a person.
        created = state === 'exception' ? r.nextCreated : 'rerun';
      }
      if (lastKind === 'pending') runs.push({ runId: runs.length, state: 'pending', reasonCreated: created, scheduled: T0 });
      if (lastKind === 'running') runs.push({ runId: runs.length, state: 'running', reasonCreated: created, scheduled: T0, started: T1, workerGroup: 'wg', workerId: 'w' });
      return statusOf(runs);
    }),
  );

describe('taskcluster/results', () => {
  describe('the table', () => {
    const cases: Array<[string, QueueRun, QueueRun | undefined, number | null]> = [
      ['pending', run(0, 'pending'), undefined, null],
      ['running', run(0, 'running'), undefined, null],
      ['completed', run(0, 'completed', 'completed'), undefined, SUCCESS],
      ['failed', run(0, 'failed', 'failed'), undefined, FAILURE],
      ['exception/canceled', run(0, 'exception', 'canceled'), undefined, CANCELLED],
      ['exception/superseded (as Treeherder: a deliberate stop)', run(0, 'exception', 'superseded'), undefined, CANCELLED],
      ['exception/deadline-exceeded', run(0, 'exception', 'deadline-exceeded'), undefined, EXCEPTION],
      ['exception/malformed-payload', run(0, 'exception', 'malformed-payload'), undefined, EXCEPTION],
      ['exception/resource-unavailable', run(0, 'exception', 'resource-unavailable'), undefined, EXCEPTION],
      ['exception/internal-error', run(0, 'exception', 'internal-error'), undefined, EXCEPTION],
      ['exception/claim-expired, retried', run(0, 'exception', 'claim-expired'), run(1, 'pending', undefined, 'retry'), RETRY],
      ['exception/worker-shutdown, retried', run(0, 'exception', 'worker-shutdown'), run(1, 'running', undefined, 'retry'), RETRY],
      ['exception/intermittent-task, retried (task-retry)', run(0, 'exception', 'intermittent-task'), run(1, 'pending', undefined, 'task-retry'), RETRY],
      ['exception/claim-expired, no retries left', run(0, 'exception', 'claim-expired'), undefined, EXCEPTION],
      ['exception/worker-shutdown, no retries left', run(0, 'exception', 'worker-shutdown'), undefined, EXCEPTION],
      ['exception/canceled, then rerun by a person', run(0, 'exception', 'canceled'), run(1, 'pending', undefined, 'rerun'), CANCELLED],
      ['failed, then rerun by a person', run(0, 'failed', 'failed'), run(1, 'pending', undefined, 'rerun'), FAILURE],
    ];
    for (const [name, r, next, expected] of cases) {
      it(`${name} → ${expected === null ? 'unfinished (null)' : RESULT_NAMES[expected]}`, () => {
        expect(resultOfRun(r, next)).to.equal(expected);
      });
    }

    it('RESULT_TABLE, first match wins, agrees with resultOfRun for every state and reason', () => {
      for (const state of ['completed', 'failed', 'exception'] as const) {
        const reasons: ReasonResolved[] = state === 'exception' ? EXCEPTION_REASONS : [state];
        for (const reason of reasons) {
          for (const retried of [false, true]) {
            if (retried && state !== 'exception') continue;
            const rule = RESULT_TABLE.find((row) => row.state === state && (row.reasonResolved === '*' || row.reasonResolved === reason) && (!row.retried || retried));
            const next = retried ? run(1, 'pending', undefined, 'retry') : undefined;
            expect(rule, `${state}/${reason}/${retried}`).to.not.equal(undefined);
            expect(resultOfRun(run(0, state, reason), next), `${state}/${reason}/${retried}`).to.equal(rule!.result);
          }
        }
      }
    });
  });

  describe('names and codes', () => {
    it("are Buildbot's (process/results.py)", () => {
      expect(RESULT_CODES).to.deep.equal({ SUCCESS: 0, WARNINGS: 1, FAILURE: 2, SKIPPED: 3, EXCEPTION: 4, RETRY: 5, CANCELLED: 6 });
      expect(RESULT_NAMES).to.deep.equal(['success', 'warnings', 'failure', 'skipped', 'exception', 'retry', 'cancelled']);
      expect(statusToString(null)).to.equal('not finished');
      expect(statusToString(6)).to.equal('cancelled');
      expect(statusToString(-1)).to.equal('Invalid status');
    });

    it("worstStatus is Buildbot's worst_status: CANCELLED > RETRY > EXCEPTION > FAILURE > WARNINGS > SUCCESS > SKIPPED", () => {
      const order = [6, 5, 4, 2, 1, 0, 3];
      for (const a of order) for (const b of order) expect(worstStatus(a, b)).to.equal(order[Math.min(order.indexOf(a), order.indexOf(b))]);
      expect(worstStatus(0, -1)).to.equal(0);
      expect(worstStatus(null, null)).to.equal(null);
    });
  });

  describe('buildrequestResult', () => {
    it('is -1 with no status or no run, the last run\'s result otherwise', () => {
      expect(buildrequestResult(undefined)).to.equal(-1);
      const status = (runs: QueueRun[]) => ({ runs }) as QueueTaskStatus;
      expect(buildrequestResult(status([]))).to.equal(-1);
      expect(buildrequestResult(status([run(0, 'exception', 'claim-expired'), run(1, 'running', undefined, 'retry')]))).to.equal(-1);
      expect(buildrequestResult(status([run(0, 'exception', 'claim-expired'), run(1, 'completed', 'completed', 'retry')]))).to.equal(SUCCESS);
      // Canceled before any run started: the queue resolves the pending run exception/canceled.
      expect(buildrequestResult(status([{ runId: 0, state: 'exception', reasonCreated: 'scheduled', reasonResolved: 'canceled', scheduled: T0, resolved: T1 }]))).to.equal(CANCELLED);
      // Canceled while unscheduled: the queue adds a run created as an exception.
      expect(buildrequestResult(status([{ runId: 0, state: 'exception', reasonCreated: 'exception', reasonResolved: 'canceled', scheduled: T0, resolved: T0 }]))).to.equal(CANCELLED);
    });
  });

  describe('properties', () => {
    it('every finished run maps to exactly one valid result code, every unfinished one to null', () => {
      fc.assert(
        fc.property(statusArb, (status) => {
          status.runs.forEach((r, i) => {
            const result = resultOfRunId(status, i);
            if (r.state === 'pending' || r.state === 'running') expect(result).to.equal(null);
            else {
              expect(isResultCode(result)).to.equal(true);
              // The table gives the same single answer.
              const retried = r.state === 'exception' && ['retry', 'task-retry'].includes(status.runs[i + 1]?.reasonCreated ?? '');
              const rows = RESULT_TABLE.filter((row) => row.state === r.state && (row.reasonResolved === '*' || row.reasonResolved === r.reasonResolved) && (!row.retried || retried));
              expect(rows[0]!.result).to.equal(result);
            }
          });
        }),
        { numRuns: 500 },
      );
    });

    it('a buildrequest is -1 exactly while its last run is unfinished (or there is none), never -1 once it is finished', () => {
      fc.assert(
        fc.property(statusArb, (status) => {
          const last = status.runs.at(-1);
          const result = buildrequestResult(status);
          const finished = last !== undefined && last.state !== 'pending' && last.state !== 'running';
          if (finished) {
            expect(result).to.not.equal(-1);
            expect(isResultCode(result)).to.equal(true);
            expect(result).to.not.equal(RETRY); // the last run has no run after it
          } else expect(result).to.equal(-1);
        }),
        { numRuns: 500 },
      );
    });
  });
});
