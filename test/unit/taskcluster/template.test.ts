/**
 * Task templates: what renderTask makes of a json-e template and a force's
 * context, which fields the proxy owns, and the date rules the queue would
 * otherwise refuse at createTask time.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import { LINK_TAGS, mergeTemplates, renderTask, sampleContext, TemplateError, type TaskTemplate, type TemplateContext } from '../../../src/taskcluster/template.js';

const NOW = '2024-03-01T12:00:00.000Z';
const NOW_MS = Date.parse(NOW);
const DAY = 24 * 3600_000;

function context(overrides: Partial<TemplateContext> = {}): TemplateContext {
  return {
    taskId: 'fN1vxlfKTPy4TyffSHGx9w',
    builder: { name: 'linux64-opt', id: 7 },
    buildset: { id: 1_000_000_000_000_004 },
    buildrequest: { id: 1_000_000_000_000_011 },
    reason: 'nightly',
    username: 'dev@example.com',
    revision: 'abc123',
    branch: 'main',
    repository: 'https://hg.example.com/repo',
    project: 'firefox',
    codebase: '',
    properties: {},
    now: NOW,
    ...overrides,
  };
}

const MINIMAL: TaskTemplate = { taskQueueId: 'proj-ci/linux', payload: { command: ['make'] } };

/** The TemplateError a render throws; fails the test if it renders. */
function refusal(template: TaskTemplate, ctx: TemplateContext = context()): TemplateError {
  try {
    renderTask(template, ctx);
  } catch (error) {
    expect(error).to.be.instanceOf(TemplateError);
    return error as TemplateError;
  }
  expect.fail('the template rendered');
}

