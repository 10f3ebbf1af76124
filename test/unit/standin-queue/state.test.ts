import { expect } from 'chai';
import { QueueError } from '../../../src/standin-queue/errors.js';
import { MAX_RUNS_ALLOWED, TaskStore } from '../../../src/standin-queue/state.js';
import { checkTaskDates, parseTaskDefinition, type TaskDefinition } from '../../../src/standin-queue/validate.js';

const T0 = Date.parse('2026-12-04T12:00:00.000Z');
const MIN = 60 * 1000;
const ids = ['fN1SbArXTPSVFNUvaOlinQ', 'bHnLzGc3ShK4qnh9aFbOdw', 'Lr1d8bMqTc2Dk2pQyvY3Cg', 'O3Ew7TjYQ5W1tqbvFGtJ9A'];
const [A, B, C] = ids as [string, string, string];
const worker = { workerGroup: 'g', workerId: 'w' };

function def(taskId: string, overrides: Record<string, unknown> = {}): TaskDefinition {
  return checkTaskDates(
    parseTaskDefinition(
      {
        taskQueueId: 'proj/worker',
        created: new Date(T0).toJSON(),
        deadline: new Date(T0 + 60 * MIN).toJSON(),
        payload: {},
        metadata: { name: 'n', description: 'd', owner: 'o', source: 'https://e.com' },
        ...overrides,
      },
      taskId,
    ),
    T0,
  );
}

function conflict(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    return (err as QueueError).code;
  }
  return 'none';
}

