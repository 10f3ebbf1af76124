import { expect } from 'chai';
import { QueueError } from '../../../src/standin-queue/errors.js';
import { checkTaskDates, parseTaskDefinition } from '../../../src/standin-queue/validate.js';

const NOW = Date.parse('2026-12-04T12:00:00.000Z');
const MIN = 60 * 1000;
const TASK_ID = 'fN1SbArXTPSVFNUvaOlinQ';
const iso = (ms: number): string => new Date(ms).toJSON();

function body(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    taskQueueId: 'proj/worker',
    created: iso(NOW),
    deadline: iso(NOW + 60 * MIN),
    payload: {},
    metadata: { name: 'n', description: 'd', owner: 'o@example.com', source: 'https://example.com/x' },
    ...overrides,
  };
}

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(QueueError);
    return (err as QueueError).code;
  }
  return 'accepted';
}

describe('standin-queue/validate', () => {
  it('fills in the queue defaults without changing the input', () => {
    const input = body();
    const def = checkTaskDates(parseTaskDefinition(input, TASK_ID), NOW);
    expect(def).to.deep.include({
      schedulerId: '-',
      projectId: 'none',
      taskGroupId: TASK_ID,
      dependencies: [],
      requires: 'all-completed',
      routes: [],
      priority: 'lowest',
      retries: 5,
      scopes: [],
      tags: {},
      extra: {},
      expires: '2027-12-04T13:00:00.000Z',
    });
    expect(input).to.not.have.property('schedulerId');
  });

  it('derives taskQueueId from provisionerId/workerType and refuses a mismatch', () => {
    const { taskQueueId: _q, ...rest } = body();
    expect(parseTaskDefinition({ ...rest, provisionerId: 'a', workerType: 'b' }, TASK_ID).taskQueueId).to.equal('a/b');
    expect(codeOf(() => parseTaskDefinition({ ...body(), provisionerId: 'a', workerType: 'b' }, TASK_ID))).to.equal('InputError');
    expect(codeOf(() => parseTaskDefinition(rest, TASK_ID))).to.equal('InputError');
  });

  const schemaCases: Array<[string, Record<string, unknown>]> = [
    ['no metadata', { metadata: undefined }],
    ['a data: source', { metadata: { name: 'n', description: 'd', owner: 'o', source: 'data:text/html,x' } }],
    ['a javascript: source', { metadata: { name: 'n', description: 'd', owner: 'o', source: 'javascript:alert(1)' } }],
    ['a 256-character name', { metadata: { name: 'x'.repeat(256), description: 'd', owner: 'o', source: 'https://e.com' } }],
    ['a tag value over 4 KiB', { tags: { t: 'x'.repeat(4097) } }],
    ['a non-string tag', { tags: { t: 1 } }],
    ['a taskGroupId that is not a slugid', { taskGroupId: 'group-1' }],
    ['a schedulerId of 39 characters', { schedulerId: 'x'.repeat(39) }],
    ['a schedulerId with a dot', { schedulerId: 'a.b' }],
    ['an unknown priority', { priority: 'urgent' }],
    ['retries over 49', { retries: 50 }],
    ['an unknown field', { colour: 'blue' }],
    ['a created that is not a date-time', { created: 'yesterday' }],
    ['a taskQueueId without a worker type', { taskQueueId: 'proj' }],
    ['a worker type with capitals', { taskQueueId: 'proj/Worker' }],
  ];
  for (const [what, overrides] of schemaCases) {
    it(`refuses ${what} with InputValidationError`, () => {
      const b = body(overrides);
      for (const [k, v] of Object.entries(b)) if (v === undefined) delete b[k];
      expect(codeOf(() => parseTaskDefinition(b, TASK_ID))).to.equal('InputValidationError');
    });
  }

  it('accepts http, https, ssh and git@ sources and a 4 KiB tag', () => {
    for (const source of ['http://e.com', 'https://e.com', 'ssh://e.com/r', 'git@github.com:o/r.git']) {
      expect(codeOf(() => parseTaskDefinition(body({ metadata: { name: 'n', description: 'd', owner: 'o', source } }), TASK_ID))).to.equal('accepted');
    }
    expect(codeOf(() => parseTaskDefinition(body({ tags: { t: 'x'.repeat(4096) } }), TASK_ID))).to.equal('accepted');
  });

  describe('dates', () => {
    const dates = (o: Record<string, unknown>): string => codeOf(() => checkTaskDates(parseTaskDefinition(body(o), TASK_ID), NOW));

    it('keeps created within 15 minutes of the queue clock', () => {
      expect(dates({ created: iso(NOW - 15 * MIN) })).to.equal('accepted');
      expect(dates({ created: iso(NOW - 15 * MIN - 1) })).to.equal('InputError');
      expect(dates({ created: iso(NOW + 15 * MIN) })).to.equal('accepted');
      expect(dates({ created: iso(NOW + 15 * MIN + 1) })).to.equal('InputError');
    });

    it('wants the deadline after created, in the future, and at most 5 days (plus 15 minutes) ahead', () => {
      expect(dates({ created: iso(NOW), deadline: iso(NOW - 1) })).to.equal('InputError');
      expect(dates({ created: iso(NOW - 10 * MIN), deadline: iso(NOW - 1) })).to.equal('InputError');
      expect(dates({ deadline: iso(NOW + 5 * 24 * 60 * MIN + 15 * MIN) })).to.equal('accepted');
      expect(dates({ deadline: iso(NOW + 5 * 24 * 60 * MIN + 15 * MIN + 1) })).to.equal('InputError');
    });

    it('wants expires not before the deadline', () => {
      expect(dates({ expires: iso(NOW + 59 * MIN) })).to.equal('InputError');
      expect(dates({ expires: iso(NOW + 60 * MIN) })).to.equal('accepted');
    });

    it('refuses task scopes ending in **', () => {
      expect(dates({ scopes: ['a:**'] })).to.equal('InputError');
    });

    it('stores dates in one format, so a resend with other digits compares equal', () => {
      const a = checkTaskDates(parseTaskDefinition(body({ created: '2026-12-04T12:00:00Z' }), TASK_ID), NOW);
      const b = checkTaskDates(parseTaskDefinition(body({ created: '2026-12-04T12:00:00.000Z' }), TASK_ID), NOW);
      expect(a.created).to.equal(b.created);
    });
  });
});
