/**
 * What tracking builds in flight costs the proxy (issue #17, Performance:
 * 10,000 builds in flight for under 5 % of one core and under 50 MiB).
 *
 * Two proxies run as in production (dist/cli.js serve, node flags of
 * `npm start`, the access log on, each its own --data-dir), on `proxyCpu`
 * when given, with the same routes: `linux64-*` to a stand-in queue
 * (src/standin-queue), the rest to a legacy Buildbot master, a scripted
 * stand-in (bench/lib/standin-master.ts); each proxy its own queue and
 * master. Each gets the same forces: `queueBuilds` onto the queue and
 * `legacyBuilds` onto the master (the first legacy force alone, so the
 * follower has its cursor, as in a proxy that has run for a while).
 *
 * - The tracked proxy's builds stay in flight: its queue's worker runs each
 *   task for an hour, its master's builds run until the bench ends, and the
 *   master sends `/ws` update events for them at `eventsPerSecond` (a real
 *   master announces each step's start and end).
 * - The reference proxy's builds finish at once (its queue's worker runs a
 *   task 50 ms, its master a build 1 s): it served the same requests and
 *   recorded as many finished builds, and has none in flight.
 *
 * Once the tracked proxy's in-flight gauge reads every build and the first
 * sight of each (a build number minted per task, a buildrequest's
 * submitted_at per legacy build) is over, the reference has recorded every
 * build as finished, `settleS` more, and the reference has given back the
 * young generation V8 grew while it took the forces (its memory reducer
 * does that a minute or two after it goes idle; at most `memoryWaitS`),
 * both are measured over the same `windowS`: CPU time from
 * /proc/<pid>/stat, RSS sampled every second (median). The cost of the
 * builds in flight is the difference. Also reported: the queue calls per
 * second the tracked proxy made (its own strangler_queue_calls_total), the
 * calls per second its master answered, by kind, the gauge before and after
 * the window (the run fails unless it reads every build both times), heap
 * by V8 space and event-loop delay at the window's end.
 *
 *   node --import tsx bench/build-tracking.ts '{"queueBuilds":5000,"legacyBuilds":5000,"windowS":60}'
 *   node --import tsx bench/build-tracking.ts '{"cpuProfDir":"/tmp/prof"}'     # and where the tracked proxy's CPU goes
 *   node --import tsx bench/build-tracking.ts '{"dist":"/tmp/other/dist"}'     # another build of the proxy, same scenario
 * Prints one JSON line; progress goes to stderr.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { Pool } from 'undici';
import { summarizeProfile, type ProfileSummary } from './lib/cpuprofile.js';
import { productionNodeFlags } from './lib/production.js';
import { busyTicks, CLK_TCK, cpuTicks, systemTicks, freePort, httpGet, killAllSync, median, procStatusBytes, sleep, spawnPinned, stopProc, waitHttp, type Proc } from './lib/procs.js';
import { startStandinMaster, type StandinMaster } from './lib/standin-master.js';

interface Options {
  queueBuilds: number;
  legacyBuilds: number;
  /** Forces in flight at once while the builds are put in flight. */
  concurrency: number;
  /** `/ws` update events per second from the master; default: each legacy build twice per 2 minutes (a step's start and end). */
  eventsPerSecond: number | null;
  /** Seconds without first-sight calls that say the first sight of every build is over. */
  quietS: number;
  settleS: number;
  /** At most this long for the reference to give back the young generation V8 grew while it took the forces (see `referenceSettled`). */
  memoryWaitS: number;
  windowS: number;
  proxyCpu: string | null;
  /** Profiles the tracked proxy (node --cpu-prof) and summarises the window's samples in the report; the raw .cpuprofile is kept in this directory. */
  cpuProfDir: string | null;
  /** The build of the proxy both sides run (`dist/` by default): another folder measures a change against the same scenario. */
  dist: string;
}

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..');
const given = JSON.parse(process.argv[2] ?? '{}') as Partial<Options>;
const P: Options = {
  queueBuilds: given.queueBuilds ?? 5000,
  legacyBuilds: given.legacyBuilds ?? 5000,
  concurrency: given.concurrency ?? 16,
  eventsPerSecond: given.eventsPerSecond ?? null,
  quietS: given.quietS ?? 6,
  settleS: given.settleS ?? 10,
  memoryWaitS: given.memoryWaitS ?? 240,
  windowS: given.windowS ?? 60,
  proxyCpu: given.proxyCpu ?? null,
  cpuProfDir: given.cpuProfDir ?? null,
  dist: path.resolve(given.dist ?? path.join(REPO, 'dist')),
};
const EVENTS_PER_S = P.eventsPerSecond ?? Math.round((P.legacyBuilds * 2) / 120);
const MiB = 2 ** 20;
const log = (line: string) => process.stderr.write(`${line}\n`);
const r1 = (x: number) => Math.round(x * 10) / 10;
const r4 = (x: number) => Math.round(x * 1e4) / 1e4;

