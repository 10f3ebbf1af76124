/**
 * QueueClient against the stand-in queue and a few loopback servers that
 * misbehave on purpose: Hawk signing, what an answer and a failure say, the
 * artifact redirect, and that no secret ever shows in what a call returns.
 */
import { expect } from 'chai';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { createServer as createTcpServer, type Server as TcpServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import hawk from 'hawk';
import slugid from 'slugid';
import { parseConfig } from '../../../src/config/load.js';
import type { Backend } from '../../../src/routing/table.js';
import { startStandinQueue, type StandinQueue } from '../../../src/standin-queue/index.js';
import { QueueClient, type QueueMethod, type QueueOutcome } from '../../../src/taskcluster/queue-client.js';
import { renderTask, sampleContext } from '../../../src/taskcluster/template.js';
import { Upstream } from '../../../src/upstream/upstream.js';

const CLIENT_ID = 'proxy-client';
const TOKEN = 'queue-client-test-token-d41d8cd9';
const LIMITED_ID = 'limited-client';
const LIMITED_TOKEN = 'limited-client-token-98f00b20';
const ENV = { TASKCLUSTER_CLIENT_ID: CLIENT_ID, TASKCLUSTER_ACCESS_TOKEN: TOKEN };
const TASK_QUEUE = 'proj-ci/linux';

/** A queue backend as routes.yaml compiles it. */
function queueBackend(rootUrl: string, extra = ''): Backend {
  const table = parseConfig(
    Buffer.from(`backends:
  buildbot: { url: http://127.0.0.1:9, legacy: true }
  queue:
    kind: taskcluster
    rootUrl: ${rootUrl}
    connectTimeoutMs: 2000
    responseTimeoutMs: 5000
    task: { taskQueueId: ${TASK_QUEUE}, payload: {} }
${extra}`),
    'routes.yaml',
  );
  return table.backends.get('queue')!;
}

/** A createTask body as the proxy stores it: JSON text of a rendered template. */
function definition(payload: Record<string, unknown> = { command: ['make'] }): string {
  return JSON.stringify(renderTask({ taskQueueId: TASK_QUEUE, payload }, sampleContext('linux64-opt')));
}

async function listen(server: Server | TcpServer): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

async function closeServer(server: Server | TcpServer): Promise<void> {
  if ('closeAllConnections' in server) server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/** A port nothing listens on: bound, then released. */
async function closedPort(): Promise<number> {
  const server = createTcpServer();
  const port = await listen(server);
  await closeServer(server);
  return port;
}

function expectNoSecret(what: unknown, ...secrets: string[]): void {
  const text = JSON.stringify(what) + String((what as { message?: unknown })?.message ?? '');
  for (const secret of secrets) expect(text, 'a secret leaked').to.not.contain(secret);
}

describe('taskcluster/queue-client: QueueClient', function () {
  let queue: StandinQueue;
  let upstream: Upstream;
  let backend: Backend;
  const calls: Array<[string, QueueMethod, string]> = [];
  const client = () => new QueueClient(upstream, (b, m, outcome, seconds) => {
    expect(seconds).to.be.a('number').and.to.be.at.least(0);
    calls.push([b, m, outcome]);
  }, ENV);

  beforeEach(async () => {
    calls.length = 0;
    queue = await startStandinQueue({
      clients: {
        [CLIENT_ID]: { accessToken: TOKEN, scopes: ['*'] },
        // May create in the project and scheduler, but not on this task queue.
        [LIMITED_ID]: { accessToken: LIMITED_TOKEN, scopes: ['queue:create-task:project:none', 'queue:scheduler-id:-', 'queue:create-task:lowest:proj-other/*'] },
      },
      worker: { taskQueueIds: [TASK_QUEUE], startDelayMs: 10, runMs: 40, failureRate: 0, seed: 3 },
    });
    upstream = new Upstream();
    backend = queueBackend(queue.rootUrl);
  });

  afterEach(async () => {
    await upstream.close();
    await queue.close();
  });

  describe('with the stand-in queue', () => {
    it('signs with Hawk: the queue accepts createTask, and task, status, cancel and rerun read and act on it', async () => {
      const c = client();
      const taskId = slugid.nice();
      const body = definition();
      const created = await c.createTask(backend, taskId, body);
      expect(created.ok, JSON.stringify(created)).to.equal(true);
      if (!created.ok) return;
      expect(created.status).to.equal(200);
      expect(created.body.status.taskId).to.equal(taskId);
      expect(queue.createCalls().map((call) => [call.taskId, call.created, call.status])).to.deep.equal([[taskId, true, 200]]);

      const task = await c.task(backend, taskId);
      expect(task.ok && task.body.payload).to.deep.equal({ command: ['make'] });
      const status = await c.status(backend, taskId);
      expect(status.ok && status.body.status.taskId).to.equal(taskId);

      const cancelled = await c.cancel(backend, taskId);
      expect(cancelled.ok && cancelled.body.status.runs.at(-1)).to.include({ state: 'exception', reasonResolved: 'canceled' });
      const rerun = await c.rerun(backend, taskId);
      expect(rerun.ok && rerun.body.status.runs.at(-1)!.reasonCreated).to.equal('rerun');

      expect(calls).to.deep.equal([
        ['queue', 'createTask', '2xx'],
        ['queue', 'task', '2xx'],
        ['queue', 'status', '2xx'],
        ['queue', 'cancelTask', '2xx'],
        ['queue', 'rerunTask', '2xx'],
      ]);
    });

    it('sends the identical body again under the same taskId and gets the same task back', async () => {
      const c = client();
      const taskId = slugid.nice();
      const body = definition();
      const first = await c.createTask(backend, taskId, body);
      const second = await c.createTask(backend, taskId, body);
      expect(first.ok && second.ok).to.equal(true);
      expect(queue.createCalls().map((call) => [call.created, call.status])).to.deep.equal([
        [true, 200],
        [false, 200],
      ]);
      const different = await c.createTask(backend, taskId, definition({ command: ['other'] }));
      expect(different.ok).to.equal(false);
      expect(!different.ok && different.answered && [different.status, different.error.code]).to.deep.equal([409, 'RequestConflict']);
      expect(queue.tasks()).to.have.length(1);
    });

    it('answers a missing scope as 403 with the queue\'s message, which names the scope', async () => {
      const c = new QueueClient(upstream, () => undefined, { TASKCLUSTER_CLIENT_ID: LIMITED_ID, TASKCLUSTER_ACCESS_TOKEN: LIMITED_TOKEN });
      const answer = await c.createTask(backend, slugid.nice(), definition());
      expect(answer.ok).to.equal(false);
      if (answer.ok || !answer.answered) return expect.fail(JSON.stringify(answer));
      expect(answer.status).to.equal(403);
      expect(answer.error.code).to.equal('InsufficientScopes');
      expect(answer.error.message).to.contain(`Client ID ${LIMITED_ID} does not have sufficient scopes`);
      expect(answer.error.message).to.contain(`queue:create-task:lowest:${TASK_QUEUE}`);
      expectNoSecret(answer, LIMITED_TOKEN, TOKEN);
      expect(queue.tasks()).to.have.length(0);
    });

    it('answers 401 for a wrong access token, without repeating any token', async () => {
      const c = new QueueClient(upstream, () => undefined, { TASKCLUSTER_CLIENT_ID: CLIENT_ID, TASKCLUSTER_ACCESS_TOKEN: 'wrong-token-5e884898' });
      const answer = await c.createTask(backend, slugid.nice(), definition());
      if (answer.ok || !answer.answered) return expect.fail(JSON.stringify(answer));
      expect(answer.status).to.equal(401);
      expect(answer.error.code).to.equal('AuthenticationFailed');
      expectNoSecret(answer, 'wrong-token-5e884898', TOKEN);
    });

    it('calls anonymously without credentials: reads work, createTask is refused, and hasCredentials says so', async () => {
      const signed = client();
      const taskId = slugid.nice();
      expect((await signed.createTask(backend, taskId, definition())).ok).to.equal(true);
      for (const env of [{}, { TASKCLUSTER_CLIENT_ID: CLIENT_ID }, { TASKCLUSTER_ACCESS_TOKEN: TOKEN }]) {
        const anonymous = new QueueClient(upstream, () => undefined, env);
        expect(anonymous.hasCredentials(backend), JSON.stringify(Object.keys(env))).to.equal(false);
        expect((await anonymous.status(backend, taskId)).ok).to.equal(true);
        const refused = await anonymous.createTask(backend, slugid.nice(), definition());
        expect(!refused.ok && refused.answered && refused.status).to.equal(403);
      }
      expect(signed.hasCredentials(backend)).to.equal(true);
    });

    it('reads the credentials from the variables the backend names', async () => {
      const named = queueBackend(queue.rootUrl, '    credentials: { clientIdEnv: CI_ID, accessTokenEnv: CI_TOKEN }\n');
      const c = new QueueClient(upstream, () => undefined, { CI_ID: CLIENT_ID, CI_TOKEN: TOKEN, TASKCLUSTER_CLIENT_ID: 'nobody', TASKCLUSTER_ACCESS_TOKEN: 'nothing' });
      expect(c.hasCredentials(named)).to.equal(true);
      expect((await c.createTask(named, slugid.nice(), definition())).ok).to.equal(true);
    });

    it('sends temporary credentials\' certificate in Hawk ext, which the stand-in refuses as unsupported', async () => {
      const certificate = { version: 1, scopes: ['*'], start: Date.now(), expiry: Date.now() + 3600_000, seed: 'seed-value', signature: 'signature-value', issuer: CLIENT_ID };
      const c = new QueueClient(upstream, () => undefined, { ...ENV, TASKCLUSTER_CERTIFICATE: JSON.stringify(certificate) });
      const answer = await c.createTask(backend, slugid.nice(), definition());
      if (answer.ok || !answer.answered) return expect.fail(JSON.stringify(answer));
      expect(answer.status).to.equal(401);
      expect(answer.error.message).to.contain('ext.certificate: temporary credentials are not supported by the stand-in queue');
      expectNoSecret(answer, TOKEN, 'signature-value');
    });

    it('finds an artifact where the queue\'s 303 Location points, and its bytes are there', async () => {
      const c = client();
      const taskId = slugid.nice();
      expect((await c.createTask(backend, taskId, definition({ command: ['make', 'all'], exitCode: 0 }))).ok).to.equal(true);
      const until = Date.now() + 10_000;
      for (;;) {
        const status = await c.status(backend, taskId);
        if (status.ok && status.body.status.state === 'completed') break;
        if (Date.now() > until) expect.fail(`the task did not complete: ${JSON.stringify(status)}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      const located = await c.artifactUrl(backend, taskId, 0, 'public/logs/live_backing.log');
      if (!located.ok) return expect.fail(JSON.stringify(located));
      expect(located.status).to.equal(303);
      expect(located.body.url.startsWith(`${queue.rootUrl}/`), located.body.url).to.equal(true);
      const bytes = await (await fetch(located.body.url)).text();
      expect(bytes).to.contain('+ make all');

      const missing = await c.artifactUrl(backend, taskId, 0, 'public/logs/no-such.log');
      expect(!missing.ok && missing.answered && missing.status).to.equal(404);
      expect(calls.filter((call) => call[1] === 'artifact').map((call) => call[2])).to.deep.equal(['3xx', '4xx']);
    });
  });

  describe('with servers that misbehave', () => {
    it('a closed port: failure that never reached the queue', async () => {
      const c = client();
      const closed = queueBackend(`http://127.0.0.1:${await closedPort()}`);
      const answer = await c.createTask(closed, slugid.nice(), definition());
      if (answer.ok || answer.answered) return expect.fail(JSON.stringify(answer));
      expect(answer.failure).to.include({ kind: 'refused', mayHaveReachedBackend: false });
      expect(calls).to.deep.equal([['queue', 'createTask', 'refused']]);
      expectNoSecret(answer, TOKEN);
    });

    it('a server that accepts the request and then resets: failure that may have reached the queue', async () => {
      const received: Buffer[] = [];
      const server = createTcpServer((socket: Socket) => {
        socket.on('data', (chunk) => {
          received.push(chunk);
          socket.resetAndDestroy();
        });
      });
      const port = await listen(server);
      try {
        const c = client();
        const answer = await c.createTask(queueBackend(`http://127.0.0.1:${port}`), slugid.nice(), definition());
        if (answer.ok || answer.answered) return expect.fail(JSON.stringify(answer));
        expect(answer.failure.mayHaveReachedBackend).to.equal(true);
        expect(answer.failure.kind).to.equal('reset');
        expect(Buffer.concat(received).toString()).to.match(/^PUT \/api\/queue\/v1\/task\/[A-Za-z0-9_-]{22} HTTP\/1\.1\r\n/);
        expectNoSecret(answer, TOKEN);
      } finally {
        await closeServer(server);
      }
    });

    it('signs for the backend\'s own host and path, with the certificate in ext, as a Hawk server checks it', async () => {
      const seen: Array<{ id: string; ext: unknown; url: string | undefined; host: string | undefined; ok: boolean }> = [];
      const certificate = { version: 1, scopes: ['queue:*'], start: 1, expiry: 2, seed: 's', signature: 'sig', issuer: 'root' };
      const server = createServer((req: IncomingMessage, res) => {
        hawk.server
          .authenticate(req, (id: string) => (id === CLIENT_ID ? ({ id, key: TOKEN, algorithm: 'sha256' } as never) : (undefined as never)))
          .then((r) => {
            const ext = r.artifacts.ext ? (JSON.parse(Buffer.from(r.artifacts.ext, 'base64').toString('utf8')) as unknown) : undefined;
            seen.push({ id: (r.credentials as unknown as { id: string }).id, ext, url: req.url, host: req.headers.host, ok: true });
            res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ status: { taskId: 'x' } }));
          })
          .catch(() => {
            seen.push({ id: '', ext: undefined, url: req.url, host: req.headers.host, ok: false });
            res.writeHead(401, { 'content-type': 'application/json' }).end('{"code":"AuthenticationFailed","message":"no"}');
          });
      });
      const port = await listen(server);
      try {
        const below = queueBackend(`http://127.0.0.1:${port}/tc/`);
        const c = new QueueClient(upstream, () => undefined, { ...ENV, TASKCLUSTER_CERTIFICATE: JSON.stringify(certificate) });
        const answer = await c.createTask(below, 'abcdefghijklmnopqrstuv', definition());
        expect(answer.ok, JSON.stringify(answer)).to.equal(true);
        expect(seen).to.deep.equal([{ id: CLIENT_ID, ext: { certificate }, url: '/tc/api/queue/v1/task/abcdefghijklmnopqrstuv', host: `127.0.0.1:${port}`, ok: true }]);
      } finally {
        await closeServer(server);
      }
    });

    it('resolves a relative Location against the root URL, and calls a 303 without Location a bad answer', async () => {
      let location: string | undefined = '/storage/public/logs/live_backing.log?sig=1';
      const server = createServer((_req, res) => {
        res.writeHead(303, location === undefined ? {} : { location }).end();
      });
      const port = await listen(server);
      try {
        const c = client();
        const b = queueBackend(`http://127.0.0.1:${port}`);
        const located = await c.artifactUrl(b, 'abcdefghijklmnopqrstuv', 2, 'public/logs/live_backing.log');
        expect(located.ok && located.body.url).to.equal(`http://127.0.0.1:${port}/storage/public/logs/live_backing.log?sig=1`);
        location = undefined;
        const missing = await c.artifactUrl(b, 'abcdefghijklmnopqrstuv', 2, 'public/logs/live_backing.log');
        expect(!missing.ok && missing.answered && [missing.status, missing.error.code]).to.deep.equal([502, 'NoLocation']);
      } finally {
        await closeServer(server);
      }
    });

    it('calls a 2xx that is not JSON a bad answer, and keeps a 5xx\'s code and message', async () => {
      let reply: [number, string] = [200, '<html>not json</html>'];
      const server = createServer((_req, res) => {
        res.writeHead(reply[0], { 'content-type': 'application/json' }).end(reply[1]);
      });
      const port = await listen(server);
      try {
        const c = client();
        const b = queueBackend(`http://127.0.0.1:${port}`);
        const bad = await c.status(b, 'abcdefghijklmnopqrstuv');
        expect(!bad.ok && bad.answered && [bad.status, bad.error.code]).to.deep.equal([502, 'BadAnswer']);
        reply = [503, '{"code":"InternalServerError","message":"try later"}'];
        const failed = await c.status(b, 'abcdefghijklmnopqrstuv');
        expect(!failed.ok && failed.answered && [failed.status, failed.error]).to.deep.equal([503, { code: 'InternalServerError', message: 'try later' }]);
        reply = [500, 'plain text'];
        const plain = await c.status(b, 'abcdefghijklmnopqrstuv');
        expect(!plain.ok && plain.answered && plain.error).to.deep.equal({ code: 'HTTP500', message: 'the queue answered 500' });
        expect(calls.map((call) => call[2])).to.deep.equal(['5xx', '5xx', '5xx']);
      } finally {
        await closeServer(server);
      }
    });
  });

  it('never puts a secret in what any call returns', async () => {
    const outcomes: QueueOutcome<unknown>[] = [];
    const c = client();
    const closed = queueBackend(`http://127.0.0.1:${await closedPort()}`);
    outcomes.push(await c.createTask(closed, slugid.nice(), definition()));
    outcomes.push(await c.task(backend, slugid.nice()));
    outcomes.push(await c.cancel(backend, slugid.nice()));
    outcomes.push(await c.artifactUrl(backend, slugid.nice(), 0, 'public/x'));
    const limited = new QueueClient(upstream, () => undefined, { TASKCLUSTER_CLIENT_ID: LIMITED_ID, TASKCLUSTER_ACCESS_TOKEN: LIMITED_TOKEN });
    outcomes.push(await limited.createTask(backend, slugid.nice(), definition()));
    outcomes.push(await limited.cancel(backend, slugid.nice()));
    expect(outcomes.map((o) => o.ok)).to.deep.equal([false, false, false, false, false, false]);
    for (const outcome of outcomes) expectNoSecret(outcome, TOKEN, LIMITED_TOKEN);
  });
});
