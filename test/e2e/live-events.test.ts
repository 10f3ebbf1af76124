/**
 * The Buildbot web UI's live view through the proxy: one WebSocket on the
 * proxy's `/ws`, a REAL Buildbot 3.7 master behind it as the legacy side and
 * the stand-in queue with its worker as the new side. The client speaks
 * Buildbot's own protocol (startConsuming, stopConsuming, ping) and must get
 * the master's answers and events unchanged AND the events of builds that run
 * on the queue, with the keys and message shapes the master uses and the ids
 * the REST API then serves. Also: stopConsuming stops the queue's events,
 * a client that sends garbage or an oversized frame hurts nobody else, and
 * the master going away closes the client.
 *
 * Needs Debian's buildbot and buildbot-worker; without them this suite fails
 * with the install command, unless STRANGLER_SKIP_BUILDBOT=1 (then skipped).
 */
import { expect } from 'chai';
import path from 'node:path';
import { Writable } from 'node:stream';
import { WebSocket } from 'ws';
import { createLogger } from '../../src/logging/logger.js';
import { startStrangler } from '../../src/main.js';
import { startStandinQueue, type StandinQueue } from '../../src/standin-queue/index.js';
import { MINTED_ID_BASE } from '../../src/store/store.js';
import { requireBuildbot, startBuildbotMasters, type BuildbotMaster, type BuildbotMasters } from '../support/buildbot.js';
import { BuildbotClient, forceIds, RESULTS, type Json } from '../support/buildbot-client.js';
import { startQueueProxy, type QueueProxy } from '../support/queue-proxy.js';
import { legacyAndQueueYaml } from '../support/tables.js';

const QUEUE = 'proj-live/linux';
const TOKEN = 'live-e2e-secret-access-token-0123';
const ON_QUEUE = 'linux64-opt';
const ON_LEGACY = 'win32-debug';
/** Fields Buildbot fills from its own worker and master rows: null for queue work (docs/taskcluster.md). */
const NULL_ON_QUEUE = ['workerid', 'masterid', 'claimed_by_masterid', 'scheduler'];

interface Pushed {
  k: string;
  m: Json;
}

/** A web UI's connection: what it sent, every frame it got, and waits on them. */
class LiveClient {
  readonly frames: Json[] = [];
  readonly ws: WebSocket;
  readonly opened: Promise<void>;
  readonly closed: Promise<{ code: number; reason: string }>;
  private nextId = 1;

  constructor(url: string) {
    this.ws = new WebSocket(url);
    this.ws.on('message', (data) => this.frames.push(JSON.parse(String(data)) as Json));
    this.ws.on('error', () => undefined);
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('unexpected-response', (_req, res) => reject(new Error(`handshake answered ${res.statusCode}`)));
    });
    this.closed = new Promise((resolve) => this.ws.on('close', (code, reason) => resolve({ code, reason: String(reason) })));
  }

  /** Sends a command and waits for the master's answer to it (matched by `_id`). */
  async command(cmd: string, fields: Json = {}): Promise<Json> {
    const _id = this.nextId++;
    this.ws.send(JSON.stringify({ cmd, _id, ...fields }));
    return this.waitFor((f) => f._id === _id, `the answer to ${cmd} ${JSON.stringify(fields)}`, 10_000);
  }

  get events(): Pushed[] {
    return this.frames.filter((f) => typeof f.k === 'string') as unknown as Pushed[];
  }

  event(key: string): Pushed | undefined {
    return this.events.find((e) => e.k === key);
  }

  async waitFor(check: (frame: Json) => boolean, what: string, timeoutMs: number): Promise<Json> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.frames.find(check);
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`no ${what} within ${timeoutMs} ms; got: ${this.frames.map((f) => f.k ?? JSON.stringify(f)).join(', ')}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  waitForEvent(key: string, timeoutMs = 60_000): Promise<Pushed> {
    return this.waitFor((f) => f.k === key, `event ${key}`, timeoutMs) as unknown as Promise<Pushed>;
  }
}

const keys = (o: Json) => Object.keys(o).sort();
const kinds = (o: Json) => Object.fromEntries(Object.entries(o).map(([k, v]) => [k, v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v]));

/** The master's message and ours for the same event: same keys, same JSON types (null where queue work has no Buildbot row). */
function expectSameShape(label: string, ours: Json, theirs: Json): void {
  expect(keys(ours), `${label} keys`).to.deep.equal(keys(theirs));
  const a = kinds(ours);
  const b = kinds(theirs);
  for (const field of Object.keys(b)) {
    if (NULL_ON_QUEUE.includes(field)) expect(a[field], `${label}.${field} is null for queue work`).to.equal('null');
    else expect(a[field], `${label}.${field}: ours ${JSON.stringify(ours[field])}, the master's ${JSON.stringify(theirs[field])}`).to.equal(b[field]);
  }
}

