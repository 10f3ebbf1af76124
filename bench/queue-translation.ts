/**
 * Taskcluster translation, against the stand-in queue (issue #16, Performance),
 * and the store's PostgreSQL implementation against the embedded one (issue #18):
 *
 * (a) a force translated by the proxy (routing, the store commit, the
 *     Hawk-signed createTask, the answer in Buildbot's shape) against the
 *     same createTask sent to the queue directly, Hawk-signed by the client;
 *     one request at a time, alternating, medians. Target: the proxy adds at
 *     most 5 ms at the median.
 * (b) reads of finished work (`GET /api/v2/buildrequests/{id}` of completed
 *     tasks), answered from the store, against a read of the same number of
 *     bytes that the proxy forwards to a plain backend (bench/lib/upstream.mjs);
 *     closed loop, `connections` at once, paired cycles. Target: ≥ 0.5× the
 *     proxied read's throughput. The proxy's queue calls are counted during
 *     the reads: served from the store means none.
 *
 * Both run against two proxies at once, alike but for the store: the embedded
 * one (a temp folder) and PostgreSQL (a private cluster from Debian's package,
 * test/support/postgres.ts), each force and each read cycle taking turns
 * between them, so that the machine's load falls on both alike. Targets: the
 * PostgreSQL proxy's median force at most 5 ms over the embedded one's; its
 * reads at ≥ 0.5× the embedded one's, paired cycle by cycle. Without
 * PostgreSQL (`postgres: false`, or its binaries missing) only the embedded
 * proxy runs and `postgresNote` says why.
 *
 * The proxies run as in production (dist/cli.js serve, node flags of `npm
 * start`, the access log on), on `proxyCpu` when given; the queue, the
 * backend, PostgreSQL (started by this process, so on its CPU) and this client
 * on the CPU this script runs on.
 *
 *   node --import tsx bench/queue-translation.ts '{"forces":500,"readSeconds":3,"cycles":3}'
 * Prints one JSON line; progress goes to stderr.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import hawk from 'hawk';
import pg from 'pg';
import slugid from 'slugid';
import { Pool } from 'undici';
import { startPostgres, type PostgresCluster } from '../test/support/postgres.js';
import { FINISHED_VIEWS_MEMORY } from '../src/taskcluster/reads.js';
import { productionNodeFlags } from './lib/production.js';
import { CLK_TCK, cpuTicks, freePort, killAllSync, median, spawnPinned, stopProc, waitHttp, type Proc } from './lib/procs.js';

interface Options {
  forces: number;
  warmup: number;
  readTasks: number;
  readSeconds: number;
  cycles: number;
  connections: number;
  proxyCpu: string | null;
  postgres: boolean;
}

const given = JSON.parse(process.argv[2] ?? '{}') as Partial<Options>;
const P: Options = {
  forces: given.forces ?? 500,
  warmup: given.warmup ?? 50,
  // More than the finished tasks a proxy keeps in memory, read in turn: every read is the store's.
  readTasks: given.readTasks ?? FINISHED_VIEWS_MEMORY + 200,
  readSeconds: given.readSeconds ?? 3,
  cycles: given.cycles ?? 3,
  connections: given.connections ?? 16,
  proxyCpu: given.proxyCpu ?? null,
  postgres: given.postgres ?? true,
};
const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..');
const log = (line: string) => process.stderr.write(`${line}\n`);
const r3 = (x: number) => Math.round(x * 1000) / 1000;
const q = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))]!;

type StoreKind = 'embedded' | 'postgres';

export interface QueueTranslationReport {
  node: string;
  /** The embedded store's proxy against createTask sent directly. */
  force: { samples: number; proxyP50Ms: number; proxyP99Ms: number; directP50Ms: number; directP99Ms: number; addedP50Ms: number };
  /** The embedded store's proxy: reads from its store against reads it forwards. */
  read: {
    bytes: number; connections: number; cycles: number; seconds: number;
    storeRps: number; proxiedRps: number; ratio: number; perCycle: number[];
    /** createTask, status and other queue calls the proxy made while the reads were measured. */
    queueCallsDuringReads: number;
  };
  /** The PostgreSQL store's proxy against the embedded store's, measured in the same turns; null when it did not run. */
  postgres: PostgresComparison | null;
  /** Why the PostgreSQL store was not measured; null when it was. */
  postgresNote: string | null;
}

