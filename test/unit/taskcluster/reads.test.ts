/**
 * TaskStatuses with the embedded store: a finished task's view (its task,
 * status and builds) is kept once read, since a final task never changes
 * again; a task still running is read afresh each time. The queue is never
 * asked here (a final task needs no queue call, the running one's status is
 * fresh), so its client points at a closed port.
 */
import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { createLogger } from '../../../src/logging/logger.js';
import { openStore } from '../../../src/store/open.js';
import type { Store, TaskRecord } from '../../../src/store/store.js';
import { QueueClient } from '../../../src/taskcluster/queue-client.js';
import { TaskStatuses } from '../../../src/taskcluster/reads.js';
import { Upstream } from '../../../src/upstream/upstream.js';
import { buildset, resolved, running, statusOf, task } from '../../support/queue-work.js';
import { legacyAndQueueYaml, tableFrom } from '../../support/tables.js';

const quiet = () => createLogger({ stream: new Writable({ write: (_c, _e, done) => done() }) });

describe('taskcluster/reads: TaskStatuses', () => {
  const table = tableFrom(legacyAndQueueYaml({ legacyUrl: 'http://127.0.0.1:9', rootUrl: 'http://127.0.0.1:9', task: '{ taskQueueId: proj/linux, payload: {} }' }));
  let dir: string;
  let store: Store;
  let upstream: Upstream;
  let statuses: TaskStatuses;

  beforeEach(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'strangler-reads-'));
    store = await openStore(undefined, { dataDir: dir });
    upstream = new Upstream();
    statuses = new TaskStatuses(store, new QueueClient(upstream, () => undefined, {}), upstream, quiet());
  });

  afterEach(async () => {
    await upstream.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const stored = async (record: TaskRecord) => {
    await store.recordBuildset(buildset, [record]);
    return (await store.task(record.buildrequestId))!;
  };

  it('answers a finished task from memory once read: the store is not asked again, even when it is away', async () => {
    const finished = await stored(task({ status: JSON.stringify(statusOf([resolved(0, 'completed', 'completed')])), statusAt: Date.now(), final: true }));
    const first = await statuses.view(finished, table.backends, table.legacy);
    expect(first.status?.state).to.equal('completed');
    expect(first.builds.map((b) => b.runId)).to.deep.equal([0]);
    await store.close();
    expect(statuses.finishedView(finished.buildrequestId)).to.equal(first);
    expect(await statuses.view(finished, table.backends, table.legacy)).to.equal(first);
  });

  it('reads a task still running afresh each time', async () => {
    const underWay = await stored(task({ status: JSON.stringify(statusOf([running(0)])), statusAt: Date.now(), final: false }));
    const first = await statuses.view(underWay, table.backends, table.legacy);
    expect(first.status?.state).to.equal('running');
    expect(statuses.finishedView(underWay.buildrequestId)).to.equal(undefined);
    await store.close();
    let failure: unknown;
    await statuses.view(underWay, table.backends, table.legacy).catch((error: unknown) => (failure = error));
    expect((failure as { code?: string } | undefined)?.code).to.equal('STORE_UNAVAILABLE');
  });
});
