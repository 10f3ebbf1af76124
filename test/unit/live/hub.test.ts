/**
 * The hub between the queue observer and the web UI connections: who gets
 * which event how many times, a change seen twice told once, store reads only
 * for someone who listens for buildsets, and nothing worked out with nobody
 * listening.
 */
import { expect } from 'chai';
import { LiveEvents, type LiveListener } from '../../../src/live/hub.js';
import { parsePath, filterMatches } from '../../../src/live/subscriptions.js';
import { createLogger } from '../../../src/logging/logger.js';
import { MINTED_ID_BASE, type BuildRecord, type BuildsetRecord, type Store, type TaskRecord } from '../../../src/store/store.js';
import type { QueueRun, QueueTaskStatus } from '../../../src/taskcluster/queue-types.js';
import { Writable } from 'node:stream';

const BSID = MINTED_ID_BASE + 1;
const BRID = MINTED_ID_BASE + 2;
const BUILDID = MINTED_ID_BASE + 3;
const T0 = '2026-01-01T00:00:00.000Z';
const T1 = '2026-01-01T00:00:30.000Z';

const task = (overrides: Partial<TaskRecord> = {}): TaskRecord => ({
  taskId: 'task-a',
  buildrequestId: BRID,
  buildsetId: BSID,
  backend: 'queue',
  builderName: 'linux64-opt',
  builderid: 5,
  definition: '{}',
  state: 'created',
  stateReason: null,
  submittedAt: Date.parse(T0),
  status: null,
  statusAt: null,
  final: false,
  ...overrides,
});
const buildset: BuildsetRecord = { bsid: BSID, backend: 'queue', reason: 'forced', submittedAt: Date.parse(T0), externalIdstring: null, sourcestamps: [], properties: '{}', rebuildOf: null };
const status = (run: Partial<QueueRun>): QueueTaskStatus => ({
  taskId: 'task-a',
  taskQueueId: 'q/l',
  schedulerId: '-',
  projectId: 'none',
  taskGroupId: 'g',
  deadline: T1,
  expires: T1,
  retriesLeft: 1,
  state: run.state ?? 'pending',
  runs: [{ runId: 0, state: 'pending', reasonCreated: 'scheduled', scheduled: T0, ...run }],
});
const started = status({ state: 'running', started: T0 });
const finished = status({ state: 'completed', started: T0, resolved: T1, reasonResolved: 'completed' });
const builds: BuildRecord[] = [{ buildid: BUILDID, buildrequestId: BRID, runId: 0, builderName: 'linux64-opt', number: 9, mintedAt: Date.parse(T0) }];

/** A listener subscribed to `paths`, recording the keys of what it gets. */
function listener(...paths: string[]): LiveListener & { got: string[]; messages: Array<{ k: string; m: Record<string, unknown> }> } {
  const filters = paths.map(parsePath);
  const got: string[] = [];
  const messages: Array<{ k: string; m: Record<string, unknown> }> = [];
  return {
    got,
    messages,
    wants: (key) => filters.filter((f) => filterMatches(f, key)).length,
    send: (text) => {
      const parsed = JSON.parse(text) as { k: string; m: Record<string, unknown> };
      got.push(parsed.k);
      messages.push(parsed);
    },
  };
}

function fakeStore(tasks: TaskRecord[]): Pick<Store, 'buildset' | 'tasksOfBuildset'> & { reads: number } {
  const store = {
    reads: 0,
    buildset: async (bsid: number) => {
      store.reads++;
      return bsid === BSID ? buildset : undefined;
    },
    tasksOfBuildset: async () => {
      store.reads++;
      return tasks;
    },
  };
  return store;
}

const quietLogger = () => createLogger({ stream: new Writable({ write: (_c, _e, done) => done() }), level: 'error' });

