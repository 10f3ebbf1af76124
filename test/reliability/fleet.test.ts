/**
 * A fleet (issue #18): three replicas of the proxy (the built CLI, `serve
 * --store postgres://...`, each a process of its own, stopped by its pid)
 * on loopback behind HAProxy (round robin, health checks on each replica's
 * admin /readyz), sharing one real PostgreSQL (a private cluster), in front
 * of a real Buildbot 3.7 master (the legacy side: bb-* job types) and the
 * stand-in queue (the new side: tc-* job types, each task run by its worker).
 *
 * The three replicas start at once against an empty database: the schema is
 * made once. Then, under a steady mix of forces on both sides and reads of
 * the ids they were given, all through HAProxy's one address: the replica
 * holding the leases is killed with SIGKILL, another with SIGTERM (each
 * started again a little later), and PostgreSQL is restarted once.
 * Afterwards:
 * - every force a client got ids for reached exactly one backend exactly
 *   once: one buildrequest on the master (found by the force's reason, which
 *   is unique), or one task on the queue, created by one createTask call,
 *   whose tags carry the ids the client was given; a force that got no ids
 *   reached at most one backend at most once, and one refused with a reason
 *   (503 STORE_UNAVAILABLE) none; nothing reached a backend that no client
 *   asked for;
 * - every id any client was given (bsid, brid, and every buildid seen)
 *   reads back through every replica, asked directly;
 * - every build of those forces was followed to its end and recorded once
 *   (the store's outcomes, keyed per build), nothing is left open, every
 *   replica's admin GET /builds gives the same counts as the store, and the
 *   replicas' strangler_builds_finished_total (the last scrape of each
 *   process that ran) add up to no more than that;
 * - no client saw an error without its reason: every non-2xx answer carries
 *   the proxy's JSON error or a JSON-RPC error with its message, a 503 its
 *   Retry-After, and the only one is the store's while the database is away.
 *   The one exception is honest and counted: a force in flight on the
 *   replica that was SIGKILLed (the queue answers createTask slowly around
 *   the kill, so that some are) gets HAProxy's own 502, or its connection
 *   closed as the replica's was, since a POST that reached a replica may
 *   have made a build and must not be resent; such a force is made at most
 *   once (recovery finishes one the replica had stored). GETs are resent by
 *   HAProxy and never fail so, and nothing is lost on the SIGTERM.
 * It prints a summary: forces, reads, answers by kind, and how long the
 * leases took to be taken over.
 *
 * Needs Debian's buildbot, buildbot-worker, postgresql and haproxy (npm test
 * installs them where it can). Sizes follow STRANGLER_RELIABILITY (kit.ts).
 */
import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { startStandinQueue, type StandinQueue } from '../../src/standin-queue/index.js';
import { LATEST_VERSION } from '../../src/store/migrations.js';
import { RESULT_NAMES } from '../../src/taskcluster/results.js';
import { LINK_TAGS } from '../../src/taskcluster/template.js';
import type { BuildComparison } from '../../src/tracking/compare.js';
import { QUEUE_LEASE } from '../../src/taskcluster/queue-work.js';
import { TRACKING_LEASE } from '../../src/tracking/tracker.js';
import { requireBuildbot, startBuildbotMasters, type BuildbotMaster, type BuildbotMasters } from '../support/buildbot.js';
import { forceIds, sleep } from '../support/buildbot-client.js';
import { commandEnv } from '../support/cli-process.js';
import { HTTP_KEEP_ALIVE_MS, requireHaproxy, startHaproxy, type Haproxy } from '../support/haproxy.js';
import { startPostgres, type PostgresCluster } from '../support/postgres.js';
import { waitFor } from '../support/proxy.js';
import { freePort } from '../support/upstream.js';
import { FULL, ROOT, send, type Response } from './kit.js';

const QUEUE = 'proj-fleet/linux';
const TOKEN = 'fleet-test-secret-access-token';
const LEGACY_BUILDERS = ['bb-pass', 'bb-fail', 'bb-other'];
const QUEUE_BUILDERS = ['tc-pass', 'tc-fail', 'tc-other'];
const REPLICAS = ['r1', 'r2', 'r3'];
/** On SIGTERM a replica keeps taking requests this long with /readyz unready: more than HAProxy needs to mark it down (2 checks 500 ms apart). */
const SHUTDOWN_DELAY_MS = 2_000;
/** The steady load: concurrent forcing and reading clients, and their pause between requests. */
const FORCE_CLIENTS = 2;
const READ_CLIENTS = 3;
const FORCE_PAUSE_MS = 400;
const READ_PAUSE_MS = 100;
/** When the disruptions come, in ms after the load starts, and how long it lasts in all. */
const STEP_MS = FULL ? 20_000 : 8_000;
const LOAD_MS = STEP_MS * 7;
/** Leases are asked for every 5 s (queue-work.ts, tracker.ts): a takeover within this is "within seconds". */
const TAKEOVER_LIMIT_MS = 15_000;
const PG_DOWN_MS = 2_000;
/** How long the queue takes to answer createTask around the SIGKILL. */
const SLOW_CREATE_MS = 1_500;
/** A replica killed without a word is marked down by HAProxy within this (two checks 500 ms apart): until then a request may still reach it. */
const MARKED_DOWN_MS = 2_000;
const LEASE_LINES: Record<string, { held: string; other: string }> = {
  [QUEUE_LEASE]: { held: 'this replica finishes open forces and follows queue tasks', other: 'another replica finishes open forces and follows queue tasks' },
  [TRACKING_LEASE]: { held: 'this replica follows builds on Buildbot-API backends', other: 'another replica follows builds on Buildbot-API backends' },
};