const TASK_QUEUE = 'proj-bench/builds';
const QUEUE_JOB_TYPES = ['linux64-opt', 'linux64-debug', 'linux64-asan', 'linux64-tsan'];
const LEGACY_JOB_TYPES = ['win64-opt', 'win64-debug', 'macosx64-opt', 'macosx64-debug'];
/** Calls a tracker makes once per build, when it first sees it (the settling is over when they stop). */
const FIRST_SIGHT_CALLS = ['builders/<b>/builds', 'buildrequests/<id>', 'builds?buildrequestid='];
/** The tracked side's task runs: far past the measurement, while the stand-in worker's reclaims keep each claim alive. */
const LONG_RUN_MS = 3_600_000;
/** V8's young generation of an idle process: one semi-space pair at its smallest. */
const YOUNG_IDLE_MIB = 2;
/** The reference side's runs and builds: over almost at once. */
const SHORT_RUN_MS = 50;
const SHORT_BUILD_MS = 1000;

export interface BuildTrackingReport {
  node: string;
  params: Options & { eventsPerSecond: number };
  builds: { queue: number; legacy: number; total: number };
  /** Seconds the forces took, and from the last force to the window's start. */
  forceS: number;
  settleS: number;
  /** Whether the reference had given back its young generation (at most YOUNG_IDLE_MIB) before the window; false after `memoryWaitS`. */
  referenceSettled: boolean;
  /** The in-flight gauge (strangler_builds_in_flight summed) of the tracked proxy, before and after the window, by backend after. */
  inFlight: { before: number; after: number; byBackend: Record<string, number>; reference: number };
  windowS: number;
  /** Share of one core; `trackedSystem`: the part of `tracked` spent in the kernel (the store's fsyncs, sockets). */
  cpu: { tracked: number; reference: number; added: number; trackedSystem: number };
  /** The same every 10 s of the window, with the machine's other load then (cores), to set one against the other. */
  cpuSlices: Array<{ endS: number; tracked: number; reference: number; otherCores: number }>;
  rssMiB: { tracked: number; reference: number; added: number; trackedBeforeForces: number };
  /** At the window's end (node's heap, used and reserved; memory outside it that JS objects hold), and RSS every second of the window. */
  memoryMiB: Record<'tracked' | 'reference', { heapUsed: number; heapTotal: number; external: number; rssSamples: number[]; spaces: Record<string, { total: number; used: number }> }>;
  /** Node's event-loop delay over the window (monitorEventLoopDelay, 10 ms resolution): what a request arriving then may wait before the proxy looks at it. */
  eventLoopDelayMs: Record<'tracked' | 'reference', { p50: number; p99: number; max: number }>;
  /** Calls the tracked proxy made to the queue during the window, per second, by Queue method (its own strangler_queue_calls_total). */
  queueCallsPerS: { total: number; byMethod: Record<string, number> };
  /** Every call the tracked proxy's master answered before the window (the forces and the first sight of each build), by kind. */
  masterCallsBeforeWindow: Record<string, number>;
  /** Calls the master answered the tracked proxy during the window, per second, by kind (`ws event`: what it sent on /ws); `total` leaves out the events: what tracking asks. */
  masterCallsPerS: { total: number; byKind: Record<string, number> };
  /** All the reference proxy asked its master, per second: health checks, and its follower's rounds with no build open. */
  referenceMasterCallsPerS: number;
  /** strangler_build_tracking_errors_total of the tracked proxy by the end, by operation; and warnings it logged. */
  trackingErrors: Record<string, number>;
  warnings: string[];
  /** Machine load during the window: all CPUs' busy time, and what was not these proxies, this script (the masters run in it) or the queues, in cores. */
  machine: { cpus: number; busyCores: number; otherCores: number; loadAvg: number[] };
  /** With `cpuProfDir`: the tracked proxy's profile, the window's samples only (the profiler's own cost is in the CPU numbers then). */
  profile?: ProfileSummary;
}