export interface PostgresComparison {
  /** The private cluster's version and the settings that decide what a commit costs. */
  server: { version: string; settings: Record<string, string> };
  force: {
    samples: number; embeddedP50Ms: number; embeddedP99Ms: number; postgresP50Ms: number; postgresP99Ms: number;
    /** Median of the PostgreSQL proxy's forces minus the embedded one's. */
    addedP50Ms: number;
    /** CPU time of each proxy process during its own forces' turns, µs per force (ticks of 1/CLK_TCK s, summed over the turns). */
    cpuUsPerForce: Record<StoreKind, number>;
  };
  read: {
    bytes: number; embeddedRps: number; postgresRps: number;
    /** Median over cycles of PostgreSQL's req/s ÷ the embedded store's in the same cycle. */
    ratio: number; perCycle: number[];
    /** CPU time of each proxy process during its own read cycles, µs per read. */
    cpuUsPerRead: Record<StoreKind, number>;
    queueCallsDuringReads: number;
  };
}

const IDLE_QUEUE = 'proj-bench/idle';
const DONE_QUEUE = 'proj-bench/done';
const FORCE = (builder: string) => JSON.stringify({
  jsonrpc: '2.0', method: 'force', id: 1,
  params: { builderNames: [builder], reason: 'bench', revision: '3f1c2e9a7b5d4c6e8f0a1b2c3d4e5f6a7b8c9d0e', branch: 'main', project: 'autoland' },
});

function routesYaml(upstreamUrl: string, rootUrl: string): string {
  const template = (queue: string) => `
    task:
      taskQueueId: ${queue}
      payload: { command: [make, all, 'BUILDER=\${builder.name}', 'REVISION=\${revision}'], maxRunTime: 3600 }
      metadata: { description: '\${reason}' }`;
  return `backends:
  buildbot: { url: ${upstreamUrl}, legacy: true }
  queue: { kind: taskcluster, rootUrl: ${rootUrl} }
default: buildbot
routes:
  - jobType: linux64-opt
    backend: queue${template(IDLE_QUEUE)}
  - jobType: linux64-debug
    backend: queue${template(DONE_QUEUE)}
`;
}

/** A createTask body like the ones the proxy sends: the template's, with the proxy's metadata, tags and dates. */
function directTask(): string {
  const now = Date.now();
  return JSON.stringify({
    taskQueueId: IDLE_QUEUE,
    created: new Date(now).toJSON(),
    deadline: new Date(now + 24 * 3600_000).toJSON(),
    payload: { command: ['make', 'all', 'BUILDER=linux64-opt', 'REVISION=3f1c2e9a7b5d4c6e8f0a1b2c3d4e5f6a7b8c9d0e'], maxRunTime: 3600 },
    metadata: { name: 'linux64-opt', description: 'bench', owner: 'bench@example.com', source: 'https://example.com/bench' },
    tags: { 'buildbot-buildsetid': '1', 'buildbot-buildrequestid': '1', 'buildbot-builder': 'linux64-opt', 'buildbot-builderid': '17', 'created-by': 'bench' },
  });
}

/** A proxy under test: the same routes, queue and backend as the others; its own store. */
interface Subject {
  store: StoreKind;
  proc: Proc;
  adminPort: number;
  pool: Pool;
  /** The completed buildrequests it minted: what its reads ask for. */
  brids: number[];
  /** The size of its answer to such a read. */
  bytes: number;
}

/** One thing measured in turns with the others: a force or a closed loop of reads, by whom. */
interface Contender {
  id: string;
  /** The proxy that serves it, whose CPU time during its turns is counted. */
  proc?: Proc;
  /** Its result goes to `value` of inTurns (reads: how many were done). */
  run(): Promise<unknown>;
}

/**
 * `rounds` turns; in each every contender runs once, the order rotated by one
 * each turn so that none always follows another. By id: each turn's sample
 * (its duration in ms, or what `value` makes of its result and duration), and
 * the CPU ticks its proxy used during its own turns.
 */
async function inTurns(contenders: Contender[], rounds: number, value = (_result: unknown, ms: number) => ms): Promise<Map<string, { samples: number[]; ticks: number }>> {
  const out = new Map(contenders.map((c) => [c.id, { samples: [] as number[], ticks: 0 }]));
  for (let round = 0; round < rounds; round++) {
    for (let k = 0; k < contenders.length; k++) {
      const c = contenders[(k + round) % contenders.length]!;
      const mine = out.get(c.id)!;
      const ticks0 = c.proc ? cpuTicks(c.proc.pid) : 0;
      const t0 = performance.now();
      const result = await c.run();
      mine.samples.push(value(result, performance.now() - t0));
      if (c.proc) mine.ticks += cpuTicks(c.proc.pid) - ticks0;
    }
  }
  return out;
}