describe('taskcluster/template: renderTask', () => {
  describe('defaults the proxy adds', () => {
    it('fills every field the template leaves out, as the queue would, and sets created to context.now', () => {
      const task = renderTask(MINIMAL, context());
      expect(task).to.deep.equal({
        taskQueueId: 'proj-ci/linux',
        schedulerId: '-',
        projectId: 'none',
        routes: [],
        priority: 'lowest',
        retries: 5,
        created: NOW,
        deadline: new Date(NOW_MS + DAY).toISOString(),
        scopes: [],
        payload: { command: ['make'] },
        metadata: {
          name: 'linux64-opt (buildrequest 1000000000000011)',
          description: 'nightly',
          owner: 'dev@example.com',
          source: 'https://hg.example.com/repo',
        },
        tags: {
          [LINK_TAGS.buildset]: '1000000000000004',
          [LINK_TAGS.buildrequest]: '1000000000000011',
          [LINK_TAGS.builder]: 'linux64-opt',
          [LINK_TAGS.builderid]: '7',
          [LINK_TAGS.createdBy]: 'strangler-proxy',
        },
        extra: {},
      });
    });

    it('describes a force without reason, user or a URL repository in words of its own', () => {
      const task = renderTask(MINIMAL, context({ reason: '', username: '', repository: 'not-a-url' }));
      expect(task.metadata).to.deep.equal({
        name: 'linux64-opt (buildrequest 1000000000000011)',
        description: 'forced through strangler-proxy for builder linux64-opt',
        owner: 'strangler-proxy',
        source: 'https://buildbot.invalid/strangler-proxy',
      });
    });

    it('takes ssh:// and git@ repositories as the source', () => {
      expect(renderTask(MINIMAL, context({ repository: 'git@example.com:repo.git' })).metadata.source).to.equal('git@example.com:repo.git');
      expect(renderTask(MINIMAL, context({ repository: 'ssh://hg.example.com/repo' })).metadata.source).to.equal('ssh://hg.example.com/repo');
    });

    it('keeps what the template sets, and makes taskQueueId from provisionerId/workerType', () => {
      const task = renderTask(
        {
          provisionerId: 'proj-ci',
          workerType: 'win',
          schedulerId: 'sched',
          projectId: 'proj',
          taskGroupId: 'fN1vxlfKTPy4TyffSHGx9w',
          routes: ['index.a.b'],
          priority: 'high',
          retries: 0,
          scopes: ['secrets:get:x'],
          payload: {},
          metadata: { name: 'n', description: 'd', owner: 'o@example.com', source: 'https://example.com/s' },
          extra: { x: 1 },
        },
        context(),
      );
      expect(task).to.include({ taskQueueId: 'proj-ci/win', schedulerId: 'sched', projectId: 'proj', taskGroupId: 'fN1vxlfKTPy4TyffSHGx9w', priority: 'high', retries: 0 });
      expect(task.routes).to.deep.equal(['index.a.b']);
      expect(task.scopes).to.deep.equal(['secrets:get:x']);
      expect(task.extra).to.deep.equal({ x: 1 });
      expect(task.metadata).to.deep.equal({ name: 'n', description: 'd', owner: 'o@example.com', source: 'https://example.com/s' });
      expect(task).to.not.have.any.keys('provisionerId', 'workerType');
    });

    it('renders the context: builder, ids, source stamp and custom properties', () => {
      const task = renderTask(
        {
          taskQueueId: 'proj-ci/linux',
          payload: {
            command: ['build', '${revision}', '${branch}', '${project}'],
            env: { ID: '${taskId}', BR: '${buildrequest.id}', BS: '${buildset.id}', BUILDER: '${builder.name}/${builder.id}' },
            props: { $eval: 'properties' },
          },
        },
        context({ properties: { flavour: 'asan', jobs: 4, debug: true } }),
      );
      expect(task.payload).to.deep.equal({
        command: ['build', 'abc123', 'main', 'firefox'],
        env: { ID: 'fN1vxlfKTPy4TyffSHGx9w', BR: '1000000000000011', BS: '1000000000000004', BUILDER: 'linux64-opt/7' },
        props: { flavour: 'asan', jobs: 4, debug: true },
      });
    });
  });

  describe('link tags', () => {
    it('are set last, so a template cannot override or remove them', () => {
      const task = renderTask(
        {
          ...MINIMAL,
          tags: {
            [LINK_TAGS.buildset]: '1',
            [LINK_TAGS.buildrequest]: '2',
            [LINK_TAGS.builder]: 'someone-else',
            [LINK_TAGS.builderid]: '99',
            [LINK_TAGS.createdBy]: 'me',
            kept: 'yes',
          },
        },
        context(),
      );
      expect(task.tags).to.deep.equal({
        kept: 'yes',
        [LINK_TAGS.buildset]: '1000000000000004',
        [LINK_TAGS.buildrequest]: '1000000000000011',
        [LINK_TAGS.builder]: 'linux64-opt',
        [LINK_TAGS.builderid]: '7',
        [LINK_TAGS.createdBy]: 'strangler-proxy',
      });
    });

    it('refuse a tag that is not a string or is longer than 4 KiB', () => {
      expect(refusal({ ...MINIMAL, tags: { n: 1 } }).path).to.deep.equal(['tags', 'n']);
      expect(refusal({ ...MINIMAL, tags: { long: 'x'.repeat(4097) } }).message).to.contain('longer than 4 KiB');
      expect(renderTask({ ...MINIMAL, tags: { long: 'x'.repeat(4096) } }, context()).tags!.long).to.have.length(4096);
      expect(refusal({ ...MINIMAL, tags: ['a'] }).path).to.deep.equal(['tags']);
    });
  });

  describe('deadline and expires', () => {
    it('counts $fromNow from context.now, not from the wall clock', () => {
      const task = renderTask({ ...MINIMAL, deadline: { $fromNow: '2 hours' }, expires: { $fromNow: '30 days' } }, context({ now: '2001-02-03T04:05:06.000Z' }));
      expect(task.created).to.equal('2001-02-03T04:05:06.000Z');
      expect(task.deadline).to.equal('2001-02-03T06:05:06.000Z');
      expect(task.expires).to.equal('2001-03-05T04:05:06.000Z');
    });

    it('normalises a literal date to ISO 8601 with milliseconds', () => {
      expect(renderTask({ ...MINIMAL, deadline: '2024-03-01T13:00:00Z' }, context()).deadline).to.equal('2024-03-01T13:00:00.000Z');
    });

    it('refuses a deadline at or before created, and accepts one a millisecond later', () => {
      expect(refusal({ ...MINIMAL, deadline: NOW }).path).to.deep.equal(['deadline']);
      expect(refusal({ ...MINIMAL, deadline: '2024-03-01T11:00:00Z' }).message).to.contain('after the time the task is created');
      expect(renderTask({ ...MINIMAL, deadline: new Date(NOW_MS + 1).toISOString() }, context()).deadline).to.equal(new Date(NOW_MS + 1).toISOString());
    });

    it('accepts a deadline exactly 5 days ahead and refuses one a millisecond later', () => {
      expect(renderTask({ ...MINIMAL, deadline: new Date(NOW_MS + 5 * DAY).toISOString() }, context()).deadline).to.equal(new Date(NOW_MS + 5 * DAY).toISOString());
      const error = refusal({ ...MINIMAL, deadline: new Date(NOW_MS + 5 * DAY + 1).toISOString() });
      expect(error.path).to.deep.equal(['deadline']);
      expect(error.message).to.contain('within 5 days');
    });

    it('refuses expires before the deadline, including the default one, and accepts expires equal to it', () => {
      expect(refusal({ ...MINIMAL, deadline: { $fromNow: '2 days' }, expires: { $fromNow: '1 day' } }).path).to.deep.equal(['expires']);
      expect(refusal({ ...MINIMAL, expires: { $fromNow: '23 hours' } }).message).to.contain('must not be before the deadline');
      expect(renderTask({ ...MINIMAL, expires: { $fromNow: '1 day' } }, context()).expires).to.equal(new Date(NOW_MS + DAY).toISOString());
    });

    it('refuses dates that are not dates', () => {
      expect(refusal({ ...MINIMAL, deadline: 'tomorrow' }).message).to.contain('deadline must be a date');
      expect(refusal({ ...MINIMAL, expires: 12 }).path).to.deep.equal(['expires']);
    });
  });

  describe('what the queue would refuse', () => {
    it('names an unknown top-level field, created included (the proxy owns it)', () => {
      const error = refusal({ ...MINIMAL, created: NOW });
      expect(error.path).to.deep.equal(['created']);
      expect(error.message).to.match(/^unknown task field "created"; expected some of: taskQueueId, /);
      expect(refusal({ ...MINIMAL, payloads: {} }).path).to.deep.equal(['payloads']);
    });

    it('names an unknown or non-string metadata field', () => {
      expect(refusal({ ...MINIMAL, metadata: { title: 'x' } }).path).to.deep.equal(['metadata', 'title']);
      expect(refusal({ ...MINIMAL, metadata: { owner: 3 } }).path).to.deep.equal(['metadata', 'owner']);
      expect(refusal({ ...MINIMAL, metadata: { source: 'ftp://x' } }).path).to.deep.equal(['metadata', 'source']);
      expect(refusal({ ...MINIMAL, metadata: { name: 'n'.repeat(256) } }).path).to.deep.equal(['metadata', 'name']);
      expect(refusal({ ...MINIMAL, metadata: [] }).path).to.deep.equal(['metadata']);
    });

    it('checks the shape of each field it knows', () => {
      const cases: Array<[TaskTemplate, (string | number)[]]> = [
        [{ payload: {} }, ['taskQueueId']],
        [{ taskQueueId: 'no-slash', payload: {} }, ['taskQueueId']],
        [{ taskQueueId: `a/${'b'.repeat(39)}`, payload: {} }, ['taskQueueId']],
        [{ taskQueueId: 'a/b' }, ['payload']],
        [{ taskQueueId: 'a/b', payload: ['make'] }, ['payload']],
        [{ ...MINIMAL, schedulerId: 'has space' }, ['schedulerId']],
        [{ ...MINIMAL, projectId: 'p'.repeat(39) }, ['projectId']],
        [{ ...MINIMAL, taskGroupId: 5 }, ['taskGroupId']],
        [{ ...MINIMAL, priority: 'urgent' }, ['priority']],
        [{ ...MINIMAL, retries: 50 }, ['retries']],
        [{ ...MINIMAL, retries: 1.5 }, ['retries']],
        [{ ...MINIMAL, retries: -1 }, ['retries']],
        [{ ...MINIMAL, routes: 'index.x' }, ['routes']],
        [{ ...MINIMAL, scopes: [1] }, ['scopes']],
        [{ ...MINIMAL, dependencies: [null] }, ['dependencies']],
        [{ ...MINIMAL, extra: [] }, ['extra']],
      ];
      for (const [template, path] of cases) expect(refusal(template).path, JSON.stringify(template)).to.deep.equal(path);
      expect(renderTask({ ...MINIMAL, retries: 49, priority: 'normal' }, context())).to.include({ retries: 49, priority: 'normal' });
    });

    it('refuses a template that renders to something other than a mapping', () => {
      expect(refusal({ $eval: '[1, 2]' }).message).to.equal('renders to something other than a mapping');
      expect(refusal({ $if: 'false', then: MINIMAL }).message).to.equal('renders to something other than a mapping');
    });
  });

  describe('json-e', () => {
    it('reports its errors as a TemplateError that starts with "json-e:"', () => {
      const unknown = refusal({ ...MINIMAL, payload: { command: ['${nosuch.value}'] } });
      expect(unknown.message).to.match(/^json-e: /);
      expect(unknown.message).to.contain('nosuch');
      expect(refusal({ ...MINIMAL, payload: { $eval: '1 +' } }).message).to.match(/^json-e: /);
      expect(refusal({ ...MINIMAL, payload: { $unknownOperator: 1 } }).message).to.match(/^json-e: /);
    });

    it('evaluates conditionals over the context', () => {
      const template: TaskTemplate = { taskQueueId: { $if: 'builder.name == "win"', then: 'proj/win', else: 'proj/linux' }, payload: {} };
      expect(renderTask(template, context({ builder: { name: 'win', id: 1 } })).taskQueueId).to.equal('proj/win');
      expect(renderTask(template, context()).taskQueueId).to.equal('proj/linux');
    });
  });

  describe('sampleContext', () => {
    it('renders a plausible force, the one routes.yaml is checked with at load', () => {
      const sample = sampleContext('b', new Date(NOW_MS));
      expect(sample.now).to.equal(NOW);
      expect(renderTask(MINIMAL, sample).metadata.name).to.equal('b (buildrequest 1000000000000000)');
    });
  });
});