const FORCE = (builder: string, i: number) => JSON.stringify({
  jsonrpc: '2.0', method: 'force', id: i,
  params: { builderNames: [builder], reason: 'bench: build tracking', revision: '3f1c2e9a7b5d4c6e8f0a1b2c3d4e5f6a7b8c9d0e', branch: 'main', project: 'autoland' },
});

function routesYaml(masterUrl: string, rootUrl: string): string {
  return `backends:
  buildbot: { url: ${masterUrl}, legacy: true }
  queue: { kind: taskcluster, rootUrl: ${rootUrl} }
default: buildbot
routes:
  - jobType: 'linux64-*'
    backend: queue
    task:
      taskQueueId: ${TASK_QUEUE}
      payload: { command: [make, all, 'BUILDER=\${builder.name}', 'REVISION=\${revision}'], maxRunTime: 7200 }
      metadata: { description: '\${reason}' }
`;
}

interface Proxy {
  name: string;
  proc: Proc;
  port: number;
  adminPort: number;
  logFile: string;
}

async function startProxy(name: string, tmp: string, config: string, env: NodeJS.ProcessEnv, nodeArgs: string[]): Promise<Proxy> {
  const [port, adminPort] = [await freePort(), await freePort()];
  const logFile = path.join(tmp, `${name}.log`);
  const out = fs.openSync(logFile, 'w');
  const proc = spawnPinned(name, P.proxyCpu, process.execPath, [...productionNodeFlags(REPO), ...nodeArgs, path.join(P.dist, 'cli.js'), 'serve', '--config', config, '--port', String(port), '--admin-port', String(adminPort), '--host', '127.0.0.1', '--data-dir', path.join(tmp, `${name}-data`), '--log-level', 'info'], {
    env: { ...env, STRANGLER_ADMIN_TOKEN: '', LOG_FORMAT: 'json' },
    stdio: ['ignore', out, 'inherit'],
    cwd: tmp,
  });
  fs.closeSync(out);
  await waitHttp(`http://127.0.0.1:${adminPort}/readyz`, proc, 60_000);
  return { name, proc, port, adminPort, logFile };
}

type Samples = Array<{ labels: Record<string, string>; value: number }>;

/** One scrape of a proxy's /metrics: each sample of a family, by its labels. (A scrape also starts node's event-loop delay histogram over.) */
async function scrapeAll(proxy: Proxy): Promise<(family: string) => Samples> {
  const { body } = await httpGet(`http://127.0.0.1:${proxy.adminPort}/metrics`, 10_000);
  return (family) => {
    const out: Samples = [];
    for (const m of body.matchAll(new RegExp(`^${family}(?:\\{([^}]*)\\})? (\\S+)$`, 'gm'))) {
      const labels = Object.fromEntries([...(m[1] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1]!, l[2]!]));
      out.push({ labels, value: Number(m[2]) });
    }
    return out;
  };
}

async function scrape(proxy: Proxy, family: string): Promise<Samples> {
  return (await scrapeAll(proxy))(family);
}
const sum = (samples: Array<{ value: number }>) => samples.reduce((a, s) => a + s.value, 0);
function byLabel(samples: Array<{ labels: Record<string, string>; value: number }>, label: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of samples) out[s.labels[label] ?? ''] = (out[s.labels[label] ?? ''] ?? 0) + s.value;
  return out;
}
function diff(after: Record<string, number>, before: Record<string, number>, perS: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(after)) {
    const d = v - (before[k] ?? 0);
    if (d !== 0) out[k] = r4(d / perS);
  }
  return out;
}

