/**
 * Taskcluster translation, against the stand-in queue (issue #16, Performance):
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
 * The proxy runs as in production (dist/cli.js serve, node flags of `npm start`,
 * the access log on), on `proxyCpu` when given; the queue, the backend and
 * this client on the CPU this script runs on.
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
import slugid from 'slugid';
import { Pool } from 'undici';
import { productionNodeFlags } from './lib/production.js';
import { freePort, killAllSync, median, spawnPinned, stopProc, waitHttp, type Proc } from './lib/procs.js';

interface Options {
  forces: number;
  warmup: number;
  readTasks: number;
  readSeconds: number;
  cycles: number;
  connections: number;
  proxyCpu: string | null;
}

const given = JSON.parse(process.argv[2] ?? '{}') as Partial<Options>;
const P: Options = {
  forces: given.forces ?? 500,
  warmup: given.warmup ?? 50,
  readTasks: given.readTasks ?? 50,
  readSeconds: given.readSeconds ?? 3,
  cycles: given.cycles ?? 3,
  connections: given.connections ?? 16,
  proxyCpu: given.proxyCpu ?? null,
};
const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..');
const log = (line: string) => process.stderr.write(`${line}\n`);
const r3 = (x: number) => Math.round(x * 1000) / 1000;

export interface QueueTranslationReport {
  node: string;
  force: { samples: number; proxyP50Ms: number; proxyP99Ms: number; directP50Ms: number; directP99Ms: number; addedP50Ms: number };
  read: {
    bytes: number; connections: number; cycles: number; seconds: number;
    storeRps: number; proxiedRps: number; ratio: number; perCycle: number[];
    /** createTask, status and other queue calls the proxy made while the reads were measured. */
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