type Kind = 'ok' | 'told' | 'balancer' | 'connection' | 'untold' | 'wrong';

/** One answer a client got, and what it was. */
interface Answer {
  method: string;
  path: string;
  startedAt: number;
  endedAt: number;
  status: number;
  kind: Kind;
  /** The error's code (told), HAProxy's status line (balancer), the socket error (connection), or what was wrong. */
  detail: string;
}

interface Force {
  reason: string;
  builder: string;
  side: 'legacy' | 'queue';
  answer: Answer;
  ids?: { bsid: number; brid: number; builderid: number };
}

/** One process of a replica's life: its log lines of interest, with when they arrived. */
interface Life {
  child: ChildProcess;
  leaseLines: { at: number; lease: string; held: boolean }[];
  /** Its last scrape of strangler_builds_finished_total, summed. */
  lastFinished: number;
  output: string;
}

class Replica {
  port = 0;
  adminPort = 0;
  life: Life | undefined;
  readonly lives: Life[] = [];

  constructor(
    readonly name: string,
    private readonly configFile: string,
    private readonly store: string,
  ) {}

  get adminUrl(): string {
    return `http://127.0.0.1:${this.adminPort}`;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  running(): boolean {
    const child = this.life?.child;
    return child !== undefined && child.exitCode === null && child.signalCode === null;
  }

  /** Starts the process; resolves once it listens. */
  async start(): Promise<void> {
    const child = spawn(
      process.execPath,
      [path.join(ROOT, 'dist/cli.js'), 'serve', '--config', this.configFile, '--store', this.store, '--port', String(this.port), '--admin-port', String(this.adminPort), '--host', '127.0.0.1', '--log-level', 'info'],
      {
        env: { ...commandEnv({ taskcluster: true }), TASKCLUSTER_CLIENT_ID: 'proxy', TASKCLUSTER_ACCESS_TOKEN: TOKEN, STRANGLER_REPLICA: this.name, STRANGLER_SHUTDOWN_DELAY_MS: String(SHUTDOWN_DELAY_MS) },
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: true,
      },
    );
    const life: Life = { child, leaseLines: [], lastFinished: 0, output: '' };
    this.life = life;
    this.lives.push(life);
    liveChildren.add(child);
    child.once('exit', () => liveChildren.delete(child));
    let partial = '';
    const take = (d: Buffer) => {
      const text = partial + d.toString();
      const lines = text.split('\n');
      partial = lines.pop()!;
      const at = Date.now();
      for (const line of lines) {
        for (const [lease, says] of Object.entries(LEASE_LINES)) {
          if (line.includes(says.held)) life.leaseLines.push({ at, lease, held: true });
          else if (line.includes(says.other)) life.leaseLines.push({ at, lease, held: false });
        }
      }
      // Access lines make most of it: the tail is enough to tell what went wrong.
      life.output = (life.output + lines.join('\n') + '\n').slice(-200_000);
    };
    child.stdout!.on('data', take);
    child.stderr!.on('data', take);
    await waitFor(
      () => life.output.includes('strangler-proxy listening') || (this.running() ? undefined : Promise.reject(new Error(`${this.name} exited at start: ${life.output.slice(-3000)}`))),
      30_000,
      `${this.name} to listen`,
    );
  }

  /** Signals the process by its pid; resolves once it exited. */
  async stop(signal: NodeJS.Signals): Promise<void> {
    const child = this.life?.child;
    if (child === undefined || !this.running()) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    process.kill(child.pid!, signal);
    await exited;
  }

  /** Whether this process holds a lease now, by what it last logged about it. */
  holds(lease: string): boolean {
    return this.running() && this.life!.leaseLines.filter((l) => l.lease === lease).at(-1)?.held === true;
  }
}

/** Replicas still running when this process ends (a failed or interrupted run) are killed. */
const liveChildren = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of liveChildren) if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
});

/** `name{labels} value` lines of one metric family, summed. */
function sumOf(metrics: string, name: string): number {
  let sum = 0;
  for (const line of metrics.split('\n')) {
    const m = /^([a-z_]+)\{[^}]*\} (\S+)$/.exec(line);
    if (m && m[1] === name) sum += Number(m[2]);
  }
  return sum;
}

/**
 * What a client was told. A non-2xx answer from a replica carries the proxy's
 * JSON error (`{error, code}`) or a JSON-RPC error with its message; a 503
 * also Retry-After. HAProxy's own answers are its HTML error pages.
 */
