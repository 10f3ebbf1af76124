import { expect } from 'chai';
import { createTaskScopes, manipulateTaskScopes, satisfies, scopeMatches, unsatisfied } from '../../../src/standin-queue/scopes.js';

describe('standin-queue/scopes', () => {
  it('matches a held scope exactly, or by a trailing * as a prefix', () => {
    expect(scopeMatches('queue:status:abc', 'queue:status:abc')).to.equal(true);
    expect(scopeMatches('queue:status:*', 'queue:status:abc')).to.equal(true);
    expect(scopeMatches('*', 'anything:at:all')).to.equal(true);
    expect(scopeMatches('queue:status:', 'queue:status:abc')).to.equal(false);
    expect(scopeMatches('queue:status:abc', 'queue:status:abcd')).to.equal(false);
  });

  it('treats * anywhere but the end as a literal character', () => {
    expect(scopeMatches('queue:*:abc', 'queue:status:abc')).to.equal(false);
    expect(scopeMatches('queue:*:abc', 'queue:*:abc')).to.equal(true);
  });

  it('evaluates AllOf and AnyOf', () => {
    const expr = { AllOf: ['a', { AnyOf: ['b', 'c'] }] };
    expect(satisfies(['a', 'c'], expr)).to.equal(true);
    expect(satisfies(['a'], expr)).to.equal(false);
    expect(satisfies(['c'], expr)).to.equal(false);
  });

  it('names only what is missing', () => {
    expect(unsatisfied(['a'], { AllOf: ['a', 'b'] })).to.equal('b');
    expect(unsatisfied(['a', 'b'], { AllOf: ['a', 'b'] })).to.equal(null);
    expect(unsatisfied([], { AllOf: ['a', { AnyOf: ['b', 'c'] }] })).to.deep.equal({ AllOf: ['a', { AnyOf: ['b', 'c'] }] });
    expect(unsatisfied(['b'], { AllOf: ['a', { AnyOf: ['b', 'c'] }] })).to.equal('a');
  });

  describe('createTask', () => {
    const def = { taskQueueId: 'proj/worker', schedulerId: 'sched', projectId: 'proj', priority: 'low', routes: ['index.x'], scopes: ['secrets:get:x'] };

    it('requires the task scopes, a route scope per route, the project, the scheduler and the priority on the queue', () => {
      const needed = ['secrets:get:x', 'queue:route:index.x', 'queue:create-task:project:proj', 'queue:scheduler-id:sched', 'queue:create-task:low:proj/worker'];
      expect(satisfies(needed, createTaskScopes(def))).to.equal(true);
      for (const drop of needed) {
        const held = needed.filter((s) => s !== drop);
        expect(satisfies(held, createTaskScopes(def)), `without ${drop}`).to.equal(false);
        expect(JSON.stringify(unsatisfied(held, createTaskScopes(def)))).to.contain(drop);
      }
    });

    it('lets a higher priority scope create a lower priority task, never the reverse', () => {
      const base = ['secrets:get:x', 'queue:route:index.x', 'queue:create-task:project:proj', 'queue:scheduler-id:sched'];
      expect(satisfies([...base, 'queue:create-task:highest:proj/worker'], createTaskScopes(def))).to.equal(true);
      expect(satisfies([...base, 'queue:create-task:medium:proj/worker'], createTaskScopes(def))).to.equal(true);
      expect(satisfies([...base, 'queue:create-task:very-low:proj/worker'], createTaskScopes(def))).to.equal(false);
      expect(satisfies([...base, 'queue:create-task:lowest:proj/worker'], createTaskScopes(def))).to.equal(false);
    });

    it('grants by wildcard', () => {
      expect(satisfies(['secrets:*', 'queue:*'], createTaskScopes(def))).to.equal(true);
    });
  });

  it('accepts the per-task, per-project or legacy scopes for cancel and rerun', () => {
    const t = { taskId: 'T', schedulerId: 's', taskGroupId: 'G', projectId: 'p' };
    expect(satisfies(['queue:cancel-task:s/G/T'], manipulateTaskScopes('cancel-task', t))).to.equal(true);
    expect(satisfies(['queue:cancel-task-in-project:p'], manipulateTaskScopes('cancel-task', t))).to.equal(true);
    expect(satisfies(['queue:cancel-task', 'assume:scheduler-id:s/G'], manipulateTaskScopes('cancel-task', t))).to.equal(true);
    expect(satisfies(['queue:cancel-task'], manipulateTaskScopes('cancel-task', t))).to.equal(false);
    expect(satisfies(['queue:cancel-task:s/G/T'], manipulateTaskScopes('rerun-task', t))).to.equal(false);
    expect(satisfies(['queue:rerun-task:s/G/*'], manipulateTaskScopes('rerun-task', t))).to.equal(true);
  });
});