/** The private cluster's version and what decides the cost of a commit there. */
async function serverSettings(url: string): Promise<PostgresComparison['server']> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const names = ['fsync', 'synchronous_commit', 'wal_sync_method', 'full_page_writes', 'commit_delay', 'shared_buffers', 'max_connections'];
    const { rows } = await client.query<{ name: string; setting: string }>('select name, current_setting(name) as setting from pg_settings where name = any($1) order by name', [names]);
    const version = (await client.query<{ server_version: string }>('show server_version')).rows[0]!.server_version;
    return { version, settings: Object.fromEntries(rows.map((r) => [r.name, r.setting])) };
  } finally {
    await client.end();
  }
}

async function main(): Promise<void> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'strangler-queue-bench-'));
  const procs: Proc[] = [];
  const pools: Pool[] = [];
  let cluster: PostgresCluster | undefined;
  try {
    const clientId = 'bench';
    const accessToken = randomBytes(24).toString('base64url');
    const creds = { TASKCLUSTER_CLIENT_ID: clientId, TASKCLUSTER_ACCESS_TOKEN: accessToken };

    let postgresNote: string | null = P.postgres ? null : 'not asked for (postgres: false)';
    if (P.postgres) {
      const started = await startPostgres().catch((error: unknown): { cluster?: undefined; reason: string } => ({ reason: `PostgreSQL did not start: ${(error as Error).message}` }));
      cluster = started.cluster;
      if (started.cluster === undefined) {
        postgresNote = started.reason;
        log(`queue translation: the PostgreSQL store is NOT measured: ${postgresNote}`);
      }
    }

    const queue = spawnPinned('standin-queue', null, process.execPath, ['--import', 'tsx', path.join(REPO, 'src/standin-queue/main.ts'), '--port', '0', '--task-queue', DONE_QUEUE, '--start-delay-ms', '0', '--run-ms', '20'], { env: creds, cwd: REPO, stdio: ['ignore', 'pipe', 'inherit'] });
    procs.push(queue);
    const rootUrl = await new Promise<string>((resolve, reject) => {
      let out = '';
      queue.child.stdout!.on('data', (c: Buffer) => {
        out += c.toString();
        const line = out.split('\n').find((l) => l.startsWith('{'));
        if (line) resolve((JSON.parse(line) as { rootUrl: string }).rootUrl);
      });
      queue.exited.then((code) => reject(new Error(`the stand-in queue exited ${code}`)));
    });

    const upstreamPort = await freePort();
    const upstream = spawnPinned('upstream', null, process.execPath, [path.join(HERE, 'lib/upstream.mjs')], { env: { PORT: String(upstreamPort) } });
    procs.push(upstream);
    await waitHttp(`http://127.0.0.1:${upstreamPort}/api/v2/builders`, upstream);

    const config = path.join(tmp, 'routes.yaml');
    fs.writeFileSync(config, routesYaml(`http://127.0.0.1:${upstreamPort}`, rootUrl));
    const startProxy = async (store: StoreKind, storeArgs: string[]): Promise<Subject> => {
      const [port, adminPort] = [await freePort(), await freePort()];
      const proc = spawnPinned(`proxy-${store}`, P.proxyCpu, process.execPath, [...productionNodeFlags(REPO), path.join(REPO, 'dist/cli.js'), 'serve', '--config', config, '--port', String(port), '--admin-port', String(adminPort), '--host', '127.0.0.1', ...storeArgs, '--log-level', 'info'], {
        // STRANGLER_STORE empty: the store is the one the arguments name, whatever the caller's environment says.
        env: { ...creds, STRANGLER_ADMIN_TOKEN: '', STRANGLER_STORE: '', LOG_FORMAT: 'json' },
        stdio: ['ignore', 'ignore', 'inherit'],
        cwd: tmp,
      });
      procs.push(proc);
      await waitHttp(`http://127.0.0.1:${adminPort}/readyz`, proc, 60_000);
      const pool = new Pool(`http://127.0.0.1:${port}`, { connections: P.connections });
      pools.push(pool);
      return { store, proc, adminPort, pool, brids: [], bytes: 0 };
    };
    const embedded = await startProxy('embedded', ['--data-dir', path.join(tmp, 'data')]);
    const subjects = [embedded];
    let postgres: Subject | undefined;
    let server: PostgresComparison['server'] | undefined;
    if (cluster) {
      const url = await cluster.createDatabase();
      server = await serverSettings(url);
      // SECURITY: the URL holds no password (trust auth on loopback, test/support/postgres.ts).
      postgres = await startProxy('postgres', ['--store', url]);
      subjects.push(postgres);
      log(`queue translation: PostgreSQL ${server.version} (${Object.entries(server.settings).map(([k, v]) => `${k}=${v}`).join(', ')}) on port ${cluster.port}`);
    }

    const toQueue = new Pool(new URL(rootUrl).origin, { connections: 1 });
    pools.push(toQueue);
    const force = async (s: Subject, builder: string): Promise<number> => {
      const res = await s.pool.request({ method: 'POST', path: '/api/v2/forceschedulers/force', headers: { 'content-type': 'application/json' }, body: FORCE(builder) });
      const text = await res.body.text();
      if (res.statusCode !== 200) throw new Error(`force ${builder} (${s.store} store): ${res.statusCode} ${text}`);
      const { result } = JSON.parse(text) as { result: [number, Record<string, number>] };
      return Object.values(result[1])[0]!;
    };
    const createDirect = async (): Promise<void> => {
      const taskPath = `/api/queue/v1/task/${slugid.nice()}`;
      const { header } = hawk.client.header(`${rootUrl}${taskPath}`, 'PUT', { credentials: { id: clientId, key: accessToken, algorithm: 'sha256' } });
      const res = await toQueue.request({ method: 'PUT', path: taskPath, headers: { 'content-type': 'application/json', accept: 'application/json', authorization: header }, body: directTask() });
      const text = await res.body.text();
      if (res.statusCode !== 200) throw new Error(`createTask: ${res.statusCode} ${text}`);
    };
    const queueCalls = async (s: Subject): Promise<number> => {
      const res = await fetch(`http://127.0.0.1:${s.adminPort}/metrics`);
      let total = 0;
      for (const m of (await res.text()).matchAll(/^strangler_queue_calls_total\{[^}]*\} (\S+)$/gm)) total += Number(m[1]);
      return total;
    };

    // ---- (b) first: while no task is unfinished, the proxies have nothing to follow on the queue, so what they ask the queue is the reads' own doing
    const readPath = (s: Subject) => (i: number) => `/api/v2/buildrequests/${s.brids[i % s.brids.length]}`;
    for (const s of subjects) {
      for (let i = 0; i < P.readTasks; i++) s.brids.push(await force(s, 'linux64-debug'));
      const deadline = Date.now() + 60_000;
      for (let i = 0; i < s.brids.length; ) {
        const res = await s.pool.request({ method: 'GET', path: readPath(s)(i) });
        const text = await res.body.text();
        if (res.statusCode === 200 && /"complete": true/.test(text)) {
          s.bytes = Buffer.byteLength(text);
          i++;
        } else if (Date.now() > deadline) throw new Error(`buildrequest ${s.brids[i]} (${s.store} store) not complete after 60 s: ${text}`);
        else await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    const bytes = embedded.bytes;
    const proxiedPath = `/api/v2/builders/win32-debug/builds/311/steps/2/logs/stdio/raw?size=${bytes}`;
    const closedLoop = async (s: Subject, pathOf: (i: number) => string, seconds: number): Promise<number> => {
      const end = performance.now() + seconds * 1000;
      let done = 0;
      let next = 0;
      await Promise.all(Array.from({ length: P.connections }, async () => {
        while (performance.now() < end) {
          const res = await s.pool.request({ method: 'GET', path: pathOf(next++) });
          await res.body.dump();
          if (res.statusCode !== 200) throw new Error(`GET ${pathOf(next - 1)} (${s.store} store): ${res.statusCode}`);
          done++;
        }
      }));
      return done;
    };
    const readers: Contender[] = [
      ...subjects.map((s): Contender => ({ id: s.store, proc: s.proc, run: () => closedLoop(s, readPath(s), P.readSeconds) })),
      { id: 'proxied', run: () => closedLoop(embedded, () => proxiedPath, P.readSeconds) },
    ];
    log(`  reads: ${P.readTasks} completed buildrequests per store (${subjects.map((s) => `${s.store} ${s.bytes} bytes`).join(', ')}) vs ${bytes}-byte reads forwarded to a plain backend; ${P.cycles} × ${P.readSeconds} s each, ${P.connections} connections`);
    for (const s of subjects) await closedLoop(s, readPath(s), 1);
    await closedLoop(embedded, () => proxiedPath, 1);
    const callsBefore = await Promise.all(subjects.map(queueCalls));
    const reads = await inTurns(readers, P.cycles, (done) => Number(done) / P.readSeconds);
    const callsDuring = (await Promise.all(subjects.map(queueCalls))).map((n, i) => n - callsBefore[i]!);
    const rpsOf = (id: string) => reads.get(id)!.samples;
    const perCycle = (a: string, b: string) => rpsOf(a).map((x, c) => r3(x / rpsOf(b)[c]!));
    for (let c = 0; c < P.cycles; c++) log(`  cycle ${c + 1}: ${readers.map((r) => `${r.id} ${rpsOf(r.id)[c]!.toFixed(0)} req/s`).join(', ')}`);
    const cpuUsPerRead = (id: string) => Math.round((reads.get(id)!.ticks * 1e6) / CLK_TCK / (rpsOf(id).reduce((a, x) => a + x, 0) * P.readSeconds));

    // ---- (a) one force at a time, the proxies and direct taking turns
    const forcers: Contender[] = [
      ...subjects.map((s): Contender => ({ id: s.store, proc: s.proc, run: () => force(s, 'linux64-opt') })),
      { id: 'direct', run: createDirect },
    ];
    log(`queue translation: ${P.warmup} + ${P.forces} forces through each proxy (${subjects.map((s) => s.store).join(', ')}) and as many createTask calls directly, taking turns`);
    await inTurns(forcers, P.warmup);
    const forces = await inTurns(forcers, P.forces);
    const msOf = (id: string) => forces.get(id)!.samples;
    const forceResult = {
      samples: P.forces,
      proxyP50Ms: r3(median(msOf('embedded'))), proxyP99Ms: r3(q(msOf('embedded'), 0.99)),
      directP50Ms: r3(median(msOf('direct'))), directP99Ms: r3(q(msOf('direct'), 0.99)),
      addedP50Ms: r3(median(msOf('embedded')) - median(msOf('direct'))),
    };
    log(`  force p50: through the proxy ${forceResult.proxyP50Ms} ms, direct createTask ${forceResult.directP50Ms} ms, added ${forceResult.addedP50Ms} ms`);
    const cpuUsPerForce = (id: string) => Math.round((forces.get(id)!.ticks * 1e6) / CLK_TCK / P.forces);

    let comparison: PostgresComparison | null = null;
    if (postgres && server) {
      comparison = {
        server,
        force: {
          samples: P.forces,
          embeddedP50Ms: forceResult.proxyP50Ms, embeddedP99Ms: forceResult.proxyP99Ms,
          postgresP50Ms: r3(median(msOf('postgres'))), postgresP99Ms: r3(q(msOf('postgres'), 0.99)),
          addedP50Ms: r3(median(msOf('postgres')) - median(msOf('embedded'))),
          cpuUsPerForce: { embedded: cpuUsPerForce('embedded'), postgres: cpuUsPerForce('postgres') },
        },
        read: {
          bytes: postgres.bytes,
          embeddedRps: Math.round(median(rpsOf('embedded'))), postgresRps: Math.round(median(rpsOf('postgres'))),
          ratio: median(perCycle('postgres', 'embedded')), perCycle: perCycle('postgres', 'embedded'),
          cpuUsPerRead: { embedded: cpuUsPerRead('embedded'), postgres: cpuUsPerRead('postgres') },
          queueCallsDuringReads: callsDuring[1]!,
        },
      };
      log(`  PostgreSQL store: force p50 ${comparison.force.postgresP50Ms} vs ${comparison.force.embeddedP50Ms} ms embedded (added ${comparison.force.addedP50Ms} ms); reads ${comparison.read.postgresRps} vs ${comparison.read.embeddedRps} req/s (${comparison.read.ratio.toFixed(2)}×)`);
    }

    const report: QueueTranslationReport = {
      node: process.version,
      force: forceResult,
      read: {
        bytes, connections: P.connections, cycles: P.cycles, seconds: P.readSeconds,
        storeRps: Math.round(median(rpsOf('embedded'))), proxiedRps: Math.round(median(rpsOf('proxied'))),
        ratio: median(perCycle('embedded', 'proxied')), perCycle: perCycle('embedded', 'proxied'), queueCallsDuringReads: callsDuring[0]!,
      },
      postgres: comparison,
      postgresNote,
    };
    process.stdout.write(`${JSON.stringify(report)}\n`);
  } finally {
    await Promise.all(pools.map((p) => p.close()));
    // The proxies before the database they hold connections to.
    for (const p of procs.reverse()) await stopProc(p);
    killAllSync();
    await cluster?.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

await main();
