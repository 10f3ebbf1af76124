/**
 * routes.yaml with a backend of kind taskcluster: what the compiled table
 * holds, and every problem rejected at load with its file:line:column.
 */
import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { isStranglerError, type StranglerError } from '../../../src/errors.js';
import { loadConfigFile, parseConfig, type LocatedProblem } from '../../../src/config/load.js';

const FILE = 'routes.yaml';

function parse(text: string) {
  return parseConfig(Buffer.from(text), FILE);
}

/** The problems a broken file is rejected with; fails the test if it is accepted. */
function problemsOf(text: string): LocatedProblem[] {
  try {
    parse(text);
  } catch (error) {
    expect(isStranglerError(error, 'CONFIG_INVALID'), String(error)).to.equal(true);
    return (error as StranglerError).details.problems as LocatedProblem[];
  }
  expect.fail('the config was accepted');
}

/** The one problem, as `line:column field: message`. */
function onlyProblem(text: string): string {
  const problems = problemsOf(text);
  expect(problems, JSON.stringify(problems)).to.have.length(1);
  const p = problems[0]!;
  expect(p.file).to.equal(FILE);
  return `${p.line}:${p.column} ${p.field}: ${p.message}`;
}

const LEGACY = '  buildbot: { url: http://127.0.0.1:8011, legacy: true }\n';

