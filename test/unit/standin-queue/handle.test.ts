/**
 * The test handle and faults, programmatic and over HTTP, and the stand-in run
 * as a process of its own. These start real servers on loopback port 0.
 */
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import hawk from 'hawk';
import slugid from 'slugid';
import { startStandinQueue, type StandinQueue } from '../../../src/standin-queue/index.js';

const CLIENT = { clientId: 'handle-test', accessToken: 'handle-test-token' };

function definition(taskQueueId = 'proj-handle/idle'): Record<string, unknown> {
  return {
    taskQueueId,
    created: new Date().toJSON(),
    deadline: new Date(Date.now() + 3600_000).toJSON(),
    payload: { command: 'make', exitCode: 0 },
    metadata: { name: 'n', description: 'd', owner: 'o@example.com', source: 'https://example.com' },
  };
}

/** A Hawk-signed createTask with plain fetch, so faults show as they are (the official client retries 5xx). */
async function createTask(rootUrl: string, taskId: string, body: unknown): Promise<{ status: number; json: any }> {
  const url = `${rootUrl}/api/queue/v1/task/${taskId}`;
  const { header } = hawk.client.header(url, 'PUT', { credentials: { id: CLIENT.clientId, key: CLIENT.accessToken, algorithm: 'sha256' } });
  const res = await fetch(url, { method: 'PUT', headers: { authorization: header, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, json: await res.json() };
}

describe('standin-queue test handle', () => {
  let q: StandinQueue;
  beforeEach(async () => {
    q = await startStandinQueue({
      clients: { [CLIENT.clientId]: { accessToken: CLIENT.accessToken, scopes: ['*'] } },
      worker: { taskQueueIds: ['proj-handle/worker'], startDelayMs: 10, runMs: 60, failureRate: 0, seed: 7 },
    });
  });
  afterEach(async () => {
    await q.close();
  });

  it('records every createTask call, and whether it created', async () => {
    const id = slugid.nice();
    const def = definition();
    await createTask(q.rootUrl, id, def);
    await createTask(q.rootUrl, id, def);
    await createTask(q.rootUrl, id, { ...def, tags: { changed: 'yes' } });
    expect(q.createCalls().map((c) => [c.taskId, c.created, c.status])).to.deep.equal([
      [id, true, 200],
      [id, false, 200],
      [id, false, 409],
    ]);
    expect(q.tasks().map((t) => t.taskId)).to.deep.equal([id]);
  });

  it('fails createTask with 500 before creating, then after creating', async () => {
    q.faults.set({ failCreatesBefore: 1, failCreatesAfter: 1 });
    const a = slugid.nice();
    expect((await createTask(q.rootUrl, a, definition())).status).to.equal(500);
    expect(q.tasks()).to.have.length(0);
    const b = slugid.nice();
    const defB = definition();
    const after = await createTask(q.rootUrl, b, defB);
    expect(after.status).to.equal(500);
    expect(after.json.code).to.equal('InternalServerError');
    expect(q.tasks().map((t) => t.taskId)).to.deep.equal([b]);
    expect((await createTask(q.rootUrl, b, defB)).status, 'an identical resend still works').to.equal(200);
    expect(q.createCalls().map((c) => c.fault)).to.deep.equal(['fail-before', 'fail-after', undefined]);
  });

  it('drops the connection after creating, without an answer', async () => {
    q.faults.set({ dropCreatesAfter: 1 });
    const id = slugid.nice();
    let error: unknown;
    try {
      await createTask(q.rootUrl, id, definition());
    } catch (err) {
      error = err;
    }
    expect(error, 'the request should fail without a response').to.be.instanceOf(Error);
    expect(q.tasks().map((t) => t.taskId)).to.deep.equal([id]);
    expect(q.createCalls()[0]).to.include({ created: true, status: 0, fault: 'drop-after' });
  });

  it('delays the answer after creating', async () => {
    q.faults.set({ createDelayMs: 300 });
    const id = slugid.nice();
    const pending = createTask(q.rootUrl, id, definition());
    await new Promise((r) => setTimeout(r, 100));
    expect(q.tasks().map((t) => t.taskId), 'created before the answer').to.deep.equal([id]);
    const started = Date.now();
    expect((await pending).status).to.equal(200);
    expect(Date.now() - started).to.be.greaterThan(100);
  });

  it('pauses and resumes the worker, over HTTP', async () => {
    const set = await fetch(`${q.rootUrl}/__standin__/faults`, { method: 'POST', body: JSON.stringify({ workerPaused: true }) });
    expect((await set.json()).faults.workerPaused).to.equal(true);
    const id = slugid.nice();
    await createTask(q.rootUrl, id, definition('proj-handle/worker'));
    await new Promise((r) => setTimeout(r, 200));
    expect(q.tasks()[0]?.status.state).to.equal('pending');
    await fetch(`${q.rootUrl}/__standin__/faults`, { method: 'POST', body: JSON.stringify({ workerPaused: false }) });
    const until = Date.now() + 3000;
    while (Date.now() < until && q.tasks()[0]?.status.state !== 'completed') await new Promise((r) => setTimeout(r, 20));
    expect(q.tasks()[0]?.status.state).to.equal('completed');
  });

  it('serves tasks and calls as JSON, and refuses an unknown fault', async () => {
    const id = slugid.nice();
    await createTask(q.rootUrl, id, definition());
    const tasks = (await (await fetch(`${q.rootUrl}/__standin__/tasks`)).json()).tasks;
    expect(tasks[0].taskId).to.equal(id);
    expect(tasks[0].status.state).to.equal('pending');
    const calls = (await (await fetch(`${q.rootUrl}/__standin__/calls`)).json()).calls;
    expect(calls[0]).to.include({ taskId: id, created: true, status: 200 });
    const bad = await fetch(`${q.rootUrl}/__standin__/faults`, { method: 'POST', body: JSON.stringify({ explode: true }) });
    expect(bad.status).to.equal(400);
    expect((await bad.json()).error).to.contain('unknown fault "explode"');
  });

  it('runs as a process: prints its rootUrl on one line and exits 0 on SIGTERM', async function () {
    this.timeout(20_000);
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/standin-queue/main.ts', '--port', '0', '--run-ms', '50'], {
      env: { ...process.env, TASKCLUSTER_CLIENT_ID: 'proc', TASKCLUSTER_ACCESS_TOKEN: 'proc-token' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      const [line] = (await once(createInterface({ input: child.stdout }), 'line')) as [string];
      const { rootUrl } = JSON.parse(line) as { rootUrl: string };
      expect(rootUrl).to.match(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect(line).to.not.contain('proc-token');
      const ping = await fetch(`${rootUrl}/api/queue/v1/ping`);
      expect(ping.status).to.equal(200);
      child.kill('SIGTERM');
      const [code] = (await once(child, 'exit')) as [number | null];
      expect(code).to.equal(0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