describe('standin-queue/state', () => {
  let store: TaskStore;
  beforeEach(() => {
    store = new TaskStore();
  });

  it('creates a task with one pending run, and answers an identical resend without a second one', () => {
    const first = store.create(A, def(A), T0);
    expect(first.created).to.equal(true);
    expect(first.status.state).to.equal('pending');
    expect(first.status.runs).to.deep.equal([{ runId: 0, state: 'pending', reasonCreated: 'scheduled', scheduled: new Date(T0).toJSON() }]);
    const again = store.create(A, def(A), T0 + 1000);
    expect(again.created).to.equal(false);
    expect(again.status).to.deep.equal(first.status);
  });

  it('refuses a different definition under the same taskId with RequestConflict', () => {
    store.create(A, def(A), T0);
    expect(conflict(() => store.create(A, def(A, { tags: { x: 'y' } }), T0))).to.equal('RequestConflict');
  });

  it('refuses a second schedulerId in one task group', () => {
    store.create(A, def(A), T0);
    expect(conflict(() => store.create(B, def(B, { taskGroupId: A, schedulerId: 'other' }), T0))).to.equal('RequestConflict');
  });

  it('runs, completes, and keeps the worker on the run', () => {
    store.create(A, def(A), T0);
    expect(store.claim(A, 0, worker, T0 + 20 * MIN, T0 + 1)).to.equal(true);
    expect(store.claim(A, 0, worker, T0 + 20 * MIN, T0 + 2), 'claimed twice').to.equal(false);
    expect(store.status(A).state).to.equal('running');
    store.resolve(A, 0, { state: 'completed' }, T0 + 3);
    const run = store.status(A).runs[0];
    expect(run).to.include({ state: 'completed', reasonResolved: 'completed', workerGroup: 'g', workerId: 'w' });
    expect(run?.takenUntil).to.equal(new Date(T0 + 20 * MIN).toJSON());
  });

  it('cancels pending or running work as exception/canceled, idempotently, and refuses after the deadline', () => {
    store.create(A, def(A), T0);
    const s = store.cancel(A, T0 + 1);
    expect(s.runs[0]).to.include({ state: 'exception', reasonResolved: 'canceled' });
    expect(store.cancel(A, T0 + 2)).to.deep.equal(s);
    expect(conflict(() => store.cancel(A, T0 + 61 * MIN))).to.equal('RequestConflict');
  });

  it('reruns a resolved task with retries reset, leaves pending work alone, and stops at 50 runs', () => {
    store.create(A, def(A, { retries: 3 }), T0);
    store.cancel(A, T0);
    const s = store.rerun(A, T0 + 1);
    expect(s.runs[1]).to.include({ state: 'pending', reasonCreated: 'rerun' });
    expect(s.retriesLeft).to.equal(3);
    expect(store.rerun(A, T0 + 2)).to.deep.equal(s);
    for (let i = 2; i < MAX_RUNS_ALLOWED; i++) {
      store.cancel(A, T0);
      store.rerun(A, T0);
    }
    store.cancel(A, T0);
    expect(store.runCount(A)).to.equal(MAX_RUNS_ALLOWED);
    expect(conflict(() => store.rerun(A, T0))).to.equal('RequestConflict');
    expect(conflict(() => store.rerun(A, T0 + 61 * MIN))).to.equal('RequestConflict');
  });

  it('limits retriesLeft on a rerun so the runs stay under 50', () => {
    store.create(A, def(A, { retries: 49 }), T0);
    store.cancel(A, T0);
    expect(store.rerun(A, T0).retriesLeft).to.equal(MAX_RUNS_ALLOWED - 2);
  });

  for (const [reason, reasonCreated] of [
    ['worker-shutdown', 'retry'],
    ['intermittent-task', 'task-retry'],
  ] as const) {
    it(`retries after ${reason} (reasonCreated ${reasonCreated}) until no retries are left`, () => {
      store.create(A, def(A, { retries: 1 }), T0);
      store.claim(A, 0, worker, T0 + MIN, T0);
      store.resolve(A, 0, { state: 'exception', reason }, T0 + 1);
      let s = store.status(A);
      expect(s.retriesLeft).to.equal(0);
      expect(s.runs[1]).to.include({ state: 'pending', reasonCreated });
      store.claim(A, 1, worker, T0 + MIN, T0 + 2);
      store.resolve(A, 1, { state: 'exception', reason }, T0 + 3);
      s = store.status(A);
      expect(s.runs).to.have.length(2);
      expect(s.state).to.equal('exception');
    });
  }

  it('does not retry malformed-payload or internal-error', () => {
    store.create(A, def(A), T0);
    store.claim(A, 0, worker, T0 + MIN, T0);
    store.resolve(A, 0, { state: 'exception', reason: 'malformed-payload' }, T0 + 1);
    expect(store.status(A).runs).to.have.length(1);
    expect(store.status(A).retriesLeft).to.equal(5);
  });

  it('expires a claim past takenUntil as claim-expired and retries it', () => {
    store.create(A, def(A), T0);
    store.claim(A, 0, worker, T0 + MIN, T0);
    expect(store.expireClaims(T0 + MIN - 1)).to.equal(0);
    expect(store.expireClaims(T0 + MIN)).to.equal(1);
    const s = store.status(A);
    expect(s.runs[0]).to.include({ state: 'exception', reasonResolved: 'claim-expired' });
    expect(s.runs[1]).to.include({ state: 'pending', reasonCreated: 'retry' });
    expect(s.retriesLeft).to.equal(4);
  });

  it('reclaiming moves takenUntil on', () => {
    store.create(A, def(A), T0);
    store.claim(A, 0, worker, T0 + MIN, T0);
    store.reclaim(A, 0, T0 + 5 * MIN);
    expect(store.expireClaims(T0 + 2 * MIN)).to.equal(0);
  });

  it('resolves unresolved tasks at their deadline as deadline-exceeded, unscheduled ones with a run of their own', () => {
    store.create(A, def(A), T0);
    store.create(B, def(B), T0);
    store.claim(B, 0, worker, T0 + 90 * MIN, T0);
    store.create(C, def(C, { dependencies: [A] }), T0);
    expect(store.status(C).state).to.equal('unscheduled');
    expect(store.resolveDeadlines(T0 + 60 * MIN - 1)).to.equal(0);
    expect(store.resolveDeadlines(T0 + 60 * MIN)).to.equal(3);
    for (const id of [A, B]) expect(store.status(id).runs[0]).to.include({ state: 'exception', reasonResolved: 'deadline-exceeded' });
    expect(store.status(C).runs[0]).to.include({ state: 'exception', reasonCreated: 'exception', reasonResolved: 'deadline-exceeded' });
    expect(store.resolveDeadlines(T0 + 61 * MIN)).to.equal(0);
  });

  it('schedules a dependent task when its dependency completes, and refuses unknown dependencies', () => {
    store.create(A, def(A), T0);
    store.create(B, def(B, { dependencies: [A] }), T0);
    expect(store.status(B).runs).to.have.length(0);
    store.claim(A, 0, worker, T0 + MIN, T0);
    store.resolve(A, 0, { state: 'completed' }, T0 + 1);
    expect(store.status(B).runs[0]).to.include({ state: 'pending', reasonCreated: 'scheduled' });
    expect(conflict(() => store.create(C, def(C, { dependencies: [ids[3]] }), T0))).to.equal('InputError');
  });

  it('answers a repeated report of the same resolution and refuses a different one', () => {
    store.create(A, def(A), T0);
    store.claim(A, 0, worker, T0 + MIN, T0);
    const done = store.report(A, 0, { state: 'completed' }, T0 + 1);
    expect(store.report(A, 0, { state: 'completed' }, T0 + 2)).to.deep.equal(done);
    expect(conflict(() => store.report(A, 0, { state: 'failed' }, T0 + 3))).to.equal('RequestConflict');
  });

  it('lists a group in taskId order, a page at a time', () => {
    const group = A;
    for (const id of ids) store.create(id, def(id, { taskGroupId: group }), T0);
    const sorted = [...ids].sort();
    const first = store.listGroup(group, 0, 3);
    expect(first?.taskIds).to.deep.equal(sorted.slice(0, 3));
    expect(first?.more).to.equal(true);
    const second = store.listGroup(group, 3, 3);
    expect(second?.taskIds).to.deep.equal(sorted.slice(3));
    expect(second?.more).to.equal(false);
    expect(store.listGroup(B, 0, 3)).to.equal(undefined);
  });
});