describe('config: a backend of kind taskcluster', () => {
  describe('accepted', () => {
    it('takes rootUrl, the default credentials variables, the queue health path and a backend template', () => {
      const table = parse(`backends:
${LEGACY}  queue:
    kind: taskcluster
    rootUrl: https://tc.example.com/
    task:
      taskQueueId: proj-ci/linux
      payload: { command: [make, '\${builder.name}'] }
routes:
  - jobType: linux64-*
    backend: queue
`);
      const queue = table.backends.get('queue')!;
      expect(queue.kind).to.equal('taskcluster');
      expect(queue.queue).to.deep.equal({
        rootUrl: 'https://tc.example.com',
        clientIdEnv: 'TASKCLUSTER_CLIENT_ID',
        accessTokenEnv: 'TASKCLUSTER_ACCESS_TOKEN',
        certificateEnv: 'TASKCLUSTER_CERTIFICATE',
        task: { taskQueueId: 'proj-ci/linux', payload: { command: ['make', '${builder.name}'] } },
      });
      expect(queue.origin).to.equal('https://tc.example.com');
      expect(queue.basePath).to.equal('');
      expect(queue.health.path).to.equal('/api/queue/v1/ping');
      expect(queue.preserveHost).to.equal(false);
      expect(queue.legacy).to.equal(false);
      expect(table.backends.get('buildbot')!.health.path).to.equal('/');
      expect(table.backends.get('buildbot')!.kind).to.equal('buildbot');
      expect(table.routes[0]!.task).to.equal(undefined);
    });

    it('takes other credentials variable names, a rootUrl below a path, its own health path, and ignores preserveHost', () => {
      const table = parse(`backends:
${LEGACY}  queue:
    kind: taskcluster
    rootUrl: https://example.com/taskcluster//
    credentials: { clientIdEnv: CI_TC_ID, accessTokenEnv: CI_TC_TOKEN, certificateEnv: CI_TC_CERT }
    health: { path: /api/queue/v1/ping?deep=1 }
    preserveHost: true
    task: { taskQueueId: proj-ci/linux, payload: {} }
`);
      const queue = table.backends.get('queue')!;
      expect(queue.queue).to.include({ rootUrl: 'https://example.com/taskcluster', clientIdEnv: 'CI_TC_ID', accessTokenEnv: 'CI_TC_TOKEN', certificateEnv: 'CI_TC_CERT' });
      expect(queue.basePath).to.equal('/taskcluster');
      expect(queue.health.path).to.equal('/api/queue/v1/ping?deep=1');
      // SECURITY: the queue checks its Hawk signature against its own host.
      expect(queue.preserveHost).to.equal(false);
    });

    it('keeps the secrets out: the table holds the variables\' names, never their values', () => {
      const saved = { id: process.env.TC_TEST_ID, token: process.env.TC_TEST_TOKEN };
      process.env.TC_TEST_ID = 'client-id-value';
      process.env.TC_TEST_TOKEN = 'access-token-value';
      try {
        const table = parse(`backends:
${LEGACY}  queue: { kind: taskcluster, rootUrl: 'https://tc.example.com', credentials: { clientIdEnv: TC_TEST_ID, accessTokenEnv: TC_TEST_TOKEN }, task: { taskQueueId: a/b, payload: {} } }
`);
        const text = JSON.stringify([...table.backends.values()]);
        expect(text).to.contain('TC_TEST_TOKEN');
        expect(text).to.not.contain('access-token-value');
        expect(text).to.not.contain('client-id-value');
      } finally {
        for (const [name, value] of [['TC_TEST_ID', saved.id], ['TC_TEST_TOKEN', saved.token]] as const) {
          if (value === undefined) delete process.env[name];
          else process.env[name] = value;
        }
      }
    });

    it('takes a route template with or without a backend template, and keeps it on the route', () => {
      const table = parse(`backends:
${LEGACY}  queue:
    kind: taskcluster
    rootUrl: https://tc.example.com
    task: { taskQueueId: proj-ci/linux, payload: { command: [make] } }
  bare: { kind: taskcluster, rootUrl: https://tc2.example.com }
routes:
  - jobType: win64-*
    backend: queue
    task: { taskQueueId: proj-ci/win }
  - jobType: mac-*
    backend: bare
    task: { taskQueueId: proj-ci/mac, payload: { command: [xcodebuild] } }
`);
      expect(table.routes[0]!.task).to.deep.equal({ taskQueueId: 'proj-ci/win' });
      expect(table.routes[1]!.task).to.deep.equal({ taskQueueId: 'proj-ci/mac', payload: { command: ['xcodebuild'] } });
      expect(table.backends.get('bare')!.queue!.task).to.equal(undefined);
    });

    it('takes "url" in place of rootUrl on a queue', () => {
      const table = parse(`backends:
${LEGACY}  queue: { kind: taskcluster, url: 'https://tc.example.com', task: { taskQueueId: a/b, payload: {} } }
`);
      expect(table.backends.get('queue')!.queue!.rootUrl).to.equal('https://tc.example.com');
    });

    it('takes a queue as a split target, a fallback and a shadow, each checked for a template', () => {
      const table = parse(`backends:
${LEGACY}  queue: { kind: taskcluster, rootUrl: 'https://tc.example.com', task: { taskQueueId: a/b, payload: {} } }
routes:
  - jobType: linux64-*
    split: { queue: 10, buildbot: 90 }
    shadow: { backend: queue, percent: 5, mutating: false }
  - jobType: win-*
    backend: buildbot
    fallback: queue
`);
      expect(table.routes[0]!.targets).to.deep.equal([
        { backend: 'queue', weight: 10 },
        { backend: 'buildbot', weight: 90 },
      ]);
      expect(table.routes[1]!.fallback).to.equal('queue');
    });
  });

  describe('rejected, with the place', () => {
    it('a queue without rootUrl, at the backend, with an example', () => {
      expect(onlyProblem(`backends:
${LEGACY}  queue:
    kind: taskcluster
    task: { taskQueueId: a/b, payload: {} }
`)).to.equal('4:5 backends.queue: missing required field "rootUrl". Example: rootUrl: https://tc.example.com');
    });

    it('both url and rootUrl, at the url key', () => {
      expect(onlyProblem(`backends:
${LEGACY}  queue:
    kind: taskcluster
    rootUrl: https://tc.example.com
    url: https://tc.example.com
    task: { taskQueueId: a/b, payload: {} }
`)).to.equal('6:5 backends.queue.url: both "url" and "rootUrl"; a taskcluster backend takes its rootUrl only');
    });

    it('legacy: true on a queue, at its value', () => {
      expect(onlyProblem(`backends:
  buildbot: { url: http://127.0.0.1:8011 }
  queue:
    kind: taskcluster
    rootUrl: https://tc.example.com
    legacy: true
    task: { taskQueueId: a/b, payload: {} }
`)).to.match(/^6:13 backends\.queue\.legacy: the legacy backend is the Buildbot master; a taskcluster backend cannot be it$/);
    });

    it('a rootUrl that is not a URL, has another scheme, or carries credentials or a query', () => {
      const at = (rootUrl: string) =>
        onlyProblem(`backends:
${LEGACY}  queue:
    kind: taskcluster
    rootUrl: '${rootUrl}'
    task: { taskQueueId: a/b, payload: {} }
`);
      expect(at('tc.example.com')).to.equal('5:14 backends.queue.rootUrl: "tc.example.com" is not a URL; expected e.g. https://tc.example.com');
      expect(at('ftp://tc.example.com')).to.equal('5:14 backends.queue.rootUrl: unsupported scheme "ftp:"; expected http: or https:');
      expect(at('https://id:token@tc.example.com')).to.equal('5:14 backends.queue.rootUrl: expected a URL without credentials, query or fragment');
      expect(at('https://tc.example.com/?x=1')).to.equal('5:14 backends.queue.rootUrl: expected a URL without credentials, query or fragment');
    });

    it('the URL problem of a secret-bearing rootUrl does not repeat the secret', () => {
      const problems = problemsOf(`backends:
${LEGACY}  queue: { kind: taskcluster, rootUrl: 'https://id:s3cret-token@tc.example.com', task: { taskQueueId: a/b, payload: {} } }
`);
      expect(JSON.stringify(problems)).to.not.contain('s3cret-token');
    });

    it('queue settings on a backend that is not a queue, at the key', () => {
      expect(onlyProblem(`backends:
${LEGACY}  plain:
    url: http://127.0.0.1:8012
    rootUrl: https://tc.example.com
`)).to.equal('5:5 backends.plain.rootUrl: "rootUrl" applies to a Taskcluster queue; expected "kind: taskcluster" on this backend');
      expect(onlyProblem(`backends:
${LEGACY}  plain:
    url: http://127.0.0.1:8012
    credentials: { clientIdEnv: X }
`)).to.equal('5:5 backends.plain.credentials: "credentials" applies to a Taskcluster queue; expected "kind: taskcluster" on this backend');
      expect(onlyProblem(`backends:
${LEGACY}  plain:
    url: http://127.0.0.1:8012
    task: { taskQueueId: a/b, payload: {} }
`)).to.equal('5:5 backends.plain.task: "task" applies to a Taskcluster queue; expected "kind: taskcluster" on this backend');
    });

    it('an unknown kind, an unknown credentials key and a variable name that cannot be one', () => {
      expect(onlyProblem(`backends:
${LEGACY}  queue: { kind: jenkins, url: http://127.0.0.1:8012 }
`)).to.match(/^3:18 backends\.queue\.kind: .*buildbot.*taskcluster/);
      expect(onlyProblem(`backends:
${LEGACY}  queue:
    kind: taskcluster
    rootUrl: https://tc.example.com
    credentials: { clientId: abc }
    task: { taskQueueId: a/b, payload: {} }
`)).to.equal('6:20 backends.queue.credentials.clientId: unknown key "clientId"; expected one of: clientIdEnv, accessTokenEnv, certificateEnv');
      expect(onlyProblem(`backends:
${LEGACY}  queue:
    kind: taskcluster
    rootUrl: https://tc.example.com
    credentials:
      accessTokenEnv: 'my token'
    task: { taskQueueId: a/b, payload: {} }
`)).to.equal('7:23 backends.queue.credentials.accessTokenEnv: expected the name of an environment variable, got the string "my token"');
    });

    it('a route to a queue when neither the route nor the backend has a template, at the route, with an example', () => {
      expect(onlyProblem(`backends:
${LEGACY}  queue: { kind: taskcluster, rootUrl: 'https://tc.example.com' }
routes:
  - jobType: linux64-*
    backend: queue
`)).to.equal(
        '5:5 routes[0]: job types of this route go to taskcluster backend "queue", which needs a task template: add "task:" to the route or to the backend. Example: task: { taskQueueId: proj-ci/linux, payload: { command: [make] } }',
      );
    });

    it('a queue as the default backend without a template, at default', () => {
      expect(onlyProblem(`backends:
${LEGACY}  queue: { kind: taskcluster, rootUrl: 'https://tc.example.com' }
default: queue
`)).to.match(/^4:10 default: the default backend "queue" is a taskcluster queue without a task template/);
    });

    it('a backend template no route uses is still checked, at the field inside it', () => {
      const problem = onlyProblem(`backends:
${LEGACY}  queue:
    kind: taskcluster
    rootUrl: 'https://tc.example.com'
    task: { taskQueueId: 'no slash', payload: {} }
`);
      expect(problem).to.match(/^6:.* backends\.queue\.task\.taskQueueId: task template: taskQueueId must be/);
    });

    it('a queue named only as a split target or a fallback still needs a template', () => {
      expect(onlyProblem(`backends:
${LEGACY}  queue: { kind: taskcluster, rootUrl: 'https://tc.example.com' }
routes:
  - jobType: linux64-*
    split: { buildbot: 50, queue: 50 }
`)).to.match(/^5:5 routes\[0\]: job types of this route go to taskcluster backend "queue", which needs a task template/);
      expect(onlyProblem(`backends:
${LEGACY}  queue: { kind: taskcluster, rootUrl: 'https://tc.example.com' }
routes:
  - jobType: linux64-*
    backend: buildbot
    fallback: queue
`)).to.match(/^5:5 routes\[0\]: job types of this route go to taskcluster backend "queue"/);
    });

    it('a task on a route none of whose backends is a queue, at the task key', () => {
      expect(onlyProblem(`backends:
${LEGACY}  plain: { url: http://127.0.0.1:8012 }
routes:
  - jobType: linux64-*
    backend: plain
    task: { taskQueueId: a/b, payload: {} }
`)).to.equal("7:5 routes[0].task: a task template applies to routes that send to a taskcluster backend; none of this route's backends is one");
    });

    it('a backend template the queue would refuse, at the field inside it', () => {
      expect(onlyProblem(`backends:
${LEGACY}  queue:
    kind: taskcluster
    rootUrl: https://tc.example.com
    task:
      taskQueueId: proj-ci/linux
      payload: {}
      priority: urgent
routes:
  - jobType: linux64-opt
    backend: queue
`)).to.equal('9:17 backends.queue.task.priority: task template: priority must be one of: highest, very-high, high, medium, low, very-low, lowest, normal');
      expect(onlyProblem(`backends:
${LEGACY}  queue:
    kind: taskcluster
    rootUrl: https://tc.example.com
    task:
      taskQueueId: proj-ci/linux
      payload: {}
      metadata:
        title: x
routes:
  - jobType: linux64-opt
    backend: queue
`)).to.equal('10:16 backends.queue.task.metadata.title: task template: unknown metadata field "title"; expected name, description, owner, source');
    });

    it('a template field the proxy owns (created), at that field', () => {
      expect(onlyProblem(`backends:
${LEGACY}  queue:
    kind: taskcluster
    rootUrl: https://tc.example.com
    task: { taskQueueId: a/b, payload: {}, created: '2024-01-01T00:00:00Z' }
routes:
  - jobType: linux64-opt
    backend: queue
`)).to.match(/^6:53 backends\.queue\.task\.created: task template: unknown task field "created"; expected some of: /);
    });

    it('a template whose deadline is past 5 days, at the deadline', () => {
      expect(onlyProblem(`backends:
${LEGACY}  queue:
    kind: taskcluster
    rootUrl: https://tc.example.com
    task:
      taskQueueId: a/b
      payload: {}
      deadline: { $fromNow: '6 days' }
routes:
  - jobType: linux64-opt
    backend: queue
`)).to.equal('9:17 backends.queue.task.deadline: task template: deadline must be within 5 days of the time the task is created (the queue refuses later ones)');
    });

    it('a json-e error, at the template', () => {
      expect(onlyProblem(`backends:
${LEGACY}  queue:
    kind: taskcluster
    rootUrl: https://tc.example.com
    task:
      taskQueueId: a/b
      payload: { command: ['\${nosuch.x}'] }
routes:
  - jobType: linux64-opt
    backend: queue
`)).to.match(/^7:7 backends\.queue\.task: task template: json-e: .*nosuch/);
    });

    it('a route template that makes the merge invalid, at the route\'s task, rendered with the route\'s job type', () => {
      expect(onlyProblem(`backends:
${LEGACY}  queue:
    kind: taskcluster
    rootUrl: https://tc.example.com
    task: { taskQueueId: a/b, payload: {} }
routes:
  - jobType: linux64-opt
    backend: queue
    task:
      metadata: { name: '\${builder.name}', source: 'ftp://x' }
`)).to.equal('11:52 routes[0].task.metadata.source: task template: metadata.source must start with https://, http://, ssh:// or git@');
      expect(onlyProblem(`backends:
${LEGACY}  queue:
    kind: taskcluster
    rootUrl: https://tc.example.com
    task: { taskQueueId: a/b, payload: {} }
routes:
  - jobType: linux64-opt
    backend: queue
    task: { payload: [make] }
`)).to.equal('10:22 routes[0].task.payload: task template: payload must be a mapping');
    });

    it('a route template that replaces the payload wholly: a backend payload is not merged key by key', () => {
      // The route's payload replaces the backend's, so the backend's taskQueueId stays but its payload.command is gone.
      const table = parse(`backends:
${LEGACY}  queue:
    kind: taskcluster
    rootUrl: https://tc.example.com
    task: { taskQueueId: a/b, payload: { command: [make], env: { A: '1' } } }
routes:
  - jobType: linux64-opt
    backend: queue
    task: { payload: { env: { B: '2' } } }
`);
      expect(table.routes[0]!.task).to.deep.equal({ payload: { env: { B: '2' } } });
    });

    it('lists every problem of a file at once', () => {
      const problems = problemsOf(`backends:
${LEGACY}  q1: { kind: taskcluster }
  q2: { kind: taskcluster, rootUrl: 'https://tc.example.com', url: 'https://tc.example.com' }
  q3: { kind: taskcluster, rootUrl: 'https://tc.example.com', task: { taskQueueId: a/b, payload: {}, retries: 99 } }
routes:
  - jobType: linux64-opt
    backend: q3
`);
      expect(problems.map((p) => `${p.line}:${p.column} ${p.field}`)).to.deep.equal(['3:7 backends.q1', '4:63 backends.q2.url', '5:111 backends.q3.task.retries']);
    });
  });

  describe('loadConfigFile', () => {
    it('rejects a queue problem with file:line:column: field: reason naming the real file', async () => {
      const dir = mkdtempSync(path.join(tmpdir(), 'strangler-tc-config-'));
      try {
        const file = path.join(dir, 'routes.yaml');
        writeFileSync(file, `backends:\n${LEGACY}  queue:\n    kind: taskcluster\n    legacy: false\n`);
        let error: unknown;
        try {
          await loadConfigFile(file);
        } catch (e) {
          error = e;
        }
        expect(isStranglerError(error, 'CONFIG_INVALID'), String(error)).to.equal(true);
        expect((error as Error).message).to.equal(`${file}:4:5: backends.queue: missing required field "rootUrl". Example: rootUrl: https://tc.example.com`);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
});