async function until(what: string, timeoutS: number, check: () => Promise<boolean> | boolean, everyMs = 500): Promise<void> {
  const end = Date.now() + timeoutS * 1000;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutS} s waiting for ${what}`);
    await sleep(everyMs);
  }
}

function warningsOf(file: string): string[] {
  const out: string[] = [];
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    if (!/"level":"(warn|error)"/.test(line)) continue;
    try {
      const { message, ...rest } = JSON.parse(line) as { message: string; level: string; timestamp?: string };
      delete rest.timestamp;
      out.push(`${message} ${JSON.stringify(rest)}`.slice(0, 300));
    } catch {
      out.push(line.slice(0, 300));
    }
  }
  return out;
}

interface Side {
  name: 'tracked' | 'reference';
  queue: Proc;
  master: StandinMaster;
  proxy: Proxy;
  pool: Pool;
}

async function startQueue(name: string, runMs: number, env: NodeJS.ProcessEnv): Promise<{ proc: Proc; rootUrl: string }> {
  const proc = spawnPinned(name, null, process.execPath, ['--import', 'tsx', path.join(REPO, 'src/standin-queue/main.ts'), '--port', '0', '--task-queue', TASK_QUEUE, '--start-delay-ms', '25', '--run-ms', String(runMs)], { env, cwd: REPO, stdio: ['ignore', 'pipe', 'inherit'] });
  const rootUrl = await new Promise<string>((resolve, reject) => {
    let out = '';
    proc.child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (line) resolve((JSON.parse(line) as { rootUrl: string }).rootUrl);
    });
    proc.exited.then((code) => reject(new Error(`${name} exited ${code}`)));
  });
  return { proc, rootUrl };
}

async function startSide(name: Side['name'], tmp: string, env: NodeJS.ProcessEnv, procs: Proc[], masters: StandinMaster[]): Promise<Side> {
  const inFlight = name === 'tracked';
  const queue = await startQueue(`${name}-queue`, inFlight ? LONG_RUN_MS : SHORT_RUN_MS, env);
  procs.push(queue.proc);
  const master = await startStandinMaster({ builders: [...QUEUE_JOB_TYPES, ...LEGACY_JOB_TYPES], historyBuilds: 100, eventsPerSecond: EVENTS_PER_S, ...(inFlight ? {} : { buildMs: SHORT_BUILD_MS }) });
  masters.push(master);
  const config = path.join(tmp, `${name}.yaml`);
  fs.writeFileSync(config, routesYaml(master.url, queue.rootUrl));
  const profile = inFlight && P.cpuProfDir !== null ? ['--cpu-prof', '--cpu-prof-dir', P.cpuProfDir] : [];
  const proxy = await startProxy(name, tmp, config, env, profile);
  procs.push(proxy.proc);
  return { name, queue: queue.proc, master, proxy, pool: new Pool(`http://127.0.0.1:${proxy.port}`, { connections: P.concurrency }) };
}

async function force(side: Side, builder: string, i: number): Promise<void> {
  const res = await side.pool.request({ method: 'POST', path: '/api/v2/forceschedulers/force', headers: { 'content-type': 'application/json' }, body: FORCE(builder, i) });
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`${side.name}: force ${builder}: ${res.statusCode} ${text}`);
  const result = (JSON.parse(text) as { result?: [number, Record<string, number>] }).result;
  if (!Array.isArray(result) || Object.keys(result[1]).length !== 1) throw new Error(`${side.name}: force ${builder}: not a Buildbot answer: ${text}`);
}

/** The same forces on each side: one legacy force alone (the follower starts with it and sets its cursor), then the queue's, then the rest. */
async function forceAll(side: Side): Promise<void> {
  await force(side, LEGACY_JOB_TYPES[0]!, 0);
  await until(`${side.name}: the follower's first scan`, 30, () => (side.master.calls()['builds?order=-buildid'] ?? 0) > 0);
  const batch = async (jobTypes: readonly string[], count: number, from: number) => {
    let next = 0;
    await Promise.all(Array.from({ length: Math.min(P.concurrency, count) }, async () => {
      while (next < count) {
        const i = next++;
        await force(side, jobTypes[i % jobTypes.length]!, from + i);
      }
    }));
  };
  await batch(QUEUE_JOB_TYPES, P.queueBuilds, 1);
  await batch(LEGACY_JOB_TYPES, P.legacyBuilds - 1, 1 + P.queueBuilds);
}