async function main(): Promise<void> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'strangler-queue-bench-'));
  const procs: Proc[] = [];
  const pools: Pool[] = [];
  try {
    const clientId = 'bench';
    const accessToken = randomBytes(24).toString('base64url');
    const creds = { TASKCLUSTER_CLIENT_ID: clientId, TASKCLUSTER_ACCESS_TOKEN: accessToken };

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
    const [port, adminPort] = [await freePort(), await freePort()];
    const proxy = spawnPinned('proxy', P.proxyCpu, process.execPath, [...productionNodeFlags(REPO), path.join(REPO, 'dist/cli.js'), 'serve', '--config', config, '--port', String(port), '--admin-port', String(adminPort), '--host', '127.0.0.1', '--data-dir', path.join(tmp, 'data'), '--log-level', 'info'], {
      env: { ...creds, STRANGLER_ADMIN_TOKEN: '', LOG_FORMAT: 'json' },
      stdio: ['ignore', 'ignore', 'inherit'],
      cwd: tmp,
    });
    procs.push(proxy);
    await waitHttp(`http://127.0.0.1:${adminPort}/readyz`, proxy, 60_000);

    const viaProxy = new Pool(`http://127.0.0.1:${port}`, { connections: P.connections });
    const toQueue = new Pool(new URL(rootUrl).origin, { connections: 1 });
    pools.push(viaProxy, toQueue);
    const force = async (builder: string): Promise<number> => {
      const res = await viaProxy.request({ method: 'POST', path: '/api/v2/forceschedulers/force', headers: { 'content-type': 'application/json' }, body: FORCE(builder) });
      const text = await res.body.text();
      if (res.statusCode !== 200) throw new Error(`force ${builder}: ${res.statusCode} ${text}`);
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
    const queueCalls = async (): Promise<number> => {
      const res = await fetch(`http://127.0.0.1:${adminPort}/metrics`);
      let total = 0;
      for (const m of (await res.text()).matchAll(/^strangler_queue_calls_total\{[^}]*\} (\S+)$/gm)) total += Number(m[1]);
      return total;
    };

    // ---- (b) first: while no task is unfinished, the proxy has nothing to follow on the queue, so what it asks the queue is the reads' own doing
    const brids: number[] = [];
    for (let i = 0; i < P.readTasks; i++) brids.push(await force('linux64-debug'));
    const readPath = (i: number) => `/api/v2/buildrequests/${brids[i % brids.length]}`;
    const deadline = Date.now() + 60_000;
    let sample = '';
    for (let i = 0; i < brids.length; ) {
      const res = await viaProxy.request({ method: 'GET', path: readPath(i) });
      const text = await res.body.text();
      if (res.statusCode === 200 && /"complete": true/.test(text)) {
        sample = text;
        i++;
      } else if (Date.now() > deadline) throw new Error(`buildrequest ${brids[i]} not complete after 60 s: ${text}`);
      else await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const bytes = Buffer.byteLength(sample);
    const proxiedPath = `/api/v2/builders/win32-debug/builds/311/steps/2/logs/stdio/raw?size=${bytes}`;
    log(`  reads: ${brids.length} completed buildrequests (${bytes} bytes each) vs ${bytes}-byte reads forwarded to a plain backend; ${P.cycles} × ${P.readSeconds} s each, ${P.connections} connections`);
    const closedLoop = async (pathOf: (i: number) => string, seconds: number): Promise<number> => {
      const end = performance.now() + seconds * 1000;
      let done = 0;
      let next = 0;
      await Promise.all(Array.from({ length: P.connections }, async () => {
        while (performance.now() < end) {
          const res = await viaProxy.request({ method: 'GET', path: pathOf(next++) });
          await res.body.dump();
          if (res.statusCode !== 200) throw new Error(`GET ${pathOf(next - 1)}: ${res.statusCode}`);
          done++;
        }
      }));
      return done / seconds;
    };
    await closedLoop(readPath, 1);
    await closedLoop(() => proxiedPath, 1);
    const callsBefore = await queueCalls();
    const store: number[] = [];
    const proxied: number[] = [];
    for (let c = 0; c < P.cycles; c++) {
      const first = c % 2 === 0;
      const a = first ? await closedLoop(readPath, P.readSeconds) : NaN;
      const b = await closedLoop(() => proxiedPath, P.readSeconds);
      const s = first ? a : await closedLoop(readPath, P.readSeconds);
      store.push(s);
      proxied.push(b);
      log(`  cycle ${c + 1}: from the store ${s.toFixed(0)} req/s, proxied ${b.toFixed(0)} req/s (${(s / b).toFixed(2)}×)`);
    }
    const queueCallsDuringReads = (await queueCalls()) - callsBefore;
    // ---- (a) one force at a time, proxy and direct alternating
    log(`queue translation: ${P.warmup} + ${P.forces} forces through the proxy and as many createTask calls directly, alternating`);
    for (let i = 0; i < P.warmup; i++) {
      await force('linux64-opt');
      await createDirect();
    }
    const viaSamples: number[] = [];
    const directSamples: number[] = [];
    for (let i = 0; i < P.forces; i++) {
      const order = i % 2 === 0 ? ['proxy', 'direct'] : ['direct', 'proxy'];
      for (const which of order) {
        const t0 = performance.now();
        if (which === 'proxy') await force('linux64-opt');
        else await createDirect();
        (which === 'proxy' ? viaSamples : directSamples).push(performance.now() - t0);
      }
    }
    const q = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))]!;
    const forceResult = {
      samples: P.forces,
      proxyP50Ms: r3(median(viaSamples)), proxyP99Ms: r3(q(viaSamples, 0.99)),
      directP50Ms: r3(median(directSamples)), directP99Ms: r3(q(directSamples, 0.99)),
      addedP50Ms: r3(median(viaSamples) - median(directSamples)),
    };
    log(`  force p50: through the proxy ${forceResult.proxyP50Ms} ms, direct createTask ${forceResult.directP50Ms} ms, added ${forceResult.addedP50Ms} ms`);

    const perCycle = store.map((s, i) => r3(s / proxied[i]!));
    const report: QueueTranslationReport = {
      node: process.version,
      force: forceResult,
      read: {
        bytes, connections: P.connections, cycles: P.cycles, seconds: P.readSeconds,
        storeRps: Math.round(median(store)), proxiedRps: Math.round(median(proxied)), ratio: median(perCycle), perCycle, queueCallsDuringReads,
      },
    };
    process.stdout.write(`${JSON.stringify(report)}\n`);
  } finally {
    await Promise.all(pools.map((p) => p.close()));
    for (const p of procs.reverse()) await stopProc(p);
    killAllSync();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

await main();