function classify(method: string, urlPath: string, startedAt: number, res: Response & { error?: string }): Answer {
  const base = { method, path: urlPath, startedAt, endedAt: Date.now(), status: res.status };
  if (res.status === 0) return { ...base, kind: 'connection', detail: res.error ?? 'no answer' };
  if (res.status >= 200 && res.status < 300) return { ...base, kind: 'ok', detail: '' };
  // HAProxy's own error pages (a replica's errors are JSON).
  const page = /^<html><body><h1>(\d{3} [^<]*)<\/h1>/.exec(res.body);
  if (page !== null) return { ...base, kind: 'balancer', detail: page[1]! };
  let parsed: unknown;
  try {
    parsed = JSON.parse(res.body);
  } catch {
    return { ...base, kind: 'untold', detail: `${res.status} with a body that is not JSON: ${res.body.slice(0, 200)}` };
  }
  const body = parsed as { error?: unknown; code?: unknown };
  let code: string | undefined;
  if (typeof body.code === 'string' && typeof body.error === 'string' && body.error !== '') code = body.code;
  const rpc = body.error as { message?: unknown } | undefined;
  if (code === undefined && typeof rpc?.message === 'string' && rpc.message !== '') code = /\(([A-Z_]+)\)$/.exec(rpc.message)?.[1] ?? 'JSON-RPC error';
  if (code === undefined) return { ...base, kind: 'untold', detail: `${res.status} without a reason: ${res.body.slice(0, 200)}` };
  if (res.status === 503 && res.headers['retry-after'] === undefined) return { ...base, kind: 'untold', detail: `503 ${code} without Retry-After` };
  return { ...base, kind: 'told', detail: code };
}