async function main(): Promise<void> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'strangler-tracking-bench-'));
  const procs: Proc[] = [];
  const masters: StandinMaster[] = [];
  const sides: Side[] = [];
  try {
    const creds = { TASKCLUSTER_CLIENT_ID: 'bench', TASKCLUSTER_ACCESS_TOKEN: randomBytes(24).toString('base64url') };
    sides.push(...(await Promise.all([startSide('tracked', tmp, creds, procs, masters), startSide('reference', tmp, creds, procs, masters)])));
    const [tracked, reference] = sides as [Side, Side];
    await sleep(2000);
    const trackedBeforeForces = procStatusBytes(tracked.proxy.proc.pid, 'VmRSS') / MiB;
    const total = P.queueBuilds + P.legacyBuilds;

    // ---- the same forces through both proxies, at the same time
    log(`build tracking: through each of two proxies, ${P.queueBuilds} forces onto a queue and ${P.legacyBuilds} onto a legacy master, ${P.concurrency} at once; the tracked proxy's builds stay in flight, the reference's finish at once`);
    const f0 = performance.now();
    await Promise.all(sides.map(forceAll));
    const forceS = (performance.now() - f0) / 1000;
    log(`  ${total} forces each in ${forceS.toFixed(1)} s; the tracked master runs ${tracked.master.running()} builds, sending ${EVENTS_PER_S} update events/s`);

    // ---- settling: every build counted (tracked) or recorded (reference), the first sight of each over, then a little more
    const s0 = performance.now();
    const gauge = async (side: Side) => sum(await scrape(side.proxy, 'strangler_builds_in_flight'));
    await until(`the tracked proxy's in-flight gauge to read ${total}`, 120, async () => (await gauge(tracked)) === total);
    let firstSight = -1;
    let quietSince = Date.now();
    await until('the first sight of every build to be over', 900, () => {
      const calls = tracked.master.calls();
      const n = FIRST_SIGHT_CALLS.reduce((a, k) => a + (calls[k] ?? 0), 0);
      if (n !== firstSight) {
        firstSight = n;
        quietSince = Date.now();
      }
      return Date.now() - quietSince >= P.quietS * 1000;
    });
    await until(`the reference proxy to record ${total} finished builds`, 900, async () => sum(await scrape(reference.proxy, 'strangler_builds_finished_total')) === total && (await gauge(reference)) === 0);
    log(`  tracked gauge at ${total}, first sight over (${firstSight} first-sight calls to its master), reference builds all recorded after ${((performance.now() - s0) / 1000).toFixed(0)} s`);
    // Idle again, the reference hands back the young generation V8 grew while it took the forces, but only after a
    // while (its memory reducer); measured before that, its RSS is still the forces', not a proxy's with nothing in flight.
    const youngMiB = async () => sum((await scrape(reference.proxy, 'nodejs_heap_space_size_total_bytes')).filter((t) => t.labels.space === 'new')) / MiB;
    let referenceSettled = true;
    await until('the reference to give back its young generation', P.memoryWaitS, async () => (await youngMiB()) <= YOUNG_IDLE_MIB, 5000).catch(() => (referenceSettled = false));
    if (!referenceSettled) log(`  note: after ${P.memoryWaitS} s the reference still holds ${r1(await youngMiB())} MiB of young generation; its RSS is measured anyway`);
    // And the rest of what the reference gives back (old space), and the tracked proxy's rounds as they are now.
    await sleep(P.settleS * 1000);
    const settleS = (performance.now() - s0) / 1000;

    // ---- the window: both proxies, the same seconds
    const start = await scrapeAll(tracked.proxy);
    await scrapeAll(reference.proxy);
    const before = sum(start('strangler_builds_in_flight'));
    const queueCalls0 = byLabel(start('strangler_queue_calls_total'), 'method');
    const master0 = tracked.master.calls();
    const ref0 = sum(Object.values(reference.master.calls()).map((value) => ({ value })));
    // This script (with the masters in it) and the queues: the bench's own load, not the machine's other work.
    const ours = () => cpuTicks(process.pid) + cpuTicks(tracked.queue.pid) + cpuTicks(reference.queue.pid);
    const ticks = () => ({ tracked: cpuTicks(tracked.proxy.proc.pid), trackedSystem: systemTicks(tracked.proxy.proc.pid), reference: cpuTicks(reference.proxy.proc.pid), busy: busyTicks(), ours: ours() });
    const monotonicUs = () => Number(process.hrtime.bigint() / 1000n);
    const t0 = ticks();
    const w0 = performance.now();
    const window = { fromUs: monotonicUs(), toUs: NaN };
    const rss = { tracked: [] as number[], reference: [] as number[] };
    const slices: BuildTrackingReport['cpuSlices'] = [];
    let last = { ...t0, at: w0 };
    log(`  measuring ${P.windowS} s: CPU and RSS of the tracked proxy and of the reference`);
    while (performance.now() - w0 < P.windowS * 1000) {
      await sleep(Math.min(1000, P.windowS * 1000 - (performance.now() - w0)));
      rss.tracked.push(procStatusBytes(tracked.proxy.proc.pid, 'VmRSS') / MiB);
      rss.reference.push(procStatusBytes(reference.proxy.proc.pid, 'VmRSS') / MiB);
      if (rss.tracked.length % 10 === 0) {
        const now = { ...ticks(), at: performance.now() };
        const share = (n: number) => r4(n / CLK_TCK / ((now.at - last.at) / 1000));
        const [tr, rf] = [share(now.tracked - last.tracked), share(now.reference - last.reference)];
        slices.push({ endS: r1((now.at - w0) / 1000), tracked: tr, reference: rf, otherCores: r4(Math.max(0, share(now.busy - last.busy) - tr - rf - share(now.ours - last.ours))) });
        last = now;
      }
    }
    const windowS = (performance.now() - w0) / 1000;
    const t1 = ticks();
    window.toUs = monotonicUs();
    const master1 = tracked.master.calls();
    const ref1 = sum(Object.values(reference.master.calls()).map((value) => ({ value })));
    const end = { tracked: await scrapeAll(tracked.proxy), reference: await scrapeAll(reference.proxy) };
    const queueCalls1 = byLabel(end.tracked('strangler_queue_calls_total'), 'method');
    const after = sum(end.tracked('strangler_builds_in_flight'));
    const byBackend = byLabel(end.tracked('strangler_builds_in_flight'), 'backend');
    const referenceInFlight = sum(end.reference('strangler_builds_in_flight'));
    const trackingErrors = byLabel(end.tracked('strangler_build_tracking_errors_total'), 'operation');
    const memory = (metric: (family: string) => Samples, samples: number[]) => ({
      heapUsed: r1(sum(metric('nodejs_heap_size_used_bytes')) / MiB),
      heapTotal: r1(sum(metric('nodejs_heap_size_total_bytes')) / MiB),
      external: r1(sum(metric('nodejs_external_memory_bytes')) / MiB),
      rssSamples: samples.map(r1),
      // Which of V8's spaces hold the heap: a young generation grown under a steady allocation rate shows as `new`.
      spaces: Object.fromEntries(metric('nodejs_heap_space_size_total_bytes').map((t) => [t.labels.space ?? '', {
        total: r1(t.value / MiB),
        used: r1((metric('nodejs_heap_space_size_used_bytes').find((u) => u.labels.space === t.labels.space)?.value ?? NaN) / MiB),
      }])),
    });
    const ms = (metric: (family: string) => Samples, family: string) => r1(sum(metric(family)) * 1000);
    const loopDelay = (metric: (family: string) => Samples) => ({ p50: ms(metric, 'nodejs_eventloop_lag_p50_seconds'), p99: ms(metric, 'nodejs_eventloop_lag_p99_seconds'), max: ms(metric, 'nodejs_eventloop_lag_max_seconds') });
    if (after !== total || before !== total) throw new Error(`the in-flight gauge read ${before} before the window and ${after} after it; ${total} builds are in flight`);
    for (const side of sides) {
      const unsupported = side.master.calls().unsupported ?? 0;
      if (unsupported > 0) throw new Error(`the ${side.name} proxy asked its stand-in master ${unsupported} thing(s) it does not implement`);
    }

    const core = (n: number) => n / CLK_TCK / windowS;
    const cpu = { tracked: core(t1.tracked - t0.tracked), reference: core(t1.reference - t0.reference) };
    const rssMed = { tracked: median(rss.tracked), reference: median(rss.reference) };
    const masterByKind = diff(master1, master0, windowS);
    const queueByMethod = diff(queueCalls1, queueCalls0, windowS);
    const busyCores = core(t1.busy - t0.busy);
    const report: BuildTrackingReport = {
      node: process.version,
      params: { ...P, eventsPerSecond: EVENTS_PER_S },
      builds: { queue: P.queueBuilds, legacy: P.legacyBuilds, total },
      forceS: r1(forceS),
      settleS: r1(settleS),
      referenceSettled,
      inFlight: { before, after, byBackend, reference: referenceInFlight },
      windowS: r1(windowS),
      cpuSlices: slices,
      cpu: { tracked: r4(cpu.tracked), reference: r4(cpu.reference), added: r4(cpu.tracked - cpu.reference), trackedSystem: r4(core(t1.trackedSystem - t0.trackedSystem)) },
      rssMiB: { tracked: r1(rssMed.tracked), reference: r1(rssMed.reference), added: r1(rssMed.tracked - rssMed.reference), trackedBeforeForces: r1(trackedBeforeForces) },
      memoryMiB: { tracked: memory(end.tracked, rss.tracked), reference: memory(end.reference, rss.reference) },
      eventLoopDelayMs: { tracked: loopDelay(end.tracked), reference: loopDelay(end.reference) },
      queueCallsPerS: { total: r4(sum(Object.values(queueByMethod).map((value) => ({ value })))), byMethod: queueByMethod },
      masterCallsBeforeWindow: master0,
      masterCallsPerS: {
        total: r4(sum(Object.entries(masterByKind).filter(([k]) => k !== 'ws event').map(([, value]) => ({ value })))),
        byKind: masterByKind,
      },
      referenceMasterCallsPerS: r4((ref1 - ref0) / windowS),
      trackingErrors,
      warnings: warningsOf(tracked.proxy.logFile).slice(0, 10),
      machine: {
        cpus: os.cpus().length,
        busyCores: r4(busyCores),
        otherCores: r4(Math.max(0, busyCores - cpu.tracked - cpu.reference - core(t1.ours - t0.ours))),
        loadAvg: os.loadavg().map((x) => Math.round(x * 100) / 100),
      },
    };
    if (P.cpuProfDir !== null) {
      const before = new Set(fs.existsSync(P.cpuProfDir) ? fs.readdirSync(P.cpuProfDir) : []);
      await stopProc(tracked.proxy.proc, 20_000);
      const file = fs.readdirSync(P.cpuProfDir).find((f) => f.endsWith('.cpuprofile') && !before.has(f));
      if (file === undefined) throw new Error(`the tracked proxy wrote no .cpuprofile into ${P.cpuProfDir}`);
      report.profile = summarizeProfile(path.join(P.cpuProfDir, file), 30, window);
      log(`  profile of the window (${path.join(P.cpuProfDir, file)}): ${report.profile.samples} samples, ${report.profile.idleShare} % idle; by component, self / inclusive % of the busy samples:`);
      for (const c of report.profile.components.slice(0, 15)) log(`    ${c.component.slice(0, 40).padEnd(40)} ${c.selfPct.toFixed(1).padStart(5)} ${c.inclusivePct.toFixed(1).padStart(5)}`);
      log('  top functions by self time:');
      for (const t of report.profile.top.slice(0, 20)) log(`    ${t.selfPct.toFixed(1).padStart(5)}  ${t.function.slice(0, 40).padEnd(40)} ${t.where}`);
    }
    log(`  added by ${total} builds in flight: ${(report.cpu.added * 100).toFixed(2)} % of a core (tracked ${(report.cpu.tracked * 100).toFixed(2)} %, reference ${(report.cpu.reference * 100).toFixed(2)} %), RSS ${report.rssMiB.added} MiB (${report.rssMiB.tracked} vs ${report.rssMiB.reference}); queue ${report.queueCallsPerS.total} calls/s, master ${report.masterCallsPerS.total} calls/s`);
    process.stdout.write(`${JSON.stringify(report)}\n`);
  } finally {
    await Promise.all(sides.map((side) => side.pool.close()));
    for (const p of procs.reverse()) await stopProc(p);
    await Promise.all(masters.map((m) => m.close()));
    killAllSync();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

await main();