describe('taskcluster/template: mergeTemplates', () => {
  it('replaces the backend\'s top-level keys with the route\'s, and keeps the others', () => {
    const backend = { taskQueueId: 'proj/a', payload: { command: ['a'], env: { A: '1' } }, routes: ['r'] };
    const route = { payload: { command: ['b'] }, priority: 'high' };
    expect(mergeTemplates(backend, route)).to.deep.equal({ taskQueueId: 'proj/a', payload: { command: ['b'] }, routes: ['r'], priority: 'high' });
  });

  it('is the other one when either is missing, and undefined when both are', () => {
    expect(mergeTemplates(undefined, MINIMAL)).to.equal(MINIMAL);
    expect(mergeTemplates(MINIMAL, undefined)).to.equal(MINIMAL);
    expect(mergeTemplates(undefined, undefined)).to.equal(undefined);
  });

  it('leaves both inputs as they were', () => {
    const backend = Object.freeze({ taskQueueId: 'proj/a', payload: {} });
    const route = Object.freeze({ priority: 'high' });
    mergeTemplates(backend, route);
    expect(backend).to.deep.equal({ taskQueueId: 'proj/a', payload: {} });
    expect(route).to.deep.equal({ priority: 'high' });
  });
});

describe('taskcluster/template: property', () => {
  /** Any text, unicode beyond the BMP, quotes and json-e's own `${` included. */
  const text = fc.oneof(
    fc.string({ unit: 'binary', maxLength: 40 }),
    fc.constantFrom('"', "'", '\\', '${reason}', '$eval', '\u0000', '\u2028', '😀', 'e\u0301', '"}]'),
  );
  const property = fc.oneof(text, fc.integer(), fc.boolean(), fc.constant(null));
  const TEMPLATE: TaskTemplate = {
    taskQueueId: 'proj-ci/linux',
    payload: {
      command: ['build', '${revision}'],
      env: { REASON: '${reason}', BRANCH: '${branch}', REPOSITORY: '${repository}', PROJECT: '${project}', CODEBASE: '${codebase}' },
      properties: { $eval: 'properties' },
    },
    metadata: { description: '${reason}' },
    tags: { branch: '${branch}' },
  };

  it('renders the same task for the same force, and the task survives a JSON round trip with every parameter intact', () => {
    fc.assert(
      fc.property(
        fc.record({ reason: text, username: text, revision: text, branch: text, repository: text, project: text, codebase: text }),
        fc.dictionary(fc.string({ unit: 'binary', maxLength: 12 }), property, { maxKeys: 5 }),
        (force, properties) => {
          const ctx = context({ ...force, properties });
          const first = renderTask(TEMPLATE, ctx);
          const second = renderTask(TEMPLATE, ctx);
          expect(JSON.stringify(second)).to.equal(JSON.stringify(first));
          expect(JSON.parse(JSON.stringify(first))).to.deep.equal(first);
          expect(first.payload).to.deep.equal({
            command: ['build', force.revision],
            env: { REASON: force.reason, BRANCH: force.branch, REPOSITORY: force.repository, PROJECT: force.project, CODEBASE: force.codebase },
            properties,
          });
          expect(first.tags!.branch).to.equal(force.branch);
          expect(first.metadata.description).to.equal(force.reason);
          expect(first.metadata.owner).to.equal((force.username || 'strangler-proxy').slice(0, 255));
        },
      ),
      { numRuns: 300 },
    );
  });
});