describe('live/hub', () => {
  it('tells each listener the events its subscriptions match, once per matching subscription, as JSON {k, m}', async () => {
    const hub = new LiveEvents({ store: () => fakeStore([task()]), logger: quietLogger() });
    const all = listener('builds/*/*', 'builds/*/new');
    const requests = listener('buildrequests/*/*');
    const none = listener('changes/*/*');
    for (const l of [all, requests, none]) hub.add(l);
    void hub.observer.statusSeen!(task(), status({}), started, builds);
    await hub.settled();
    expect(all.got).to.deep.equal([`builds/${BUILDID}/new`, `builds/${BUILDID}/new`]);
    expect(requests.got).to.deep.equal([`buildrequests/${BRID}/claimed`]);
    expect(none.got).to.deep.equal([]);
    expect(all.messages[0]!.m).to.include({ buildid: BUILDID, number: 9, builderid: 5, buildrequestid: BRID, complete: false });
  });

  it('tells a change seen twice (two reads of one status) once', async () => {
    const hub = new LiveEvents({ store: () => undefined, logger: quietLogger() });
    const l = listener('builds/*/*');
    hub.add(l);
    void hub.observer.statusSeen!(task(), started, finished, builds);
    void hub.observer.statusSeen!(task(), started, finished, builds);
    await hub.settled();
    expect(l.got).to.deep.equal([`builds/${BUILDID}/finished`]);
  });

  it('announces a confirmed task: its buildset (read from the store only when someone listens for buildsets), then its buildrequest', async () => {
    const store = fakeStore([task()]);
    const hub = new LiveEvents({ store: () => store, logger: quietLogger() });
    const requests = listener('buildrequests/*/*');
    const remove = hub.add(requests);
    hub.observer.taskCreated!(task());
    await hub.settled();
    expect(requests.got).to.deep.equal([`buildrequests/${BRID}/new`]);
    expect(store.reads).to.equal(0);
    remove();

    const everything = listener('buildsets/*/*', 'buildrequests/*/*');
    hub.add(everything);
    hub.observer.taskCreated!(task({ taskId: 'task-b', buildrequestId: BRID + 10 }));
    await hub.settled();
    expect(everything.got).to.deep.equal([`buildsets/${BSID}/new`, `buildrequests/${BRID + 10}/new`]);
    expect(store.reads).to.equal(1);
  });

  it('completes a buildset once its last request completes, its own fresh status standing for the one not saved yet', async () => {
    const other = task({ taskId: 'task-b', buildrequestId: BRID + 1, status: JSON.stringify(finished), final: true });
    const store = fakeStore([task({ status: JSON.stringify(started) }), other]);
    const hub = new LiveEvents({ store: () => store, logger: quietLogger() });
    const l = listener('buildsets/*/*');
    hub.add(l);
    void hub.observer.statusSeen!(task({ status: JSON.stringify(started) }), started, finished, builds);
    await hub.settled();
    expect(l.got).to.deep.equal([`buildsets/${BSID}/complete`]);
    expect(l.messages[0]!.m).to.include({ bsid: BSID, complete: true, results: 0 });

    const waiting = fakeStore([task({ status: JSON.stringify(started) }), task({ taskId: 'task-c', buildrequestId: BRID + 2, status: JSON.stringify(started) })]);
    const hub2 = new LiveEvents({ store: () => waiting, logger: quietLogger() });
    const l2 = listener('buildsets/*/*');
    hub2.add(l2);
    void hub2.observer.statusSeen!(task(), started, finished, builds);
    await hub2.settled();
    expect(l2.got).to.deep.equal([]);
  });

  it('works nothing out while nobody listens, and a store failure costs only the event', async () => {
    const store = fakeStore([task()]);
    const hub = new LiveEvents({ store: () => store, logger: quietLogger() });
    hub.observer.taskCreated!(task());
    void hub.observer.statusSeen!(task(), started, finished, builds);
    await hub.settled();
    expect(store.reads).to.equal(0);
    expect(hub.listening).to.equal(0);

    const broken = new LiveEvents({
      store: () => ({ buildset: () => Promise.reject(new Error('store down')), tasksOfBuildset: () => Promise.reject(new Error('store down')) }),
      logger: quietLogger(),
    });
    const l = listener('buildsets/*/*', 'buildrequests/*/*');
    broken.add(l);
    broken.observer.taskCreated!(task());
    // statusSeen never rejects: a missed live event is no reason for the follow loop to look again.
    expect(await broken.observer.statusSeen!(task(), started, finished, builds)).to.equal(undefined);
    await broken.settled();
    expect(l.got).to.deep.equal([`buildrequests/${BRID}/new`, `buildrequests/${BRID}/complete`]);
  });
});