describe('reliability: a fleet of three replicas behind HAProxy on one PostgreSQL, through a SIGKILL, a SIGTERM and a database restart', function () {
  this.timeout(600_000);
  let postgres: PostgresCluster | undefined;
  let storeUrl: string;
  let bb: BuildbotMasters | undefined;
  let legacy: BuildbotMaster;
  let queue: StandinQueue | undefined;
  let balancer: Haproxy | undefined;
  let dir: string | undefined;
  let replicas: Replica[] = [];
  let builderIds: Map<string, number>;

  before(async function () {
    requireBuildbot(this);
    requireHaproxy();
    if (!existsSync(path.join(ROOT, 'dist/cli.js'))) throw new Error('dist/cli.js is missing: run `npm run build` first (npm test does)');
    const started = await startPostgres();
    if (started.cluster === undefined) throw new Error(started.reason);
    postgres = started.cluster;
    storeUrl = await postgres.createDatabase();
    [bb, queue] = await Promise.all([
      startBuildbotMasters([{ name: 'legacy', builders: [...LEGACY_BUILDERS, ...QUEUE_BUILDERS], buildSeconds: 1, outcomes: { 'bb-fail': 'fail' } }]),
      startStandinQueue({
        clients: { proxy: { accessToken: TOKEN, scopes: ['*'] } },
        worker: { taskQueueIds: [QUEUE], startDelayMs: 200, runMs: 1_500, failureRate: 0, seed: 18 },
      }),
    ]);
    legacy = bb.byName('legacy');
    builderIds = new Map((await legacy.builders()).map((b) => [b.name, b.builderid]));
    dir = mkdtempSync(path.join(tmpdir(), 'strangler-fleet-'));
    const configFile = path.join(dir, 'routes.yaml');
    const onQueue = (jobType: string, outcome: string) => `  - jobType: ${jobType}\n    backend: queue\n    task: { payload: { command: [echo, fleet], outcome: ${outcome} } }\n`;
    writeFileSync(
      configFile,
      `backends:
  buildbot: { url: ${legacy.url}, legacy: true }
  queue:
    kind: taskcluster
    rootUrl: ${queue.rootUrl}
    task:
      taskQueueId: ${QUEUE}
      payload: { command: [echo, fleet] }
routes:
${onQueue('tc-pass', 'success')}${onQueue('tc-fail', 'failure')}${onQueue('tc-other', 'success')}`,
    );
    replicas = REPLICAS.map((name) => new Replica(name, configFile, storeUrl));
    for (const r of replicas) {
      r.port = await freePort();
      r.adminPort = await freePort();
    }
    // All at once, against the empty database: the first test checks they made one schema.
    await Promise.all(replicas.map((r) => r.start()));
    balancer = await startHaproxy({ servers: replicas.map((r) => ({ name: r.name, port: r.port, checkPort: r.adminPort })) });
    await allUp(balancer, REPLICAS);
  });

  after(async function () {
    await Promise.all(replicas.map((r) => r.stop('SIGKILL')));
    await balancer?.stop();
    await queue?.close();
    await bb?.stopAll();
    await postgres?.stop();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('three replicas started at once against an empty database make one schema and all open the store', async function () {
    for (const r of replicas) {
      await waitFor(() => r.life!.output.includes('store open for work on queues and build tracking') || undefined, 20_000, `${r.name} to open the store`);
      const ready = await fetch(`${r.adminUrl}/readyz`);
      expect(ready.status, r.name).to.equal(200);
      expect(ready.headers.get('x-strangler-replica')).to.equal(r.name);
    }
    // Each migration applied once, whichever replica ran it (the others waited for its lock and found nothing to do).
    const db = new pg.Client({ connectionString: storeUrl });
    await db.connect();
    try {
      const { rows } = await db.query<{ version: number; n: string }>('SELECT version, COUNT(*) AS n FROM schema_version GROUP BY version ORDER BY version');
      expect(rows.map((r) => [r.version, Number(r.n)])).to.deep.equal(Array.from({ length: LATEST_VERSION }, (_, i) => [i + 1, 1]));
    } finally {
      await db.end();
    }
  });

  it('every force reaches one backend once, every id reads back on every replica, every build is counted once, every error says why', async function () {
    // Clients keep connections to HAProxy open, and close an idle one before HAProxy would.
    const agent = new http.Agent({ keepAlive: true, maxSockets: FORCE_CLIENTS + READ_CLIENTS, timeout: HTTP_KEEP_ALIVE_MS / 2 });
    const forces: Force[] = [];
    const reads: Answer[] = [];
    /** Buildids clients were given by reads, with the buildrequest they belong to. */
    const buildsSeen = new Map<number, number>();
    const events: { at: number; what: string }[] = [];
    const mark = (what: string) => events.push({ at: Date.now(), what });
    let loading = true;
    let forceCount = 0;

    const forceLoop = async () => {
      while (loading) {
        const n = forceCount++;
        const side = n % 2 === 0 ? 'legacy' : 'queue';
        const builders = side === 'legacy' ? LEGACY_BUILDERS : QUEUE_BUILDERS;
        const builder = builders[Math.floor(n / 2) % builders.length]!;
        const reason = `fleet-force-${n}`;
        const body = JSON.stringify({ jsonrpc: '2.0', method: 'force', id: n, params: { builderNames: [builder], reason, revision: `rev-${n}` } });
        const urlPath = '/api/v2/forceschedulers/force';
        const startedAt = Date.now();
        const res = await send(agent, `${balancer!.url}${urlPath}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
        const answer = classify('POST', urlPath, startedAt, res);
        const force: Force = { reason, builder, side, answer };
        if (answer.kind === 'ok') force.ids = idsOf(res.body);
        if (answer.kind === 'ok' && force.ids === undefined) force.answer = { ...answer, kind: 'untold', detail: `a force answered ${res.status} without ids: ${res.body.slice(0, 200)}` };
        forces.push(force);
        if (force.ids !== undefined) {
          // Read back at once, as a client polling its force does: most likely through another replica.
          const readAt = Date.now();
          const readPath = `/api/v2/buildrequests/${force.ids.brid}`;
          const read = await send(agent, `${balancer!.url}${readPath}`, { headers: { accept: 'application/json' } });
          const readAnswer = classify('GET', readPath, readAt, read);
          const problem = readAnswer.kind === 'ok' ? checkRead(readPath, read.body, force.ids, buildsSeen) : undefined;
          reads.push(problem === undefined ? readAnswer : { ...readAnswer, kind: 'wrong', detail: problem });
        }
        await sleep(FORCE_PAUSE_MS);
      }
    };

    const readLoop = async () => {
      for (let i = 0; loading; i++) {
        const given = forces.filter((f) => f.ids !== undefined);
        if (given.length === 0) {
          await sleep(READ_PAUSE_MS);
          continue;
        }
        let ids: { bsid?: number; brid: number } = given[Math.floor(Math.random() * given.length)]!.ids!;
        const seen = [...buildsSeen];
        let urlPath = [`/api/v2/buildrequests/${ids.brid}`, `/api/v2/buildsets/${ids.bsid!}`, `/api/v2/buildrequests/${ids.brid}/builds`][i % 4];
        if (urlPath === undefined) {
          const [buildid, brid] = seen.length > 0 ? seen[Math.floor(Math.random() * seen.length)]! : [undefined, ids.brid];
          urlPath = buildid === undefined ? `/api/v2/buildrequests/${brid}/builds` : `/api/v2/builds/${buildid}`;
          ids = { brid };
        }
        const startedAt = Date.now();
        const res = await send(agent, `${balancer!.url}${urlPath}`, { headers: { accept: 'application/json' } });
        let answer = classify('GET', urlPath, startedAt, res);
        if (answer.kind === 'ok') {
          const problem = checkRead(urlPath, res.body, ids, buildsSeen);
          if (problem !== undefined) answer = { ...answer, kind: 'wrong', detail: problem };
        }
        reads.push(answer);
        await sleep(READ_PAUSE_MS);
      }
    };

    const scrapeLoop = async () => {
      while (loading) {
        await Promise.all(replicas.map((r) => scrape(r)));
        await sleep(1_000);
      }
    };

    const load = Promise.all([...Array.from({ length: FORCE_CLIENTS }, () => forceLoop()), ...Array.from({ length: READ_CLIENTS }, () => readLoop()), scrapeLoop()]);
    const loadStartedAt = Date.now();
    const at = (step: number) => sleep(Math.max(0, loadStartedAt + step * STEP_MS - Date.now()));

    const takeovers: string[] = [];
    let killedAt = 0;
    let pgDownAt = 0;
    let pgUpAt = 0;
    try {
      // The replica following queue work dies without a word: another takes its leases over. The queue answers
      // createTask slowly meanwhile, so that forces are in the middle of being made on every replica when it dies.
      await at(1);
      queue!.faults.set({ createDelayMs: SLOW_CREATE_MS });
      await sleep(SLOW_CREATE_MS);
      const killed = await holderOf(replicas, QUEUE_LEASE);
      killedAt = Date.now();
      mark(`SIGKILL ${killed.name}`);
      await killed.stop('SIGKILL');
      queue!.faults.reset();
      await at(2);
      takeovers.push(...(await takeoverAfter(replicas, killed, killedAt, 'SIGKILL')));
      await killed.start();
      mark(`${killed.name} started again`);
      await allUp(balancer!, REPLICAS);

      // The one following now stops on SIGTERM: it leaves the balancer first, drains, and releases its leases.
      await at(3);
      const stopped = await holderOf(replicas, QUEUE_LEASE);
      const stoppedAt = Date.now();
      mark(`SIGTERM ${stopped.name}`);
      await stopped.stop('SIGTERM');
      mark(`${stopped.name} exited`);
      await at(4);
      takeovers.push(...(await takeoverAfter(replicas, stopped, stoppedAt, 'SIGTERM')));
      await stopped.start();
      mark(`${stopped.name} started again`);
      await allUp(balancer!, REPLICAS);

      // The database goes away for a moment and comes back: no replica is restarted.
      await at(5);
      pgDownAt = Date.now();
      mark('PostgreSQL stops');
      await postgres!.restart({ downMs: PG_DOWN_MS });
      pgUpAt = Date.now();
      mark('PostgreSQL is back');
      takeovers.push(...(await leasesAfterRestart(replicas, storeUrl, pgUpAt)));
      await at(LOAD_MS / STEP_MS);
    } finally {
      loading = false;
      await load;
    }

    // ------------------------------------------------------------ what the clients saw
    const answers = [...forces.map((f) => f.answer), ...reads];
    const byKind = new Map<string, number>();
    for (const a of answers) {
      const kind = a.kind === 'told' || a.kind === 'balancer' || a.kind === 'connection' ? `${a.kind} ${a.detail}` : a.kind;
      byKind.set(kind, (byKind.get(kind) ?? 0) + 1);
    }
    const given = forces.filter((f) => f.ids !== undefined);
    const lostInFlight = forces.filter((f) => f.answer.kind === 'balancer' || f.answer.kind === 'connection');
    console.log(
      `      fleet: ${forces.length} forces (${forces.filter((f) => f.side === 'legacy').length} legacy, ${forces.filter((f) => f.side === 'queue').length} queue; ${given.length} given ids), ${reads.length} reads over ${((Date.now() - loadStartedAt) / 1000).toFixed(0)} s\n` +
        `      answers: ${[...byKind].map(([k, n]) => `${k}: ${n}`).join(', ')}\n` +
        `      leases: ${takeovers.join('; ')}\n` +
        `      events: ${events.map((e) => `${((e.at - loadStartedAt) / 1000).toFixed(1)} s ${e.what}`).join(', ')}`,
    );
    // Times from the start of the load, as the events above; with HAProxy's log of requests it ended abnormally (their termination state is not ----).
    const shown = (list: Answer[]) =>
      `${JSON.stringify(list.slice(0, 10).map((a) => ({ ...a, startedAt: a.startedAt - loadStartedAt, endedAt: a.endedAt - loadStartedAt })))}\nHAProxy: ${balancer!.output().split('\n').filter((l) => / - - (?!----)\S{4} /.test(l)).slice(-30).join('\n')}`;
    const none = (kind: Kind) => answers.filter((a) => a.kind === kind).map((a) => `${a.method} ${a.path} ${a.detail} at ${a.startedAt - loadStartedAt}..${a.endedAt - loadStartedAt} ms`);
    expect(none('untold'), `answers without a reason: ${shown(answers.filter((a) => a.kind === 'untold'))}`).to.deep.equal([]);
    expect(none('wrong'), 'reads that did not give back what the client was given').to.deep.equal([]);
    // Only a force on the replica killed without a word loses its answer: HAProxy's own 502, or, on a connection to the
    // replica that HAProxy had used before, the client's connection closed as the replica's was (what a client of that
    // replica alone would see). The client does not know whether its force was made, as with any connection that
    // breaks, and is never told it was not. Nothing else is lost.
    const lost = answers.filter((a) => a.kind === 'balancer' || a.kind === 'connection');
    expect(lost.filter((a) => a.method !== 'POST' || !(a.startedAt <= killedAt + MARKED_DOWN_MS && a.endedAt >= killedAt)).map((a) => `${a.method} ${a.path} ${a.kind} ${a.detail}`), `answers lost other than forces in flight at the SIGKILL: ${shown(lost)}`).to.deep.equal([]);
    // A reason a client was told: the database away, only while it was (and the moment the pool reconnects).
    const told = answers.filter((a) => a.kind === 'told');
    expect(told.filter((a) => a.detail !== 'STORE_UNAVAILABLE' || a.endedAt < pgDownAt || a.startedAt > pgUpAt + 5_000), `errors other than the store while it was away: ${shown(told)}`).to.deep.equal([]);
    expect(given.length, 'forces given ids').to.be.greaterThan(forces.length / 2);
    expect(given.filter((f) => f.side === 'legacy').length).to.be.greaterThan(0);
    expect(given.filter((f) => f.side === 'queue').length).to.be.greaterThan(0);

    // ------------------------------------------------------------ every build ends: then the backends are the truth
    // A force a replica died in the middle of is finished by recovery (the replica holding queue-follow).
    await waitFor(async () => {
      const db = new pg.Client({ connectionString: storeUrl });
      await db.connect();
      try {
        return (await db.query(`SELECT 1 FROM task WHERE state = 'pending'`)).rowCount === 0 ? true : undefined;
      } finally {
        await db.end();
      }
    }, 60_000, 'no force left pending in the store');
    const allBuildsEnded = async () => {
      const requests = await legacy.buildrequests();
      const tasks = queue!.tasks();
      return requests.every((r) => r.complete) && tasks.every((t) => ['completed', 'failed', 'exception'].includes(t.status.state)) ? { requests, tasks } : undefined;
    };
    const { requests, tasks } = await waitFor(allBuildsEnded, 120_000, 'every build on both sides to end');

    // Every force reached one backend once: the master by the force's reason, the queue by its task's description.
    const buildsets = new Map(((await legacy.getJson<{ buildsets: { bsid: number; reason: string }[] }>('/buildsets')).buildsets).map((b) => [b.bsid, b.reason]));
    const reasonOf = (text: string) => /fleet-force-\d+$/.exec(text)?.[0];
    const onLegacy = new Map<string, typeof requests>();
    for (const r of requests) {
      const reason = reasonOf(buildsets.get(r.buildsetid) ?? '');
      if (reason !== undefined) onLegacy.set(reason, [...(onLegacy.get(reason) ?? []), r]);
    }
    const onQueue = new Map<string, typeof tasks>();
    for (const t of tasks) {
      const reason = reasonOf(t.task.metadata.description);
      if (reason !== undefined) onQueue.set(reason, [...(onQueue.get(reason) ?? []), t]);
    }
    const created = new Map<string, number>();
    const bodies = new Map<string, Set<string | undefined>>();
    for (const call of queue!.createCalls()) {
      if (call.created) created.set(call.taskId, (created.get(call.taskId) ?? 0) + 1);
      bodies.set(call.taskId, (bodies.get(call.taskId) ?? new Set()).add(call.body));
    }
    // A resend (recovery of a force a replica died in the middle of) is the identical body: the queue's idempotency holds.
    expect([...bodies].filter(([, b]) => b.size !== 1).map(([taskId]) => taskId), 'tasks sent with different bodies').to.deep.equal([]);
    const asked = new Set(forces.map((f) => f.reason));
    expect(requests.filter((r) => !asked.has(reasonOf(buildsets.get(r.buildsetid) ?? '') ?? '')), 'buildrequests on the master no client asked for').to.deep.equal([]);
    expect(tasks.filter((t) => !asked.has(reasonOf(t.task.metadata.description) ?? '')).map((t) => t.taskId), 'tasks on the queue no client asked for').to.deep.equal([]);
    expect([...created].filter(([, n]) => n !== 1), 'tasks created more than once').to.deep.equal([]);
    const misplaced: string[] = [];
    for (const force of forces) {
      const there = onLegacy.get(force.reason) ?? [];
      const taken = onQueue.get(force.reason) ?? [];
      const reached = there.length + taken.length;
      if (force.ids !== undefined) {
        const { bsid, brid, builderid } = force.ids;
        if (builderid !== builderIds.get(force.builder)) misplaced.push(`${force.reason}: builderid ${builderid} for ${force.builder}`);
        if (reached !== 1) misplaced.push(`${force.reason}: given ids, reached backends ${reached} times`);
        else if (force.side === 'legacy' && !(there[0]?.buildrequestid === brid && there[0]?.buildsetid === bsid)) misplaced.push(`${force.reason}: the master's ids differ from the client's`);
        else if (force.side === 'queue' && !(taken[0]?.task.tags[LINK_TAGS.buildrequest] === String(brid) && taken[0]?.task.tags[LINK_TAGS.buildset] === String(bsid) && taken[0]?.task.tags[LINK_TAGS.builderid] === String(builderid))) {
          misplaced.push(`${force.reason}: the task's tags differ from the client's ids: ${JSON.stringify(taken[0]?.task.tags)}`);
        }
      } else if (force.answer.kind === 'told' && reached !== 0) misplaced.push(`${force.reason}: answered ${force.answer.detail}, yet reached a backend`);
      else if (reached > 1) misplaced.push(`${force.reason}: answered ${force.answer.kind} ${force.answer.detail}, reached backends ${reached} times`);
      if ((force.side === 'legacy' && taken.length > 0) || (force.side === 'queue' && there.length > 0)) misplaced.push(`${force.reason}: reached the wrong side`);
    }
    expect(misplaced, 'forces and what reached the backends').to.deep.equal([]);

    // ------------------------------------------------------------ every id given reads back through every replica
    await allUp(balancer!, REPLICAS);
    const finalBuilds = new Map<number, number>();
    const problems: string[] = [];
    await inParallel(given, 6, async (force) => {
      const { bsid, brid } = force.ids!;
      for (const r of replicas) {
        for (const urlPath of [`/api/v2/buildsets/${bsid}`, `/api/v2/buildrequests/${brid}`, `/api/v2/buildrequests/${brid}/builds`]) {
          const res = await send(agent, `${r.url}${urlPath}`, { headers: { accept: 'application/json' } });
          const problem = res.status !== 200 ? `${res.status} ${res.body.slice(0, 200)}` : checkRead(urlPath, res.body, force.ids!, finalBuilds);
          if (problem !== undefined) problems.push(`${r.name} GET ${urlPath}: ${problem}`);
        }
      }
    });
    for (const [buildid, brid] of buildsSeen) if (finalBuilds.get(buildid) !== brid) problems.push(`build ${buildid} seen during the run for buildrequest ${brid} is not among its builds at the end`);
    await inParallel([...finalBuilds], 6, async ([buildid, brid]) => {
      for (const r of replicas) {
        const res = await send(agent, `${r.url}/api/v2/builds/${buildid}`, { headers: { accept: 'application/json' } });
        const problem = res.status !== 200 ? `${res.status} ${res.body.slice(0, 200)}` : checkRead(`/api/v2/builds/${buildid}`, res.body, { brid }, new Map());
        if (problem !== undefined) problems.push(`${r.name} GET /api/v2/builds/${buildid}: ${problem}`);
      }
    });
    agent.destroy();
    expect(problems.slice(0, 20), `${problems.length} reads through the replicas that failed`).to.deep.equal([]);

    // ------------------------------------------------------------ every build followed to its end, recorded once
    const givenBrids = new Set(given.filter((f) => f.side === 'legacy').map((f) => f.ids!.brid));
    const legacyBuilds = await legacy.builds();
    const forceOf = new Map(forces.map((f) => [f.reason, f]));
    const byBrid = new Map(given.map((f) => [f.ids!.brid, f]));
    /** Each build to be recorded: its job type, and the force that made it (to say when that force was answered). */
    const expectedKeys = new Map<string, { jobType: string; force: Force | undefined }>();
    for (const b of legacyBuilds) if (givenBrids.has(b.buildrequestid)) expectedKeys.set(`buildbot build:${b.buildid}`, { jobType: nameOf(builderIds, b.builderid), force: byBrid.get(b.buildrequestid) });
    const ranKeys = new Set(legacyBuilds.map((b) => `buildbot build:${b.buildid}`));
    for (const t of tasks) {
      for (const [runId, run] of t.status.runs.entries()) {
        if (run.started === undefined || run.resolved === undefined) continue;
        expectedKeys.set(`queue ${t.taskId}/${runId}`, { jobType: t.task.tags[LINK_TAGS.builder]!, force: forceOf.get(t.task.metadata.description) });
        ranKeys.add(`queue ${t.taskId}/${runId}`);
      }
    }
    const db = new pg.Client({ connectionString: storeUrl });
    await db.connect();
    let outcomes: { key: string; job_type: string; backend: string; result: number }[];
    try {
      const recorded = async () => {
        const { rows } = await db.query<{ key: string; job_type: string; backend: string; result: number }>(`SELECT backend || ' ' || build_key AS key, job_type, backend, result FROM build_outcome`);
        const keys = new Set(rows.map((r) => r.key));
        return [...expectedKeys.keys()].every((k) => keys.has(k)) ? rows : undefined;
      };
      outcomes = await waitFor(recorded, 60_000, 'every build recorded').catch(async (error: Error) => {
        const keys = new Set(((await db.query<{ key: string }>(`SELECT backend || ' ' || build_key AS key FROM build_outcome`)).rows).map((r) => r.key));
        const missing = [...expectedKeys].filter(([k]) => !keys.has(k)).map(([k, { force }]) => `${k} (${force?.reason ?? 'no force'}, answered ${force === undefined ? '?' : force.answer.endedAt - loadStartedAt} ms)`);
        throw new Error(`${error.message}: not recorded: ${missing.slice(0, 20).join(', ')}`);
      });
      expect(outcomes.filter((o) => !ranKeys.has(o.key)), 'outcomes of builds that never ran').to.deep.equal([]);
      expect(outcomes.filter((o) => expectedKeys.has(o.key) && expectedKeys.get(o.key)!.jobType !== o.job_type), 'outcomes under another job type').to.deep.equal([]);
      // Followed to the end: nothing is left awaited or open.
      await waitFor(async () => ((await db.query('SELECT 1 FROM tracked_request UNION ALL SELECT 1 FROM open_build')).rowCount === 0 ? true : undefined), 30_000, 'no tracked request or open build left');
    } finally {
      await db.end();
    }

    // Every replica's comparison gives the store's counts; the counters of every process that ran add up to no more.
    const fromStore = new Map<string, number>();
    for (const o of outcomes) {
      const k = `${o.job_type} ${o.backend} ${RESULT_NAMES[o.result]}`;
      fromStore.set(k, (fromStore.get(k) ?? 0) + 1);
    }
    for (const r of replicas) {
      const res = await fetch(`${r.adminUrl}/builds?window=1h`);
      expect(res.status, `${r.name} GET /builds`).to.equal(200);
      const comparison = (await res.json()) as BuildComparison;
      const counts = new Map<string, number>();
      for (const j of comparison.jobTypes) for (const side of j.sides) for (const [result, n] of Object.entries(side.results)) if (n > 0) counts.set(`${j.jobType} ${side.backend} ${result}`, n);
      expect(counts, `${r.name}'s comparison`).to.deep.equal(fromStore);
    }
    await Promise.all(replicas.map((r) => scrape(r)));
    const counted = replicas.flatMap((r) => r.lives).reduce((sum, life) => sum + life.lastFinished, 0);
    console.log(`      builds: ${outcomes.length} recorded (${expectedKeys.size} of forces given ids); counted by the replicas' processes: ${counted}; forces in flight at the SIGKILL that lost their answer: ${lostInFlight.length} (made all the same: ${lostInFlight.filter((f) => onLegacy.has(f.reason) || onQueue.has(f.reason)).length})`);
    expect(counted, 'builds counted by the replicas').to.be.at.most(outcomes.length);
    expect(counted, 'builds counted by the replicas').to.be.greaterThan(0);
    for (const r of replicas) expect(r.running(), `${r.name} still runs`).to.equal(true);
  });
});

/** The ids of a force's JSON-RPC answer (one builder), or undefined when it has none. */
function idsOf(body: string): Force['ids'] {
  try {
    const { bsid, brids } = forceIds({ status: 200, headers: new Headers(), result: (JSON.parse(body) as { result?: unknown }).result });
    const [builderid, brid] = [...brids][0]!;
    return { bsid, brid, builderid };
  } catch {
    return undefined;
  }
}

/** What a read of an id a client was given must say back (the ids it names); a buildid found is added to `builds`, with its buildrequest. */
function checkRead(urlPath: string, text: string, ids: { bsid?: number; brid: number }, builds: Map<number, number>): string | undefined {
  let body: Record<string, unknown>;
  try {
    body = JSON.parse(text) as Record<string, unknown>;
  } catch {
    return `not JSON: ${text.slice(0, 200)}`;
  }
  const [one, more] = (['builds', 'buildrequests', 'buildsets'].map((key) => body[key]).find(Array.isArray) ?? []) as Record<string, unknown>[];
  if (/^\/api\/v2\/buildrequests\/\d+\/builds$/.test(urlPath)) {
    const found = body.builds;
    if (!Array.isArray(found)) return `no builds list: ${text.slice(0, 200)}`;
    for (const b of found as Record<string, unknown>[]) {
      if (b.buildrequestid !== ids.brid) return `a build of buildrequest ${String(b.buildrequestid)}`;
      builds.set(b.buildid as number, ids.brid);
    }
    return undefined;
  }
  const id = Number(urlPath.split('/').at(-1));
  if (more !== undefined) return `more than one item: ${text.slice(0, 200)}`;
  if (urlPath.startsWith('/api/v2/buildrequests/')) return one?.buildrequestid === id && one.buildsetid === ids.bsid ? undefined : `not buildrequest ${id} of buildset ${ids.bsid}: ${text.slice(0, 200)}`;
  if (urlPath.startsWith('/api/v2/buildsets/')) return one?.bsid === id ? undefined : `not buildset ${id}: ${text.slice(0, 200)}`;
  return one?.buildid === id && one.buildrequestid === ids.brid ? undefined : `not build ${id} of buildrequest ${ids.brid}: ${text.slice(0, 200)}`;
}

function nameOf(ids: Map<string, number>, builderid: number): string {
  return [...ids].find(([, id]) => id === builderid)?.[0] ?? `builder ${builderid}`;
}

/** A replica's finished-builds counter, kept as the last value its process gave. */
async function scrape(r: Replica): Promise<void> {
  const life = r.life;
  if (life === undefined || !r.running()) return;
  try {
    const res = await fetch(`${r.adminUrl}/metrics`, { signal: AbortSignal.timeout(2_000) });
    const value = sumOf(await res.text(), 'strangler_builds_finished_total');
    if (life === r.life) life.lastFinished = value;
  } catch {
    // A replica going away: its last scrape stands.
  }
}

/** Until HAProxy sees every named replica UP. */
async function allUp(balancer: Haproxy, names: string[]): Promise<void> {
  await waitFor(async () => {
    const states = await balancer.states();
    return names.every((n) => states.get(n) === 'UP') ? true : undefined;
  }, 30_000, `HAProxy to see ${names.join(', ')} up`);
}

/** The replica holding a lease (by what the replicas logged); waits for one. */
async function holderOf(replicas: Replica[], lease: string): Promise<Replica> {
  return waitFor(() => replicas.find((r) => r.holds(lease)), 20_000, `a replica to hold ${lease}`);
}

/** How long each lease the stopped replica held took to be taken by another. */
async function takeoverAfter(replicas: Replica[], stopped: Replica, at: number, how: string): Promise<string[]> {
  const said: string[] = [];
  const held = stopped.life!.leaseLines;
  for (const lease of Object.keys(LEASE_LINES)) {
    if (held.filter((l) => l.lease === lease).at(-1)?.held !== true) {
      said.push(`${lease} not held by ${stopped.name} at its ${how}`);
      continue;
    }
    const taken = await waitFor(() => replicas.filter((r) => r !== stopped).flatMap((r) => r.life!.leaseLines.filter((l) => l.lease === lease && l.held && l.at >= at).map((l) => ({ r, at: l.at })))[0], TAKEOVER_LIMIT_MS, `${lease} taken over after the ${how} of ${stopped.name}`);
    said.push(`${lease} taken over by ${taken.r.name} ${((taken.at - at) / 1000).toFixed(1)} s after the ${how} of ${stopped.name}`);
  }
  return said;
}

/**
 * How long the leases took to be held again once the database was back. A
 * restart ends every session, and with it every lease's lock: the server's
 * own list of locks says when each is held again (leases are the advisory
 * locks taken with two keys; the migrations' lock has one). The replicas'
 * logs then say which holds each.
 */
async function leasesAfterRestart(replicas: Replica[], storeUrl: string, upAt: number): Promise<string[]> {
  const leases = Object.keys(LEASE_LINES);
  const heldAt = await waitFor(async () => {
    const db = new pg.Client({ connectionString: storeUrl });
    try {
      await db.connect();
      const { rows } = await db.query<{ n: string }>(`SELECT COUNT(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 AND granted`);
      return Number(rows[0]!.n) === leases.length ? Date.now() : undefined;
    } catch {
      return undefined;
    } finally {
      await db.end().catch(() => undefined);
    }
  }, TAKEOVER_LIMIT_MS, 'the leases to be held again after the PostgreSQL restart');
  // A replica learns it lost a lease at its next round (every 5 s): after that, each is held by one replica, by their own words.
  await sleep(6_000);
  const holders = leases.map((lease) => {
    const claim = replicas.filter((r) => r.holds(lease)).map((r) => r.name);
    expect(claim, `the replicas that say they hold ${lease}`).to.have.length(1);
    return `${lease} by ${claim[0]!}`;
  });
  return [`both leases held again ${((heldAt - upAt) / 1000).toFixed(1)} s after PostgreSQL was back (${holders.join(', ')})`];
}

async function inParallel<T>(items: T[], width: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < items.length) await work(items[next++]!);
    }),
  );
}