describe('e2e: the web UI\'s /ws carries the events of queue builds next to the legacy master\'s', function () {
  this.timeout(240_000);
  let bb: BuildbotMasters | undefined;
  let legacy: BuildbotMaster;
  let queue: StandinQueue | undefined;
  let world: QueueProxy | undefined;
  let client: BuildbotClient;
  let wsUrl: string;
  let logger: ReturnType<typeof createLogger>;
  const live: LiveClient[] = [];

  const connect = async () => {
    const c = new LiveClient(wsUrl);
    live.push(c);
    await c.opened;
    return c;
  };

  before(async function () {
    requireBuildbot(this);
    bb = await startBuildbotMasters([{ name: 'legacy', builders: [ON_QUEUE, ON_LEGACY], buildSeconds: 2 }]);
    legacy = bb.byName('legacy');
    queue = await startStandinQueue({
      clients: { proxy: { accessToken: TOKEN, scopes: ['*'] } },
      worker: { taskQueueIds: [QUEUE], startDelayMs: 300, runMs: 1500, failureRate: 0, seed: 7 },
    });
    logger = createLogger({ stream: new Writable({ write: (_c, _e, done) => done() }), level: 'error' });
    world = await startQueueProxy(
      legacyAndQueueYaml({
        legacyUrl: legacy.url,
        rootUrl: queue.rootUrl,
        task: `{ taskQueueId: ${QUEUE}, payload: { command: [echo, 'built \${builder.name}'] } }`,
        routes: `  - jobType: ${ON_QUEUE}\n    backend: queue\n`,
      }),
      { credentials: { clientId: 'proxy', accessToken: TOKEN }, logger, queueFollowIntervalMs: 300, drainTimeoutMs: 2000 },
    );
    client = new BuildbotClient(world.proxy.proxyUrl);
    wsUrl = `${world.proxy.proxyUrl.replace(/^http/, 'ws')}/ws`;
  });

  after(async () => {
    for (const c of live) c.ws.terminate();
    await world?.close();
    await queue?.close();
    await bb?.stopAll();
  });

  it('relays the master\'s answers and events, and adds the queue build\'s with the ids and fields the REST API serves', async () => {
    const ui = await connect();
    // The master answers these itself: the proxy relays its answers unchanged.
    expect(await ui.command('startConsuming', { path: 'builds/*/*' })).to.deep.equal({ msg: 'OK', code: 200, _id: 1 });
    expect(await ui.command('startConsuming', { path: 'buildrequests/*/*' })).to.deep.equal({ msg: 'OK', code: 200, _id: 2 });
    expect(await ui.command('startConsuming', { path: 'buildsets/*/*' })).to.deep.equal({ msg: 'OK', code: 200, _id: 3 });
    expect(await ui.command('ping')).to.deep.equal({ msg: 'pong', code: 200, _id: 4 });
    expect(await ui.command('stopConsuming', { path: 'changes/*/*' })).to.deep.equal({ error: "path was not consumed 'changes/*/*'", code: 400, _id: 5 });

    const [legacyForce, queueForce] = await Promise.all([client.force([ON_LEGACY]), client.force([ON_QUEUE])]);
    expect(legacyForce.headers.get('x-strangler-backend')).to.equal('buildbot');
    expect(queueForce.headers.get('x-strangler-backend')).to.equal('queue');
    const onLegacy = forceIds(legacyForce);
    const onQueue = forceIds(queueForce);
    const legacyBrid = [...onLegacy.brids.values()][0]!;
    const [queueBuilderid, queueBrid] = [...onQueue.brids][0]!;
    expect(queueBrid).to.be.at.least(MINTED_ID_BASE);
    expect(queueBuilderid).to.equal(await legacy.builderId(ON_QUEUE));

    // The legacy master's own events, relayed.
    const legacyRequest = await ui.waitForEvent(`buildrequests/${legacyBrid}/new`);
    const legacyNew = (await ui.waitFor((f) => typeof f.k === 'string' && /^builds\/\d+\/new$/.test(f.k as string) && (f.m as Json).buildrequestid === legacyBrid, 'the legacy build\'s new event', 60_000)) as unknown as Pushed;
    const legacyBuildid = legacyNew.m.buildid as number;
    expect(legacyBuildid).to.be.below(MINTED_ID_BASE);
    const legacyFinished = await ui.waitForEvent(`builds/${legacyBuildid}/finished`);
    expect(legacyFinished.m).to.include({ complete: true, results: RESULTS.SUCCESS });
    const legacyComplete = await ui.waitForEvent(`buildrequests/${legacyBrid}/complete`);
    const legacyBuildsetNew = await ui.waitForEvent(`buildsets/${onLegacy.bsid}/new`);
    const legacyBuildsetComplete = await ui.waitForEvent(`buildsets/${onLegacy.bsid}/complete`);

    // The queue build's events, added by the proxy: without any REST read of it, from the proxy's own following of the task.
    const queueRequest = await ui.waitForEvent(`buildrequests/${queueBrid}/new`);
    expect(queueRequest.m).to.include({ buildrequestid: queueBrid, buildsetid: onQueue.bsid, builderid: queueBuilderid, claimed: false, complete: false, results: -1 });
    const queueNew = (await ui.waitFor((f) => typeof f.k === 'string' && /^builds\/\d+\/new$/.test(f.k as string) && (f.m as Json).buildrequestid === queueBrid, 'the queue build\'s new event', 60_000)) as unknown as Pushed;
    const queueBuildid = queueNew.m.buildid as number;
    expect(queueBuildid).to.be.at.least(MINTED_ID_BASE);
    expect(queueNew.m).to.include({ builderid: queueBuilderid, buildrequestid: queueBrid, complete: false, complete_at: null, results: null });
    expect(queueNew.m.started_at).to.be.a('number');
    expect(queueNew.m.number).to.be.a('number');
    const queueFinished = await ui.waitForEvent(`builds/${queueBuildid}/finished`);
    expect(queueFinished.m).to.include({ buildid: queueBuildid, number: queueNew.m.number, builderid: queueBuilderid, buildrequestid: queueBrid, started_at: queueNew.m.started_at, complete: true, results: RESULTS.SUCCESS });
    const queueClaimed = ui.event(`buildrequests/${queueBrid}/claimed`);
    expect(queueClaimed, 'the queue request\'s claim').not.to.equal(undefined);
    const queueComplete = await ui.waitForEvent(`buildrequests/${queueBrid}/complete`);
    expect(queueComplete.m).to.include({ complete: true, results: RESULTS.SUCCESS, claimed: true });
    const queueBuildsetNew = await ui.waitForEvent(`buildsets/${onQueue.bsid}/new`);
    const queueBuildsetComplete = await ui.waitForEvent(`buildsets/${onQueue.bsid}/complete`);
    expect(queueBuildsetComplete.m).to.include({ bsid: onQueue.bsid, complete: true, results: RESULTS.SUCCESS });

    // In the order a master tells them.
    const order = (k: string) => ui.events.findIndex((e) => e.k === k);
    const queueKeys = [`buildrequests/${queueBrid}/new`, `buildrequests/${queueBrid}/claimed`, `builds/${queueBuildid}/new`, `builds/${queueBuildid}/finished`, `buildrequests/${queueBrid}/complete`, `buildsets/${onQueue.bsid}/complete`];
    expect(queueKeys.map(order), queueKeys.join(' ')).to.deep.equal([...queueKeys.map(order)].sort((a, b) => a - b));
    // Each once: the proxy's looks at the task tell each change once.
    for (const k of queueKeys) expect(ui.events.filter((e) => e.k === k), k).to.have.length(1);

    // The ids and the build the REST API then serves, through the same proxy.
    const served = await client.build(queueBuildid);
    expect(served).to.deep.equal(queueFinished.m);
    expect(await client.buildrequest(queueBrid)).to.deep.equal(queueComplete.m);

    // The same message shapes as the master's own events.
    expectSameShape('build new', queueNew.m, legacyNew.m);
    expectSameShape('build finished', queueFinished.m, legacyFinished.m);
    expectSameShape('buildrequest new', queueRequest.m, legacyRequest.m);
    expectSameShape('buildrequest complete', queueComplete.m, legacyComplete.m);
    expectSameShape('buildset new', queueBuildsetNew.m, legacyBuildsetNew.m);
    expectSameShape('buildset complete', queueBuildsetComplete.m, legacyBuildsetComplete.m);
  });

  it('stops the queue\'s events for a path the client stops consuming, and keeps the others', async () => {
    const ui = await connect();
    await ui.command('startConsuming', { path: 'builds/*/*' });
    await ui.command('startConsuming', { path: 'buildrequests/*/*' });
    expect(await ui.command('stopConsuming', { path: 'builds/*/*' })).to.deep.equal({ msg: 'OK', code: 200, _id: 3 });
    const brid = [...forceIds(await client.force([ON_QUEUE])).brids.values()][0]!;
    await ui.waitForEvent(`buildrequests/${brid}/complete`);
    const builds = await client.buildsOf(brid);
    expect(builds).to.have.length(1);
    // The build ran and finished (its request completed after it), yet nothing about it reached the client.
    expect(ui.events.filter((e) => e.k.startsWith('builds/')).map((e) => e.k)).to.deep.equal([]);
    expect(ui.event(`buildrequests/${brid}/claimed`)).not.to.equal(undefined);
  });

  it('survives clients that send garbage or oversized frames: each loses only its own connection', async () => {
    const garbage = await connect();
    garbage.ws.send('this is not json');
    // Buildbot drops a connection whose frame is not JSON; the proxy closes the client's side with it.
    expect((await garbage.closed).code).to.equal(1001);

    const oversized = await connect();
    oversized.ws.send('x'.repeat(1024 * 1024));
    expect((await oversized.closed).code).to.equal(1009);

    const fine = await connect();
    expect(await fine.command('ping')).to.deep.equal({ msg: 'pong', code: 200, _id: 1 });
    fine.ws.close();
  });

  it('a proxy shutting down closes its web UIs (1001, so they reconnect elsewhere) instead of waiting on them', async () => {
    const second = await startStrangler({ configFile: world!.configFile, port: 0, adminPort: 0, host: '127.0.0.1', logger, dataDir: path.join(world!.dir, 'data-second'), drainTimeoutMs: 30_000 });
    const ui = new LiveClient(`${second.proxyUrl.replace(/^http/, 'ws')}/ws`);
    live.push(ui);
    await ui.opened;
    expect(await ui.command('ping')).to.deep.equal({ msg: 'pong', code: 200, _id: 1 });
    const started = Date.now();
    await second.close();
    expect(Date.now() - started, 'the shutdown did not wait for the drain timeout').to.be.below(10_000);
    expect(await ui.closed).to.deep.equal({ code: 1001, reason: 'the proxy is shutting down' });
  });

  it('closes the client when the master goes away', async () => {
    const ui = await connect();
    expect(await ui.command('ping')).to.deep.equal({ msg: 'pong', code: 200, _id: 1 });
    await legacy.stop();
    const closed = await ui.closed;
    expect(closed.code).to.be.oneOf([1000, 1001]);
    // And a new web UI is told at once that the master cannot be reached.
    const refused = new LiveClient(wsUrl);
    live.push(refused);
    await refused.opened.then(
      () => expect.fail('the handshake should be refused while the master is down'),
      (error: Error) => expect(error.message).to.equal('handshake answered 502'),
    );
  });
});
