/**
 * `npm run bench`: strangler-proxy against a direct connection, nginx and the
 * Node reference proxies (NODE_REFERENCES), in one run on this machine. See
 * docs/performance.md.
 *
 *   npm run bench                      # full run (about 15 min), writes bench/results/latest.json
 *   npm run bench -- --smoke           # tiny sizes (< 2 min), verdicts "n/a (smoke)"
 *   npm run bench -- --strict          # exit 1 when a target FAILs
 *   npm run bench -- --profile         # CPU profile of the proxy under GET and POST load (bench/results/profile.json)
 *
 * Options: --out FILE, --slice S, --cycles N, --connections C, --no-install
 * (do not apt-get wrk/nginx), --loadgen wrk|autocannon, --keep (keep the temp
 * dir with the generated configs and logs).
 *
 * Layout on a 2-core machine: the server under test (the upstream itself for
 * "direct", nginx, the reference proxies, strangler-proxy) alone on CPU 0; the
 * upstreams, the load generator and this script on CPU 1. Every child is
 * tracked by pid and stopped by pid.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { summarizeProfile, type ProfileSummary } from './lib/cpuprofile.js';
import { Autocannon, findWrk, Wrk, type LoadGenerator, type RequestSpec } from './lib/loadgen.js';
import {
  busyTicks, childPids, CLK_TCK, cpuTicks, freePort, httpGet, isAlive, killAllSync, LOAD_CPU, median, NCPU, ourTicks, PIN,
  pinSelf, procStatusBytes, SERVER_CPU, sleep, spawnPinned, stopProc, trackExtraPid, waitHttp, type Proc,
} from './lib/procs.js';
import { productionNodeFlags } from './lib/production.js';
import { generateRoutes, jobTypeWorkload, routesYaml, type GeneratedRoute } from './lib/routes.js';
import type { StoreLookupReport } from './store-lookups.js';
import type { QueueTranslationReport } from './queue-translation.js';
import type { BuildTrackingReport } from './build-tracking.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..');
/** The node flags production starts the proxy with (package.json's `start`). */
const PRODUCTION_NODE_FLAGS = productionNodeFlags(REPO);
const T0 = Date.now();
const MiB = 2 ** 20;

// ------------------------------------------------------------------ options
const argv = process.argv.slice(2);
const flag = (name: string) => argv.includes(`--${name}`);
const opt = (name: string): string | undefined => {
  const i = argv.indexOf(`--${name}`);
  if (i >= 0 && i + 1 < argv.length) return argv[i + 1];
  return argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
};
const SMOKE = flag('smoke');
const STRICT = flag('strict');
const PROFILE = flag('profile');
const KEEP = flag('keep');
const P = {
  mode: SMOKE ? 'smoke' : PROFILE ? 'profile' : 'full',
  sliceS: Number(opt('slice') ?? (SMOKE ? 1 : 4)),
  cycles: Number(opt('cycles') ?? (SMOKE ? 1 : 5)),
  warmupS: SMOKE ? 1 : 2,
  connections: Number(opt('connections') ?? 50),
  rate: 1000,
  rateSliceS: SMOKE ? 1 : 8,
  rateCycles: SMOKE ? 1 : 3,
  rateWarmupS: SMOKE ? 0.5 : 1,
  downloadBytes: SMOKE ? 8 * MiB : 1024 * MiB,
  downloadRuns: SMOKE ? 1 : 3,
  /** Sent through each target first and not measured: the first large body through a process is slower (JIT, socket buffer autotuning). */
  downloadWarmupBytes: SMOKE ? 0 : 128 * MiB,
  memFirst: SMOKE ? 2_000 : 100_000,
  memTotal: SMOKE ? 20_000 : 1_000_000,
  routing: SMOKE ? { rounds: 3, length: 20_000, coldBudgetMs: 100 } : { rounds: 25, length: 200_000, coldBudgetMs: 1500 },
  store: SMOKE ? { count: 20_000, lookups: 5_000 } : { count: 1_000_000, lookups: 100_000 },
  queue: SMOKE ? { forces: 30, warmup: 5, readTasks: 5, readSeconds: 1, cycles: 1 } : { forces: 500, warmup: 50, readSeconds: 3, cycles: 3 },
  // Smoke: a 10 s window, so that it holds a round of the queue's follow loop with tasks due (each is looked at every 5-10 s).
  tracking: SMOKE ? { queueBuilds: 50, legacyBuilds: 50, quietS: 2, settleS: 1, memoryWaitS: 0, windowS: 10 } : { queueBuilds: 5000, legacyBuilds: 5000, quietS: 6, settleS: 10, memoryWaitS: 240, windowS: 60 },
  routes: 300,
  /** A slice during which processes that are not ours used more than this share of a core is measured again (once). */
  maxForeignPct: 25,
  maxRetries: SMOKE ? 0 : 6,
  profileS: 10,
};
const OUT = path.resolve(opt('out') ?? path.join(REPO, 'bench/results', SMOKE ? 'smoke.json.tmp' : PROFILE ? 'profile.json' : 'latest.json'));

const GET_PATH = '/api/v2/builders/linux64-opt/builds?limit=1';
const POST_PATH = '/api/v2/forceschedulers/force';
/** A ~300-byte Buildbot JSON-RPC force call, as the web UI sends it. */
const POST_BODY = JSON.stringify({
  jsonrpc: '2.0', method: 'force', id: 1,
  params: {
    builderNames: ['linux64-opt'], reason: 're-run after infra failure', owner: 'Release Engineering <releng@example.org>',
    branch: 'main', revision: '3f1c2e9a7b5d4c6e8f0a1b2c3d4e5f6a7b8c9d0e', project: 'autoland', properties: { priority: 'normal' },
  },
});
const GET: RequestSpec = { method: 'GET', path: GET_PATH };
const POST: RequestSpec = { method: 'POST', path: POST_PATH, body: POST_BODY };
const LOG_PATH = (bytes: number) => `/api/v2/builders/linux64-opt/builds/311/steps/2/logs/stdio/raw?size=${bytes}`;
type Method = 'GET' | 'POST';

/**
 * The Node proxies strangler-proxy is judged against (bench/reference/): each runs pinned like
 * the proxy, in the same throughput cycles (a row and a paired-ratio column, and a target per
 * method), and as a reference without target in the latency and download phases.
 */
interface NodeReference {
  /** Its id in slices, the throughput rows and latency/download `references`; measurements `latency.<id>AddedP50Ms`, `download.<id>MiBps`. */
  id: string;
  /** The JSON's paired ratios against it: `vs${key}` in each throughput row, `proxyVs${key}` and `nginxVs${key}` in ratios. */
  key: string;
  label: string;
  /** In running text: "added by the …", "through the …". */
  short: string;
  script: string;
  /** The table's column of paired ratios against it. */
  column: string;
  /** Target, GET and force POST alike: strangler-proxy's req/s ≥ minRatio × this reference's, in the same cycle. */
  minRatio: number;
  targetIds: Record<Method, string>;
}
const NODE_REFERENCES: readonly NodeReference[] = [
  { id: 'minimal', key: 'Minimal', label: 'minimal Node proxy', short: 'minimal proxy', script: 'minimal-proxy.mjs', column: '×min', minRatio: 1.2, targetIds: { GET: 'throughput-get', POST: 'throughput-post' } },
  // The product's own engine with nothing on it: what routing, metrics and the access log cost on top.
  { id: 'undici', key: 'Undici', label: 'bare undici proxy', short: 'bare undici proxy', script: 'bare-undici-proxy.mjs', column: '×und', minRatio: 0.75, targetIds: { GET: 'throughput-get-undici', POST: 'throughput-post-undici' } },
];
/** The undici the product and the bare undici proxy load (the repository's node_modules). */
const UNDICI_VERSION = (JSON.parse(fs.readFileSync(path.join(REPO, 'node_modules/undici/package.json'), 'utf8')) as { version: string }).version;

/** The throughput table's rows, in order; the shadowing proxy is measured on GETs only. */
const THROUGHPUT_ROWS: ReadonlyArray<{ id: string; label: string; getOnly?: true }> = [
  { id: 'direct', label: 'direct (upstream, no proxy)' },
  { id: 'nginx', label: 'nginx (keep-alive upstream)' },
  ...NODE_REFERENCES.map((ref) => ({ id: ref.id, label: `${ref.label} (reference)` })),
  { id: 'proxy', label: 'strangler-proxy' },
  { id: 'proxy-shadow', label: 'strangler-proxy, shadow 100%', getOnly: true },
];
const rowsFor = (method: Method) => THROUGHPUT_ROWS.filter((row) => method === 'GET' || !row.getOnly);

// ------------------------------------------------------------------ process hygiene
process.on('exit', killAllSync);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    console.error(`\n${sig}: stopping every process the bench started`);
    killAllSync();
    process.exit(130);
  });
}

const log = (line = '') => console.log(line);
const elapsed = () => Math.round((Date.now() - T0) / 100) / 10;
const r1 = (x: number) => Math.round(x * 10) / 10;
const r3 = (x: number) => Math.round(x * 1000) / 1000;

// ------------------------------------------------------------------ tools
interface Tools {
  loadgen: LoadGenerator;
  nginx: string | null;
  nginxVersion: string | null;
  nginxNote: string | null;
}

function findNginx(): string | null {
  for (const c of ['/usr/sbin/nginx', '/usr/local/sbin/nginx', '/usr/local/nginx/sbin/nginx']) if (fs.existsSync(c)) return c;
  const which = spawnSync('sh', ['-c', 'command -v nginx'], { encoding: 'utf8' });
  return which.status === 0 && which.stdout.trim() ? which.stdout.trim() : null;
}

function prepareTools(tmp: string): Tools {
  const wanted = opt('loadgen');
  if (!flag('no-install')) {
    const missing = [...(findNginx() ? [] : ['nginx']), ...(findWrk() || wanted === 'autocannon' ? [] : ['wrk'])];
    if (missing.length) {
      log(`installing ${missing.join(' ')} (scripts/install-system-deps.sh) ...`);
      const r = spawnSync('bash', [path.join(REPO, 'scripts/install-system-deps.sh'), ...missing], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      for (const line of `${r.stdout}${r.stderr}`.split('\n')) if (/MISSING|still missing|installed/.test(line)) log(`  ${line.trim()}`);
    }
  }
  const wrk = wanted === 'autocannon' ? null : findWrk();
  let loadgen: LoadGenerator;
  if (wrk) loadgen = new Wrk(wrk, tmp);
  else {
    if (wanted === 'wrk') throw new Error('--loadgen wrk: wrk is not installed (bash scripts/install-system-deps.sh wrk)');
    loadgen = new Autocannon(path.join(HERE, 'lib/autocannon-run.mjs'), REPO, tmp);
    if (loadgen.version === 'unknown') throw new Error('neither wrk nor autocannon is available: bash scripts/install-system-deps.sh wrk, or npm ci');
  }
  const nginx = findNginx();
  let nginxVersion: string | null = null;
  if (nginx) {
    const v = spawnSync(nginx, ['-v'], { encoding: 'utf8' });
    nginxVersion = /nginx\/(\S+)/.exec(`${v.stdout}${v.stderr}`)?.[1] ?? 'unknown';
  }
  return {
    loadgen, nginx, nginxVersion,
    nginxNote: nginx ? null : 'nginx is not installed and could not be (not root, or no apt-get): its rows are skipped. Install it with: sudo apt-get install -y nginx',
  };
}

// ------------------------------------------------------------------ servers
interface Server {
  id: string;
  label: string;
  port: number;
  proc: Proc;
  /** Processes whose CPU counts as this server's (nginx: master and workers). */
  pids: number[];
  adminPort?: number;
  logFile?: string;
}

function startUpstream(name: string, port: number): Server {
  const proc = spawnPinned(name, LOAD_CPU, process.execPath, [path.join(HERE, 'lib/upstream.mjs')], { env: { PORT: String(port) } });
  return { id: name, label: name, port, proc, pids: [proc.pid] };
}

async function startReference(ref: NodeReference, upstreamPort: number): Promise<Server> {
  const port = await freePort();
  const proc = spawnPinned(ref.id, SERVER_CPU, process.execPath, [path.join(HERE, 'reference', ref.script)], { env: { PORT: String(port), UPSTREAM_PORT: String(upstreamPort) } });
  return { id: ref.id, label: ref.label, port, proc, pids: [proc.pid] };
}

function startStrangler(id: string, label: string, configFile: string, port: number, adminPort: number, logFile: string, extraNodeArgs: string[] = []): Server {
  const out = fs.openSync(logFile, 'w');
  const proc = spawnPinned(id, SERVER_CPU, process.execPath, [...PRODUCTION_NODE_FLAGS, ...extraNodeArgs, path.join(REPO, 'dist/cli.js'), 'serve', '--config', configFile, '--port', String(port), '--admin-port', String(adminPort), '--host', '127.0.0.1', '--log-level', 'info'], {
    stdio: ['ignore', out, 'pipe'],
    cwd: path.dirname(configFile),
    env: { STRANGLER_ADMIN_TOKEN: '', LOG_FORMAT: 'json' },
  });
  fs.closeSync(out);
  let stderr = '';
  proc.child.stderr!.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4000)));
  proc.exited.then((code) => {
    if (code !== 0 && code !== 'SIGTERM' && code !== 'SIGKILL') console.error(`${id} exited ${code}: ${stderr.trim()}`);
  });
  return { id, label, port, proc, pids: [proc.pid], adminPort, logFile };
}

function nginxConfig(tmp: string, port: number, upstreamPort: number): string {
  const isRoot = process.getuid?.() === 0;
  return `# generated by bench/run.ts
${isRoot ? 'user root;\n' : ''}worker_processes 1;
error_log ${tmp}/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log ${tmp}/nginx-access.log;
  client_body_temp_path ${tmp}/nginx-body;
  proxy_temp_path ${tmp}/nginx-proxy;
  fastcgi_temp_path ${tmp}/nginx-fastcgi;
  uwsgi_temp_path ${tmp}/nginx-uwsgi;
  scgi_temp_path ${tmp}/nginx-scgi;
  keepalive_timeout 65s;
  keepalive_requests 1000000;
  upstream backend {
    server 127.0.0.1:${upstreamPort};
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`;
}

async function startNginx(bin: string, tmp: string, port: number, upstreamPort: number): Promise<Server> {
  const conf = path.join(tmp, 'nginx.conf');
  fs.writeFileSync(conf, nginxConfig(tmp, port, upstreamPort));
  const proc = spawnPinned('nginx', SERVER_CPU, bin, ['-p', `${tmp}/`, '-e', `${tmp}/nginx-error.log`, '-c', conf, '-g', `daemon off; pid ${tmp}/nginx.pid;`], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const server: Server = { id: 'nginx', label: 'nginx', port, proc, pids: [proc.pid] };
  try {
    await waitHttp(`http://127.0.0.1:${port}${GET_PATH}`, proc, 15_000);
  } catch (error) {
    let errorLog = '';
    try {
      errorLog = fs.readFileSync(`${tmp}/nginx-error.log`, 'utf8');
    } catch {
      /* none */
    }
    throw new Error(`nginx did not start: ${(error as Error).message}\n${stderr}${errorLog}`);
  }
  for (const pid of childPids(proc.pid)) {
    server.pids.push(pid);
    trackExtraPid(pid);
  }
  return server;
}

// ------------------------------------------------------------------ measuring
interface Slice {
  target: string;
  method: 'GET' | 'POST';
  cycle: number;
  t: number;
  rps: number;
  requests: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  /** CPU time of the server under test per request, µs. */
  cpuUsPerReq: number;
  /** Of the upstream that served it (for proxies: behind them), µs. */
  upstreamCpuUsPerReq: number;
  foreignCpuPct: number;
  retried?: boolean;
}

interface PairedRatio {
  /** Median over cycles of a's req/s ÷ b's, each pair measured in the same cycle. */
  ratio: number;
  perCycle: number[];
}
/** `proxyVs<Key>` and `nginxVs<Key>` (null without nginx) for each Node reference, and `proxyVsDirect`. */
type Ratios = Record<string, PairedRatio | null>;
interface ThroughputRow {
  rps: number;
  p50Ms: number;
  p99Ms: number;
  cpuUsPerReq: number;
  upstreamCpuUsPerReq: number;
  errors: number;
  requests: number;
  slices: number;
  rpsAll: number[];
  /** `vs<Key>`: this row's paired ratio against a Node reference. */
  [vsReference: `vs${string}`]: number;
}

function ticksOf(pids: number[]): number {
  return pids.reduce((s, pid) => s + (cpuTicks(pid) || 0), 0);
}

async function measured<T extends { requests: number }>(server: Server, upstream: Server | null, run: () => Promise<T>): Promise<{ result: T; cpuUsPerReq: number; upstreamCpuUsPerReq: number; foreignCpuPct: number; wallS: number }> {
  const s0 = ticksOf(server.pids);
  const u0 = upstream ? ticksOf(upstream.pids) : 0;
  const b0 = busyTicks();
  const o0 = ourTicks();
  const w0 = performance.now();
  const result = await run();
  const wallS = (performance.now() - w0) / 1000;
  const s1 = ticksOf(server.pids);
  const u1 = upstream ? ticksOf(upstream.pids) : 0;
  const foreign = Math.max(0, (busyTicks() - b0 - (ourTicks() - o0)) * 100 / CLK_TCK / wallS);
  const n = result.requests || 1;
  return {
    result,
    cpuUsPerReq: ((s1 - s0) * 1e6) / CLK_TCK / n,
    upstreamCpuUsPerReq: upstream ? ((u1 - u0) * 1e6) / CLK_TCK / n : NaN,
    foreignCpuPct: r1(foreign),
    wallS,
  };
}

// ------------------------------------------------------------------ the run
interface Target {
  id: string;
  description: string;
  value: number;
  limit: number;
  /** 'min': value must be at least limit; 'max': at most. */
  kind: 'min' | 'max';
  unit: string;
  verdict: 'PASS' | 'FAIL' | 'n/a (smoke)';
  note?: string;
}

async function main(): Promise<void> {
  const load0 = os.loadavg();
  const code = codeVersion();
  log(`strangler-proxy bench (${P.mode}) — node ${process.version}, ${NCPU} cpu (${os.cpus()[0]?.model ?? '?'}), load average ${load0.map((x) => x.toFixed(2)).join(' ')}; code ${code.commit ?? '?'}${code.srcModified ? ' + uncommitted changes in src/' : ''}`);
  if (!fs.existsSync(path.join(REPO, 'dist/cli.js'))) throw new Error('dist/cli.js is missing: run `npm run build` (npm run bench does)');
  const pinnedSelf = pinSelf(LOAD_CPU);
  log(`pinning: ${PIN ? `servers under test on cpu ${SERVER_CPU}; upstreams, load generator and the bench (${pinnedSelf ? 'pinned' : 'not pinned'}) on cpu ${LOAD_CPU}` : 'none (no taskset, or fewer than 2 cpus): numbers are less stable'}`);
  if (load0[0]! > 1) log(`note: the machine is busy (load ${load0[0]!.toFixed(2)}); results are noisier than on a quiet machine`);

  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'strangler-bench-'));
  const tools = prepareTools(tmp);
  log(`load generator: ${tools.loadgen.name} ${tools.loadgen.version}; nginx: ${tools.nginx ? `${tools.nginxVersion} (${tools.nginx})` : 'skipped'}; undici ${UNDICI_VERSION}`);
  if (tools.nginxNote) log(`note: ${tools.nginxNote}`);

  try {
    if (PROFILE) await runProfile(tmp, tools);
    else await runBench(tmp, tools, load0);
  } finally {
    const leftovers: Proc[] = [];
    for (const s of running) if (isAlive(s.proc)) leftovers.push(s.proc);
    await Promise.all(leftovers.map((p) => stopProc(p)));
    killAllSync();
    if (KEEP) log(`temp dir kept: ${tmp}`);
    else fs.rmSync(tmp, { recursive: true, force: true });
  }
}

const running: Server[] = [];

async function startFixture(tmp: string, tools: Tools, withOthers: boolean) {
  const [upPort, mirrorPort, proxyPort, proxyAdmin, shadowPort, shadowAdmin, nginxPort] = await Promise.all(Array.from({ length: 7 }, () => freePort()));
  const upstream = startUpstream('upstream', upPort!);
  const mirror = startUpstream('mirror', mirrorPort!);
  running.push(upstream, mirror);
  const backends = {
    buildbot: { url: `http://127.0.0.1:${upPort}`, legacy: true },
    taskservice: { url: `http://127.0.0.1:${upPort}` },
    mirror: { url: `http://127.0.0.1:${mirrorPort}` },
  };
  const pinned: GeneratedRoute = { pattern: 'linux64-opt', kind: 'exact', backend: 'taskservice' };
  const routes = generateRoutes({ count: P.routes, mix: 'mix', pinned: [pinned] });
  const configFile = path.join(tmp, 'routes.yaml');
  fs.writeFileSync(configFile, routesYaml({ backends, routes, defaultBackend: 'buildbot' }));
  const shadowFile = path.join(tmp, 'routes-shadow.yaml');
  fs.writeFileSync(shadowFile, routesYaml({ backends, routes: routes.map((r) => (r === pinned ? { ...r, shadow: { backend: 'mirror', percent: 100 } } : r)), defaultBackend: 'buildbot' }));
  await Promise.all([waitHttp(`http://127.0.0.1:${upPort}/`, upstream.proc), waitHttp(`http://127.0.0.1:${mirrorPort}/`, mirror.proc)]);
  return { upstream, mirror, configFile, shadowFile, ports: { proxyPort: proxyPort!, proxyAdmin: proxyAdmin!, shadowPort: shadowPort!, shadowAdmin: shadowAdmin!, nginxPort: nginxPort! }, routes, withOthers, tools };
}

async function readyStrangler(s: Server): Promise<void> {
  await waitHttp(`http://127.0.0.1:${s.adminPort}/readyz`, s.proc, 60_000);
  await waitHttp(`http://127.0.0.1:${s.port}${GET_PATH}`, s.proc, 10_000);
}

async function runBench(tmp: string, tools: Tools, load0: number[]): Promise<void> {
  const lg = tools.loadgen;
  const fx = await startFixture(tmp, tools, true);
  const { upstream, mirror } = fx;
  const direct: Server = { ...upstream, id: 'direct', label: 'direct (no proxy)' };
  const proxy = startStrangler('proxy', 'strangler-proxy', fx.configFile, fx.ports.proxyPort, fx.ports.proxyAdmin, path.join(tmp, 'proxy.log'));
  const shadow = startStrangler('proxy-shadow', 'strangler-proxy, shadow 100%', fx.shadowFile, fx.ports.shadowPort, fx.ports.shadowAdmin, path.join(tmp, 'proxy-shadow.log'));
  const refs = await Promise.all(NODE_REFERENCES.map((ref) => startReference(ref, upstream.port)));
  running.push(proxy, shadow, ...refs);
  let nginx: Server | null = null;
  if (tools.nginx) {
    nginx = await startNginx(tools.nginx, tmp, fx.ports.nginxPort, upstream.port);
    running.push(nginx);
  }
  await Promise.all([readyStrangler(proxy), readyStrangler(shadow), ...refs.map((ref) => waitHttp(`http://127.0.0.1:${ref.port}${GET_PATH}`, ref.proc))]);
  // The proxy must route the bench's requests as intended: linux64-opt by its exact route, the force by its body.
  for (const [s, spec] of [[proxy, GET], [proxy, POST]] as const) {
    const r = await explainVia(s, spec);
    if (r.backend !== 'taskservice' || r.jobType !== 'linux64-opt') throw new Error(`the proxy routed ${spec.method} ${spec.path} to ${r.backend} (job type ${r.jobType}); expected taskservice/linux64-opt`);
  }
  log(`servers up in ${elapsed()} s: upstream :${upstream.port}, proxy :${proxy.port} (${fx.routes.length} routes), proxy+shadow :${shadow.port}, ${refs.map((ref) => `${ref.id} :${ref.port}`).join(', ')}${nginx ? `, nginx :${nginx.port}` : ''}`);

  const servers = new Map([direct, ...(nginx ? [nginx] : []), ...refs, proxy, shadow].map((s) => [s.id, s]));
  const targetsOf = (method: Method) => rowsFor(method).flatMap((row) => servers.get(row.id) ?? []);
  const targetsGet = targetsOf('GET');
  const targetsPost = targetsOf('POST');
  const upstreamOf = (s: Server) => (s.id === 'direct' ? null : upstream);

  // ---- 1 + 5: throughput, interleaved slices
  const tpSlices = P.cycles * (targetsGet.length + targetsPost.length);
  log(`\n[1/5] throughput: ${P.cycles} cycle(s) × ${targetsGet.length} GET + ${targetsPost.length} POST targets × ${P.sliceS} s, ${P.connections} connections (~${Math.round(tpSlices * (P.sliceS + 0.3) + (targetsGet.length + targetsPost.length) * P.warmupS)} s)`);
  for (const s of targetsGet) await lg.run(s.port, GET, P.warmupS, P.connections);
  for (const s of targetsPost) await lg.run(s.port, POST, P.warmupS, P.connections);
  const mirrorBefore = await upstreamCount(mirror);
  const shadowMetricsBefore = await shadowResults(shadow);
  const shadowRequestsBefore = await requestsTotal(shadow);
  const slices: Slice[] = [];
  const discarded: Slice[] = [];
  let retries = 0;
  for (let cycle = 0; cycle < P.cycles; cycle++) {
    for (const [method, spec, list] of [['GET', GET, targetsGet], ['POST', POST, targetsPost]] as const) {
      const order = list.map((_, i) => list[(i + cycle) % list.length]!);
      for (const server of order) {
        for (const s of running) if (!isAlive(s.proc)) throw new Error(`${s.id} died`);
        const one = async (): Promise<Slice> => {
          const m = await measured(server, upstreamOf(server), () => lg.run(server.port, spec, P.sliceS, P.connections));
          return {
            target: server.id, method, cycle: cycle + 1, t: elapsed(), rps: m.result.rps, requests: m.result.requests, p50Ms: m.result.p50Ms, p99Ms: m.result.p99Ms,
            errors: m.result.errors, cpuUsPerReq: m.cpuUsPerReq, upstreamCpuUsPerReq: m.upstreamCpuUsPerReq, foreignCpuPct: m.foreignCpuPct,
          };
        };
        let slice = await one();
        if (slice.foreignCpuPct > P.maxForeignPct && retries < P.maxRetries) {
          retries++;
          log(`  ${String(slice.t).padStart(6)} s ${server.id.padEnd(13)} ${method.padEnd(4)} ${slice.rps.toFixed(0).padStart(6)} req/s — other processes used ${slice.foreignCpuPct}% of a core; measuring again`);
          discarded.push(slice);
          await sleep(500);
          slice = { ...(await one()), retried: true };
        }
        slices.push(slice);
        const flagged = (slice.errors ? `  !! ${slice.errors} errors` : '') + (slice.foreignCpuPct > P.maxForeignPct ? `  (other processes: ${slice.foreignCpuPct}% cpu)` : '');
        log(`  ${String(slice.t).padStart(6)} s ${server.id.padEnd(13)} ${method.padEnd(4)} ${slice.rps.toFixed(0).padStart(6)} req/s  p50 ${slice.p50Ms.toFixed(2)} p99 ${slice.p99Ms.toFixed(2)} ms  ${slice.cpuUsPerReq.toFixed(0)} µs cpu/req${flagged}`);
      }
    }
  }
  await sleep(500); // copies still in flight
  const mirrorCopies = (await upstreamCount(mirror)) - mirrorBefore;
  const shadowMetricsAfter = await shadowResults(shadow);
  const shadowRequests = (await requestsTotal(shadow)) - shadowRequestsBefore;

  /** Median over cycles of a/b, each pair measured in the same cycle (seconds apart). */
  const pairedRatio = (a: string, b: string, method: Method): PairedRatio => {
    const ratios: number[] = [];
    for (let c = 1; c <= P.cycles; c++) {
      const x = slices.find((s) => s.target === a && s.method === method && s.cycle === c);
      const y = slices.find((s) => s.target === b && s.method === method && s.cycle === c);
      if (x && y) ratios.push(x.rps / y.rps);
    }
    return { ratio: median(ratios), perCycle: ratios.map(r3) };
  };
  const agg = (target: string, method: Method): ThroughputRow => {
    const rs = slices.filter((s) => s.target === target && s.method === method);
    return {
      rps: median(rs.map((s) => s.rps)),
      p50Ms: median(rs.map((s) => s.p50Ms)),
      p99Ms: median(rs.map((s) => s.p99Ms)),
      cpuUsPerReq: median(rs.map((s) => s.cpuUsPerReq)),
      upstreamCpuUsPerReq: median(rs.map((s) => s.upstreamCpuUsPerReq)),
      errors: rs.reduce((a, s) => a + s.errors, 0),
      requests: rs.reduce((a, s) => a + s.requests, 0),
      slices: rs.length,
      rpsAll: rs.map((s) => Math.round(s.rps)),
      // vs<Key>: median over cycles of this target's req/s over the reference's in the same cycle.
      ...Object.fromEntries(NODE_REFERENCES.map((ref) => [`vs${ref.key}`, pairedRatio(target, ref.id, method).ratio])),
    };
  };
  const throughput: Record<Method, Record<string, ThroughputRow>> = {
    GET: Object.fromEntries(targetsGet.map((s) => [s.id, agg(s.id, 'GET')])),
    POST: Object.fromEntries(targetsPost.map((s) => [s.id, agg(s.id, 'POST')])),
  };
  const ratiosOf = (method: Method): Ratios => ({
    ...Object.fromEntries(NODE_REFERENCES.flatMap((ref) => [
      [`proxyVs${ref.key}`, pairedRatio('proxy', ref.id, method)],
      [`nginxVs${ref.key}`, nginx ? pairedRatio('nginx', ref.id, method) : null],
    ])),
    proxyVsDirect: pairedRatio('proxy', 'direct', method),
  });
  const ratios = { GET: ratiosOf('GET'), POST: ratiosOf('POST') };
  const shadowRatio = pairedRatio('proxy-shadow', 'proxy', 'GET');

  // ---- 2: added latency at a fixed rate
  const refsInText = NODE_REFERENCES.map((ref) => `the ${ref.short}`).join(' and ');
  /** What the latency and download phases measure, in this order and the reverse, alternately. */
  const phaseTargets = [direct, proxy, ...refs];
  const alternate = (forwards: boolean) => (forwards ? phaseTargets : [...phaseTargets].reverse());
  log(`\n[2/5] added latency: GET at ${P.rate} req/s (open loop), ${P.rateCycles} × ${P.rateSliceS} s each for direct, the proxy and (for reference) ${refsInText}`);
  const rateRuns: Array<{ target: string; cycle: number; p50Ms: number; p90Ms: number; p99Ms: number; p999Ms: number; maxMs: number; requests: number; errors: number; achievedRate: number; foreignCpuPct: number }> = [];
  for (let cycle = 1; cycle <= P.rateCycles; cycle++) {
    for (const server of alternate(cycle % 2 === 1)) {
      let m = await measured(server, upstreamOf(server), () => rateClient(server.port, GET, P.rate, P.rateSliceS, P.rateWarmupS));
      if (m.foreignCpuPct > P.maxForeignPct && retries < P.maxRetries) {
        retries++;
        log(`  ${String(elapsed()).padStart(6)} s ${server.id.padEnd(13)} p50 ${m.result.p50.toFixed(3)} p99 ${m.result.p99.toFixed(3)} ms — other processes used ${m.foreignCpuPct}% of a core; measuring again`);
        m = await measured(server, upstreamOf(server), () => rateClient(server.port, GET, P.rate, P.rateSliceS, P.rateWarmupS));
      }
      const r = m.result;
      rateRuns.push({ target: server.id, cycle, p50Ms: r.p50, p90Ms: r.p90, p99Ms: r.p99, p999Ms: r.p999, maxMs: r.max, requests: r.requests, errors: r.errors + r.non2xx, achievedRate: r.achievedRate, foreignCpuPct: m.foreignCpuPct });
      log(`  ${String(elapsed()).padStart(6)} s ${server.id.padEnd(13)} p50 ${r.p50.toFixed(3)} p99 ${r.p99.toFixed(3)} p99.9 ${r.p999.toFixed(3)} ms  (${r.requests} requests, ${r.achievedRate.toFixed(0)}/s${r.errors + r.non2xx ? `, ${r.errors + r.non2xx} errors` : ''})${m.foreignCpuPct > P.maxForeignPct ? `  (other processes: ${m.foreignCpuPct}% cpu)` : ''}`);
    }
  }
  const latOf = (target: string) => {
    const runs = rateRuns.filter((r) => r.target === target);
    return { p50Ms: median(runs.map((r) => r.p50Ms)), p99Ms: median(runs.map((r) => r.p99Ms)) };
  };
  const addedOf = (key: 'p50Ms' | 'p99Ms', via = 'proxy') => {
    const diffs: number[] = [];
    for (let c = 1; c <= P.rateCycles; c++) {
      const a = rateRuns.find((r) => r.target === via && r.cycle === c);
      const b = rateRuns.find((r) => r.target === 'direct' && r.cycle === c);
      if (a && b) diffs.push(a[key] - b[key]);
    }
    return median(diffs);
  };
  const latency = {
    rate: P.rate, path: GET_PATH,
    direct: latOf('direct'),
    proxy: latOf('proxy'),
    addedP50Ms: addedOf('p50Ms'), addedP99Ms: addedOf('p99Ms'),
    references: Object.fromEntries(refs.map((ref) => [ref.id, { ...latOf(ref.id), addedP50Ms: addedOf('p50Ms', ref.id), addedP99Ms: addedOf('p99Ms', ref.id) }])),
    runs: rateRuns,
  };

  // ---- 4: big download
  log(`\n[3/5] download: ${fmtBytes(P.downloadBytes)} log, ${P.downloadRuns} run(s) each direct, through the proxy and (for reference) ${refsInText}${P.downloadWarmupBytes ? `, after ${fmtBytes(P.downloadWarmupBytes)} through each unmeasured` : ''}; proxy RSS sampled every 100 ms`);
  // Growth is counted from the lower of this and the RSS before each run, so the warm-up cannot hide any.
  const rssBaseline = procStatusBytes(proxy.proc.pid, 'VmRSS');
  if (P.downloadWarmupBytes > 0) for (const server of phaseTargets) await downloadOnce(server.port, LOG_PATH(P.downloadWarmupBytes));
  const dl: Array<{ target: string; mibPerS: number; seconds: number; bytes: number; complete: boolean; cpuPct: number; rssBeforeMiB?: number; rssPeakMiB?: number; growthMiB?: number; hwmBeforeMiB?: number; hwmAfterMiB?: number }> = [];
  for (let run = 0; run < P.downloadRuns; run++) {
    for (const server of alternate(run % 2 === 0)) {
      const isProxy = server === proxy;
      const cpu0 = ticksOf(server.pids);
      const before = procStatusBytes(proxy.proc.pid, 'VmRSS');
      const hwmBefore = procStatusBytes(proxy.proc.pid, 'VmHWM');
      let peak = before;
      const sampler = isProxy ? setInterval(() => (peak = Math.max(peak, procStatusBytes(proxy.proc.pid, 'VmRSS'))), 100) : undefined;
      const r = await downloadOnce(server.port, LOG_PATH(P.downloadBytes));
      if (sampler) clearInterval(sampler);
      peak = Math.max(peak, procStatusBytes(proxy.proc.pid, 'VmRSS'));
      const cpuPct = ((ticksOf(server.pids) - cpu0) * 100) / CLK_TCK / r.seconds;
      const entry = { target: server.id, mibPerS: r.mibPerS, seconds: r.seconds, bytes: r.bytes, complete: r.complete && r.bytes === P.downloadBytes, cpuPct: r1(cpuPct) };
      if (!entry.complete) throw new Error(`download through ${server.id} incomplete: ${r.bytes} of ${P.downloadBytes} bytes`);
      dl.push(isProxy ? { ...entry, rssBeforeMiB: before / MiB, rssPeakMiB: peak / MiB, growthMiB: (peak - Math.min(before, rssBaseline)) / MiB, hwmBeforeMiB: hwmBefore / MiB, hwmAfterMiB: procStatusBytes(proxy.proc.pid, 'VmHWM') / MiB } : entry);
      log(`  ${String(elapsed()).padStart(6)} s ${server.id.padEnd(13)} ${r.mibPerS.toFixed(0).padStart(5)} MiB/s (${r.seconds.toFixed(2)} s, ${server === direct ? 'upstream' : server.id} at ${cpuPct.toFixed(0)}% of a core)${isProxy ? `  proxy RSS ${(before / MiB).toFixed(1)} → peak ${(peak / MiB).toFixed(1)} MiB` : ''}`);
    }
  }
  const dlOf = (target: string) => median(dl.filter((d) => d.target === target).map((d) => d.mibPerS));
  const dlDirect = dlOf('direct');
  const dlProxy = dlOf('proxy');
  const download = {
    bytes: P.downloadBytes,
    directMiBps: dlDirect,
    proxyMiBps: dlProxy,
    /** Each reference's median MiB/s, and that over direct's (the ratio the proxy's target uses). */
    references: Object.fromEntries(refs.map((ref) => [ref.id, { mibPerS: dlOf(ref.id), ratio: dlOf(ref.id) / dlDirect }])),
    proxyCpuPct: median(dl.filter((d) => d.target === 'proxy').map((d) => d.cpuPct)),
    ratio: dlProxy / dlDirect,
    proxyRssGrowthMiB: Math.max(...dl.filter((d) => d.target === 'proxy').map((d) => d.growthMiB!)),
    runs: dl,
  };

  const proxyLogLines = await stopAndCountLog(proxy);
  await stopAndCountLog(shadow);
  for (const ref of refs) await stopProc(ref.proc);
  if (nginx) await stopProc(nginx.proc, 5000, 'SIGQUIT');

  // ---- 6: memory over 1M requests, on a fresh proxy
  log(`\n[4/5] memory: a fresh proxy, RSS after ${P.memFirst.toLocaleString('en')} and after ${P.memTotal.toLocaleString('en')} requests (80 % GET / 20 % force, 2,000 job types, skewed)`);
  const memory = await memoryPhase(tmp, fx, lg);

  await stopProc(upstream.proc);
  await stopProc(mirror.proc);

  // ---- 3: routing micro-benchmark
  log(`\n[5/5] routing decision: decide() in-process over 10 / 1,000 / 10,000 routes, pinned to cpu ${SERVER_CPU}`);
  const routing = await routingMicro();
  for (const c of routing.cases) log(`  ${c.key.padEnd(11)} ${c.nsPerDecision.toFixed(0).padStart(5)} ns/decision (matched ${c.nsPerMatchedDecision.toFixed(0)}, default ${c.nsPerUnmatchedDecision.toFixed(0)}, lookup ${c.nsPerLookup.toFixed(0)}, first sight ${fmtNs(c.nsPerColdDecision)}); parse ${c.parseMs.toFixed(0)} ms`);

  log(`\nstore lookups: ${fmtCount(P.store.count)} mapped ids (bench/store-lookups.ts), pinned to cpu ${SERVER_CPU}`);
  const store = await childJson<StoreLookupReport>('store-lookups', SERVER_CPU, ['--import', 'tsx', path.join(HERE, 'store-lookups.ts'), JSON.stringify(P.store)]);
  for (const r of store.results) log(`  ${r.kind.padEnd(9)} p99 ${r.byBuildrequest.p99Ms} ms by buildrequest, ${r.byTaskId.p99Ms} ms by taskId; RSS ${r.rssMiB.start} → ${r.rssMiB.afterFill} → ${r.rssMiB.afterLookups} MiB`);
  if (store.postgresNote) log(`  postgres skipped: ${store.postgresNote}`);

  log(`\nqueue translation (bench/queue-translation.ts): forces through the proxy vs createTask direct, reads of finished work from the store vs proxied; the same with the PostgreSQL store vs the embedded one, taking turns`);
  const queueTranslation = await childJson<QueueTranslationReport>('queue-translation', LOAD_CPU, ['--import', 'tsx', path.join(HERE, 'queue-translation.ts'), JSON.stringify({ ...P.queue, proxyCpu: PIN ? SERVER_CPU : null })]);
  const qt = queueTranslation;
  log(`  embedded store: force p50 ${qt.force.proxyP50Ms} ms vs createTask direct ${qt.force.directP50Ms} ms; reads from the store ${fmtCount(qt.read.storeRps)} req/s vs proxied ${fmtCount(qt.read.proxiedRps)} req/s`);
  const pg = qt.postgres;
  if (pg) log(`  PostgreSQL store (${pg.server.version}): force p50 ${pg.force.postgresP50Ms} ms vs embedded ${pg.force.embeddedP50Ms} ms; reads ${fmtCount(pg.read.postgresRps)} req/s vs embedded ${fmtCount(pg.read.embeddedRps)} req/s`);
  else log(`  PostgreSQL store NOT measured: ${qt.postgresNote}`);

  log(`\nbuild tracking (bench/build-tracking.ts): ${fmtCount(P.tracking.queueBuilds + P.tracking.legacyBuilds)} builds in flight (${fmtCount(P.tracking.queueBuilds)} on a queue, ${fmtCount(P.tracking.legacyBuilds)} on a Buildbot master) vs none, ${P.tracking.windowS} s measured`);
  const tracking = await childJson<BuildTrackingReport>('build-tracking', LOAD_CPU, ['--import', 'tsx', path.join(HERE, 'build-tracking.ts'), JSON.stringify({ ...P.tracking, proxyCpu: PIN ? SERVER_CPU : null })]);

  // ---- verdicts
  const shadowCost = 1 - shadowRatio.ratio;
  const targets: Target[] = [
    ...NODE_REFERENCES.flatMap((ref) => (['GET', 'POST'] as const).map((method) => {
      const nginxRatio = ratios[method][`nginxVs${ref.key}`];
      return target(ref.targetIds[method], `proxy ${method === 'GET' ? 'GET' : 'force-POST'} throughput vs the ${ref.label}`, ratios[method][`proxyVs${ref.key}`]!.ratio, ref.minRatio, 'min', '×', nginxRatio ? `nginx ${nginxRatio.ratio.toFixed(2)}×` : 'nginx skipped');
    })),
    target('latency-p50', `added median latency at ${P.rate} req/s`, latency.addedP50Ms, 0.3, 'max', 'ms'),
    target('latency-p99', `added p99 latency at ${P.rate} req/s`, latency.addedP99Ms, 2, 'max', 'ms'),
    target('routing-exact', 'decision time, 10,000 vs 10 routes (exact names)', routing.ratios.exact!.ratio, 1.2, 'max', '×', `lookup alone ${routing.ratios.exact!.lookup.toFixed(2)}×, like for like ${routing.ratios.exact!.likeForLike.toFixed(2)}×`),
    target('routing-mix', 'decision time, 10,000 vs 10 routes (globs/regexes mix)', routing.ratios.mix!.ratio, 1.2, 'max', '×', `lookup alone ${routing.ratios.mix!.lookup.toFixed(2)}×, like for like ${routing.ratios.mix!.likeForLike.toFixed(2)}×`),
    target('download-throughput', `${fmtBytes(P.downloadBytes)} download through the proxy vs direct`, download.ratio, 0.8, 'min', '×',
      `references: ${NODE_REFERENCES.map((ref) => `${ref.short} ${download.references[ref.id]!.ratio.toFixed(2)}×`).join(', ')}`),
    target('download-memory', `proxy RSS growth during the ${fmtBytes(P.downloadBytes)} download`, download.proxyRssGrowthMiB, 64, 'max', 'MiB'),
    target('shadow-cost', 'client throughput lost to shadowing 100 % of GETs', shadowCost * 100, 20, 'max', '%'),
    // A copy dropped at the in-flight cap costs nothing: the cost above only counts if (nearly) every request was copied.
    target('shadow-copies', 'shadow copies the mirror received per shadowed request', mirrorCopies / (shadowRequests || 1), 0.95, 'min', '×'),
    target('memory-growth', `RSS growth from ${fmtCount(P.memFirst)} to ${fmtCount(P.memTotal)} requests`, memory.growthMiB, 20, 'max', 'MiB'),
    ...store.results.map((r) => target(`store-p99-${r.kind}`, `${r.kind} store lookup p99 with ${fmtCount(r.rows)} mapped ids`,
      Math.max(r.byBuildrequest.p99Ms, r.byTaskId.p99Ms), 1, 'max', 'ms', `RSS ${r.rssMiB.start} → ${r.rssMiB.afterLookups} MiB`)),
    target('queue-force-added', 'translated force: median added over createTask direct', queueTranslation.force.addedP50Ms, 5, 'max', 'ms', `p50 ${queueTranslation.force.proxyP50Ms} vs ${queueTranslation.force.directP50Ms} ms`),
    target('queue-read-from-store', 'finished-work reads from the store vs proxied, same size', queueTranslation.read.ratio, 0.5, 'min', '×', `${queueTranslation.read.queueCallsDuringReads} queue calls during the reads`),
    // Without PostgreSQL these have no value (null in the JSON) and FAIL, their note saying why.
    target('pg-force-added', "translated force: PostgreSQL store's median over embedded", pg?.force.addedP50Ms ?? NaN, 5, 'max', 'ms', pg ? `p50 ${pg.force.postgresP50Ms} vs ${pg.force.embeddedP50Ms} ms` : `not measured: ${qt.postgresNote}`),
    target('pg-read-ratio', 'finished-work reads from PostgreSQL vs embedded, paired', pg?.read.ratio ?? NaN, 0.5, 'min', '×', pg ? `${fmtCount(pg.read.postgresRps)} vs ${fmtCount(pg.read.embeddedRps)} req/s, ${pg.read.queueCallsDuringReads} queue calls` : `not measured: ${qt.postgresNote}`),
    target('tracking-cpu', `CPU added by ${fmtCount(tracking.builds.total)} builds in flight`, tracking.cpu.added * 100, 5, 'max', '% of a core', `${fmt(tracking.queueCallsPerS.total, 1)} queue calls/s, ${fmt(tracking.masterCallsPerS.total, 1)} master calls/s`),
    target('tracking-rss', `RSS added by ${fmtCount(tracking.builds.total)} builds in flight`, tracking.rssMiB.added, 50, 'max', 'MiB', `gauge ${fmtCount(tracking.inFlight.after)}`),
  ];

  // ---- report
  const load1 = os.loadavg();
  const result = {
    schema: 2,
    mode: P.mode,
    date: new Date().toISOString(),
    elapsedS: elapsed(),
    machine: { cpus: NCPU, model: os.cpus()[0]?.model ?? null, memGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version, platform: `${os.type()} ${os.release()}`, loadAvgStart: load0.map(r3), loadAvgEnd: load1.map(r3) },
    tools: { loadGenerator: `${lg.name} ${lg.version}`, nginx: tools.nginxVersion, nginxSkipped: tools.nginxNote, undici: UNDICI_VERSION },
    code: codeVersion(),
    params: { ...P, getPath: GET_PATH, postPath: POST_PATH, postBodyBytes: Buffer.byteLength(POST_BODY), pinning: PIN ? { serversUnderTest: SERVER_CPU, upstreamsLoadgenBench: LOAD_CPU } : null },
    throughput,
    ratios,
    shadow: {
      withoutRps: throughput.GET!.proxy!.rps,
      withRps: throughput.GET!['proxy-shadow']!.rps,
      ratio: shadowRatio.ratio,
      perCycle: shadowRatio.perCycle,
      costPct: shadowCost * 100,
      /** Requests the shadowing proxy answered while measured (retried slices included), and copies the mirror received. */
      requests: shadowRequests,
      copiesReceived: mirrorCopies,
      copiesPerRequest: mirrorCopies / (shadowRequests || 1),
      shadowResults: diffCounts(shadowMetricsAfter, shadowMetricsBefore),
    },
    latency,
    download,
    memory,
    routing,
    store,
    queueTranslation,
    tracking,
    accessLog: { proxyLines: proxyLogLines, proxyRequests: sumRequests(slices, 'proxy') },
    targets,
    slices,
    discardedSlices: discarded,
    measurements: {} as Record<string, number | null>,
  };
  result.measurements = flatMeasurements(result, !!nginx);
  printReport(result, !!nginx);
  fs.mkdirSync(path.dirname(OUT), { recursive: true });
  fs.writeFileSync(OUT, JSON.stringify(result, null, 2) + '\n');
  log(`\nwrote ${path.relative(process.cwd(), OUT) || OUT} in ${elapsed()} s`);
  const failed = targets.filter((t) => t.verdict === 'FAIL');
  if (STRICT && failed.length) {
    log(`--strict: ${failed.length} target(s) failed: ${failed.map((t) => t.id).join(', ')}`);
    process.exitCode = 1;
  }
}

/** Which proxy code was measured: the commit, and whether src/ had uncommitted changes (dist/ is built from src/). */
function codeVersion(): { commit: string | null; srcModified: boolean | null } {
  const rev = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO, encoding: 'utf8' });
  const st = spawnSync('git', ['status', '--porcelain', '--', 'src'], { cwd: REPO, encoding: 'utf8' });
  return { commit: rev.status === 0 ? rev.stdout.trim() : null, srcModified: st.status === 0 ? st.stdout.trim() !== '' : null };
}

function target(id: string, description: string, value: number, limit: number, kind: 'min' | 'max', unit: string, note?: string): Target {
  const ok = Number.isFinite(value) && (kind === 'min' ? value >= limit : value <= limit);
  return { id, description, value, limit, kind, unit, verdict: SMOKE ? 'n/a (smoke)' : ok ? 'PASS' : 'FAIL', ...(note ? { note } : {}) };
}

function sumRequests(slices: Slice[], target: string): number {
  return slices.filter((s) => s.target === target).reduce((a, s) => a + s.requests, 0);
}

// ------------------------------------------------------------------ helpers for phases
interface ExplainAnswer {
  backend?: string;
  jobType?: string;
}

/** Asks the running proxy how it routes the bench's request, by sending one and reading its answer headers. */
async function explainVia(server: Server, spec: RequestSpec): Promise<ExplainAnswer> {
  const http = await import('node:http');
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: server.port, path: spec.path, method: spec.method, agent: false, headers: spec.body ? { 'content-type': 'application/json' } : {} }, (res) => {
      res.resume();
      res.on('end', () => resolve({ backend: res.headers['x-strangler-backend'] as string | undefined, jobType: res.headers['x-strangler-job-type'] as string | undefined }));
    });
    req.on('error', reject);
    req.end(spec.body);
  });
}

async function upstreamCount(s: Server): Promise<number> {
  const r = await httpGet(`http://127.0.0.1:${s.port}/__bench/stats`);
  return (JSON.parse(r.body) as { builderRequests: number }).builderRequests;
}

async function shadowResults(s: Server): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  try {
    const r = await httpGet(`http://127.0.0.1:${s.adminPort}/metrics`, 5000);
    for (const m of r.body.matchAll(/^strangler_shadow_requests_total\{([^}]*)\} (\S+)$/gm)) {
      const result = /result="([^"]*)"/.exec(m[1]!)?.[1] ?? 'unknown';
      out[result] = (out[result] ?? 0) + Number(m[2]);
    }
  } catch {
    /* metrics unreadable: leave empty */
  }
  return out;
}

function diffCounts(after: Record<string, number>, before: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(after)) out[k] = v - (before[k] ?? 0);
  return out;
}

async function metricValue(s: Server, name: string): Promise<number> {
  try {
    const r = await httpGet(`http://127.0.0.1:${s.adminPort}/metrics`, 5000);
    const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(r.body);
    return m ? Number(m[1]) : NaN;
  } catch {
    return NaN;
  }
}

async function stopAndCountLog(s: Server): Promise<number> {
  await stopProc(s.proc, 15_000);
  if (!s.logFile) return NaN;
  let lines = 0;
  const fd = fs.openSync(s.logFile, 'r');
  const buf = Buffer.alloc(1 << 20);
  for (let n = fs.readSync(fd, buf); n > 0; n = fs.readSync(fd, buf)) for (let i = 0; i < n; i++) if (buf[i] === 10) lines++;
  fs.closeSync(fd);
  return lines;
}

interface RateResult {
  requests: number; errors: number; non2xx: number; achievedRate: number;
  p50: number; p90: number; p99: number; p999: number; max: number; mean: number;
}

async function childJson<T>(name: string, cpu: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<T> {
  const proc = spawnPinned(name, cpu, process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], cwd: REPO, env });
  let out = '';
  let err = '';
  proc.child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  proc.child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  const code = await proc.exited;
  const line = out.trim().split('\n').pop() ?? '';
  try {
    const parsed = JSON.parse(line) as T & { error?: string };
    if (parsed.error) throw new Error(parsed.error);
    return parsed;
  } catch (error) {
    throw new Error(`${name} exited ${code}: ${(error as Error).message}\n${err.trim().slice(-2000)}`);
  }
}

function rateClient(port: number, spec: RequestSpec, rate: number, seconds: number, warmup: number): Promise<RateResult> {
  return childJson<RateResult>('rate-client', LOAD_CPU, [path.join(HERE, 'lib/rate-client.mjs'), JSON.stringify({ url: `http://127.0.0.1:${port}${spec.path}`, method: spec.method, body: spec.body ?? null, rate, seconds, warmup })]);
}

function downloadOnce(port: number, urlPath: string): Promise<{ bytes: number; seconds: number; mibPerS: number; complete: boolean }> {
  return childJson('download', LOAD_CPU, [path.join(HERE, 'lib/download.mjs'), `http://127.0.0.1:${port}${urlPath}`]);
}

interface RoutingCase {
  key: string; mix: string; routes: number; exactRoutes: number; patternRoutes: number; yamlBytes: number; parseMs: number; matchedJobTypes: number;
  nsPerDecision: number; nsPerDecisionMin: number; nsPerMatchedDecision: number; nsPerUnmatchedDecision: number; nsPerLookup: number; nsPerColdDecision: number; coldSample: number;
}
interface RoutingResult {
  decisionsPerPass: number; distinctJobTypes: number; distinctInStream: number; top10Share: number; rounds: number;
  cases: RoutingCase[];
  ratios: Record<string, { largest: number; smallest: number; ratio: number; matched: number; unmatched: number; likeForLike: number; lookup: number; perRound: number[] }>;
}

function routingMicro(): Promise<RoutingResult> {
  return childJson<RoutingResult>('routing-micro', SERVER_CPU, ['--import', 'tsx', path.join(HERE, 'lib/routing-micro.ts'), JSON.stringify(P.routing)]);
}

/** The job-type mix of the memory phase: 2,000 builders, skewed; 80 % GETs on their builds, 20 % forces. */
function memoryMix(): RequestSpec[] {
  const { names, sequence } = jobTypeWorkload(2000, 4000, 21);
  return Array.from(sequence, (i, k) => {
    const name = names[i]!;
    return k % 5 === 4
      ? { method: 'POST' as const, path: POST_PATH, body: POST_BODY.replace('"linux64-opt"', JSON.stringify(name)) }
      : { method: 'GET' as const, path: `/api/v2/builders/${name}/builds?limit=1` };
  });
}

async function memoryPhase(tmp: string, fx: Awaited<ReturnType<typeof startFixture>>, lg: LoadGenerator) {
  const [port, admin] = await Promise.all([freePort(), freePort()]);
  const s = startStrangler('proxy-memory', 'strangler-proxy (memory)', fx.configFile, port, admin, '/dev/null');
  running.push(s);
  await readyStrangler(s);
  const mix = memoryMix();
  const points: Array<{ requests: number; rssMiB: number; heapUsedMiB: number; t: number }> = [];
  let done = 0;
  let rate = 0;
  let runs = 0;
  let errors = 0;
  const point = async () => {
    await sleep(SMOKE ? 300 : 1000); // idle: what the process holds, not what is in flight
    const rss = procStatusBytes(s.proc.pid, 'VmRSS');
    points.push({ requests: done, rssMiB: r1(rss / MiB), heapUsedMiB: r1((await metricValue(s, 'nodejs_heap_size_used_bytes')) / MiB), t: elapsed() });
    log(`  ${String(elapsed()).padStart(6)} s ${fmtCount(done).padStart(9)} requests  RSS ${(rss / MiB).toFixed(1)} MiB  heap used ${points.at(-1)!.heapUsedMiB} MiB${rate ? `  (${rate.toFixed(0)} req/s)` : ''}`);
  };
  const driveTo = async (goal: number, pointEvery: number) => {
    let nextPoint = done + pointEvery;
    while (done < goal) {
      // Whole seconds (wrk's unit). A cold proxy is slow at first, so runs start short and at
      // most double (1, 2, 4 ... s) while the rate is re-estimated after each; then each covers
      // half of what is left until the end is under 2 s away: a point lands past its count by
      // less than one second of requests.
      const left = rate > 0 ? (Math.min(goal, nextPoint) - done) / rate : 0;
      const seconds = Math.max(1, Math.min(SMOKE ? 3 : 20, 2 ** runs, Math.floor(left > 2 ? left / 2 : left)));
      runs++;
      const r = await lg.runMix(s.port, mix, seconds, P.connections);
      done += r.requests;
      errors += r.errors;
      rate = r.rps;
      if (!isAlive(s.proc)) throw new Error('the proxy died during the memory phase');
      if (done >= nextPoint && done < goal) {
        await point();
        nextPoint = done + pointEvery;
      }
    }
  };
  await driveTo(P.memFirst, P.memFirst);
  await point();
  const atFirst = points.at(-1)!;
  await driveTo(P.memTotal, (P.memTotal - P.memFirst) / 4);
  await point();
  const atTotal = points.at(-1)!;
  const hwm = procStatusBytes(s.proc.pid, 'VmHWM');
  const proxyCount = await requestsTotal(s);
  await stopProc(s.proc, 15_000);
  return {
    firstAt: atFirst.requests, rssFirstMiB: atFirst.rssMiB, totalAt: atTotal.requests, rssTotalMiB: atTotal.rssMiB,
    growthMiB: atTotal.rssMiB - atFirst.rssMiB, peakRssMiB: r1(hwm / MiB), errors, requestsCountedByProxy: proxyCount, points,
  };
}

async function requestsTotal(s: Server): Promise<number> {
  try {
    const r = await httpGet(`http://127.0.0.1:${s.adminPort}/metrics`, 5000);
    let total = 0;
    for (const m of r.body.matchAll(/^strangler_requests_total\{[^}]*\} (\S+)$/gm)) total += Number(m[1]);
    return total;
  } catch {
    return NaN;
  }
}

// ------------------------------------------------------------------ profile mode
async function runProfile(tmp: string, tools: Tools): Promise<void> {
  const fx = await startFixture(tmp, tools, false);
  const scenarios = [
    { name: 'GET', config: fx.configFile, spec: GET },
    { name: 'POST', config: fx.configFile, spec: POST },
    { name: 'GET, shadow 100%', config: fx.shadowFile, spec: GET },
  ];
  log(`profiling the proxy (node --cpu-prof), one fresh process per scenario: ${P.warmupS} s warm-up, then ${P.profileS} s of load, ${P.connections} connections`);
  const out: Array<{ scenario: string; rps: number; cpuUsPerReq: number; summary: ProfileSummary }> = [];
  for (const [i, sc] of scenarios.entries()) {
    const profDir = path.join(tmp, `cpuprof-${i}`);
    fs.mkdirSync(profDir);
    const [port, admin] = await Promise.all([freePort(), freePort()]);
    const proxy = startStrangler(`proxy-${i}`, 'strangler-proxy', sc.config, port, admin, path.join(tmp, `proxy-${i}.log`), ['--cpu-prof', '--cpu-prof-dir', profDir]);
    running.push(proxy);
    await readyStrangler(proxy);
    await tools.loadgen.run(proxy.port, sc.spec, P.warmupS, P.connections);
    const m = await measured(proxy, fx.upstream, () => tools.loadgen.run(proxy.port, sc.spec, P.profileS, P.connections));
    await stopProc(proxy.proc, 20_000);
    const file = fs.readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
    if (!file) throw new Error('the proxy wrote no .cpuprofile (did it exit cleanly on SIGTERM?)');
    if (KEEP) fs.copyFileSync(path.join(profDir, file), path.join(tmp, `proxy-${sc.name.replace(/[^A-Za-z]+/g, '-')}.cpuprofile`));
    // The profile covers start-up and warm-up too (module loading, JIT); they are a few % of its samples.
    const summary = summarizeProfile(path.join(profDir, file), 30);
    out.push({ scenario: sc.name, rps: m.result.rps, cpuUsPerReq: m.cpuUsPerReq, summary });
    log(`
=== ${sc.name}: ${m.result.rps.toFixed(0)} req/s with the profiler on, ${m.cpuUsPerReq.toFixed(0)} µs cpu/req; ${summary.samples} samples, ${summary.idleShare}% idle (shares are of the busy samples)`);
    log('top functions by self time:');
    for (const t of summary.top.slice(0, 20)) log(`  ${t.selfPct.toFixed(1).padStart(5)}%  ${t.function.slice(0, 40).padEnd(40)} ${t.where}`);
    log('native time (syscalls, builtins) by the nearest caller in our code, a package or node:_http*:');
    for (const c of summary.nativeCallers.slice(0, 8)) log(`  ${c.selfPct.toFixed(1).padStart(5)}%  ${c.native.slice(0, 20).padEnd(20)} ← ${c.caller.slice(0, 30).padEnd(30)} ${c.where}`);
    log('by component:                     self   inclusive (anywhere on the stack)');
    for (const c of summary.components.slice(0, 18)) log(`  ${c.component.slice(0, 30).padEnd(30)} ${c.selfPct.toFixed(1).padStart(5)}%  ${c.inclusivePct.toFixed(1).padStart(5)}%`);
  }
  await stopProc(fx.upstream.proc);
  await stopProc(fx.mirror.proc);
  fs.mkdirSync(path.dirname(OUT), { recursive: true });
  fs.writeFileSync(OUT, JSON.stringify({ date: new Date().toISOString(), node: process.version, loadAvg: os.loadavg().map(r3), params: { seconds: P.profileS, warmupS: P.warmupS, connections: P.connections, routes: P.routes }, profiles: out }, null, 2) + '\n');
  log(`\nwrote ${path.relative(process.cwd(), OUT) || OUT}${KEEP ? `; raw profiles in ${tmp} (open them in Chrome DevTools)` : ' (--keep keeps the raw .cpuprofile files)'}`);
}

// ------------------------------------------------------------------ report
type Result = {
  throughput: Record<Method, Record<string, ThroughputRow>>;
  ratios: Record<Method, Ratios>;
  shadow: { withoutRps: number; withRps: number; ratio: number; costPct: number; copiesPerRequest: number; shadowResults: Record<string, number> };
  latency: { direct: { p50Ms: number; p99Ms: number }; proxy: { p50Ms: number; p99Ms: number }; addedP50Ms: number; addedP99Ms: number; references: Record<string, { p50Ms: number; p99Ms: number; addedP50Ms: number; addedP99Ms: number }> };
  download: { directMiBps: number; proxyMiBps: number; references: Record<string, { mibPerS: number; ratio: number }>; proxyCpuPct: number; ratio: number; proxyRssGrowthMiB: number };
  memory: { firstAt: number; rssFirstMiB: number; totalAt: number; rssTotalMiB: number; growthMiB: number };
  routing: RoutingResult;
  tracking: BuildTrackingReport;
  targets: Target[];
  accessLog: { proxyLines: number; proxyRequests: number };
};

/** Every number the report stands on, by a stable key (the smoke test checks each is there and numeric). */
function flatMeasurements(r: Result, haveNginx: boolean): Record<string, number | null> {
  const m: Record<string, number | null> = {};
  for (const method of ['GET', 'POST'] as const) {
    for (const { id } of rowsFor(method)) {
      const row = r.throughput[method][id];
      for (const k of ['rps', 'p50Ms', 'p99Ms', 'cpuUsPerReq'] as const) m[`throughput.${method}.${id}.${k}`] = row ? row[k] : id === 'nginx' && !haveNginx ? null : NaN;
    }
    for (const ref of NODE_REFERENCES) {
      for (const via of ['proxy', 'nginx']) m[`ratio.${method}.${via}Vs${ref.key}`] = r.ratios[method][`${via}Vs${ref.key}`]?.ratio ?? (via === 'nginx' && !haveNginx ? null : NaN);
    }
  }
  for (const ref of NODE_REFERENCES) {
    m[`latency.${ref.id}AddedP50Ms`] = r.latency.references[ref.id]?.addedP50Ms ?? NaN;
    m[`latency.${ref.id}AddedP99Ms`] = r.latency.references[ref.id]?.addedP99Ms ?? NaN;
    m[`download.${ref.id}MiBps`] = r.download.references[ref.id]?.mibPerS ?? NaN;
  }
  Object.assign(m, {
    'latency.direct.p50Ms': r.latency.direct.p50Ms, 'latency.direct.p99Ms': r.latency.direct.p99Ms,
    'latency.proxy.p50Ms': r.latency.proxy.p50Ms, 'latency.proxy.p99Ms': r.latency.proxy.p99Ms,
    'latency.addedP50Ms': r.latency.addedP50Ms, 'latency.addedP99Ms': r.latency.addedP99Ms,
    'download.directMiBps': r.download.directMiBps, 'download.proxyMiBps': r.download.proxyMiBps, 'download.proxyCpuPct': r.download.proxyCpuPct, 'download.ratio': r.download.ratio, 'download.proxyRssGrowthMiB': r.download.proxyRssGrowthMiB,
    'shadow.withoutRps': r.shadow.withoutRps, 'shadow.withRps': r.shadow.withRps, 'shadow.ratio': r.shadow.ratio, 'shadow.costPct': r.shadow.costPct, 'shadow.copiesPerRequest': r.shadow.copiesPerRequest,
    'memory.rssFirstMiB': r.memory.rssFirstMiB, 'memory.rssTotalMiB': r.memory.rssTotalMiB, 'memory.growthMiB': r.memory.growthMiB,
    'accessLog.proxyLines': r.accessLog.proxyLines,
    'tracking.inFlight': r.tracking.inFlight.after, 'tracking.addedCpuPct': r.tracking.cpu.added * 100, 'tracking.addedRssMiB': r.tracking.rssMiB.added,
    'tracking.queueCallsPerS': r.tracking.queueCallsPerS.total, 'tracking.masterCallsPerS': r.tracking.masterCallsPerS.total,
  });
  for (const c of r.routing.cases) {
    for (const k of ['nsPerDecision', 'nsPerMatchedDecision', 'nsPerUnmatchedDecision', 'nsPerLookup', 'nsPerColdDecision', 'parseMs'] as const) m[`routing.${c.key}.${k}`] = c[k];
  }
  for (const [mix, v] of Object.entries(r.routing.ratios)) {
    m[`routing.ratio.${mix}`] = v.ratio;
    m[`routing.likeForLike.${mix}`] = v.likeForLike;
    m[`routing.lookupRatio.${mix}`] = v.lookup;
  }
  for (const t of r.targets) m[`target.${t.id}`] = t.value;
  return m;
}

const fmt = (x: number | undefined, d = 0) => (x !== undefined && Number.isFinite(x) ? x.toFixed(d) : '-');
function fmtBytes(n: number): string {
  return n >= 2 ** 30 ? `${n / 2 ** 30} GiB` : `${n / MiB} MiB`;
}
function fmtCount(n: number): string {
  return Math.round(n).toLocaleString('en');
}
function fmtNs(ns: number): string {
  return ns >= 1e6 ? `${(ns / 1e6).toFixed(1)} ms` : ns >= 1e3 ? `${(ns / 1e3).toFixed(1)} µs` : `${ns.toFixed(0)} ns`;
}

function printReport(r: Result, haveNginx: boolean): void {
  const line = (s: string) => log(s);
  line('\n' + '='.repeat(100));
  line(`RESULTS (${P.mode}${SMOKE ? ': tiny sizes, verdicts not judged' : ''})`);
  line('='.repeat(100));
  line(`\n1. Throughput: ${P.connections} connections, ${P.cycles} × ${P.sliceS} s slices per target, interleaved; proxies alone on cpu ${SERVER_CPU}, upstream + wrk on cpu ${LOAD_CPU}`);
  const ratioColumns = NODE_REFERENCES.map((ref) => ref.column.padStart(5)).join(' ');
  line(`   ${'target'.padEnd(30)} | ${'GET req/s'.padStart(9)} ${'p50 ms'.padStart(7)} ${'p99 ms'.padStart(7)} ${'µs/req'.padStart(6)} ${ratioColumns} | ${'POST req/s'.padStart(10)} ${'p50 ms'.padStart(7)} ${'p99 ms'.padStart(7)} ${'µs/req'.padStart(6)} ${ratioColumns}`);
  for (const { id, label } of THROUGHPUT_ROWS) {
    if (id === 'nginx' && !haveNginx) {
      line(`   ${label.padEnd(30)} | skipped: nginx not installed`);
      continue;
    }
    const cell = (method: Method) => {
      const row = r.throughput[method][id];
      const w = method === 'GET' ? 9 : 10;
      const cells = row
        ? [fmt(row.rps).padStart(w), fmt(row.p50Ms, 2).padStart(7), fmt(row.p99Ms, 2).padStart(7), fmt(row.cpuUsPerReq).padStart(6), ...NODE_REFERENCES.map((ref) => fmt(row[`vs${ref.key}`], 2).padStart(5))]
        : ['-'.padStart(w), '-'.padStart(7), '-'.padStart(7), '-'.padStart(6), ...NODE_REFERENCES.map(() => '-'.padStart(5))];
      return cells.join(' ');
    };
    line(`   ${label.padEnd(30)} | ${cell('GET')} | ${cell('POST')}`);
  }
  line('   req/s, p50, p99 (wrk, closed loop): medians over slices; µs/req: CPU time of the server under test (direct: the upstream) per request,');
  line(`   from /proc; ${NODE_REFERENCES.map((ref) => `${ref.column} (the ${ref.short})`).join(', ')}: median over cycles of req/s ÷ that reference's req/s in the same cycle (what the targets use).`);
  line(`\n2. Added latency, GET at ${P.rate} req/s (open loop), median of ${P.rateCycles} × ${P.rateSliceS} s`);
  line(`   ${''.padEnd(30)} | ${'p50 ms'.padStart(8)} ${'p99 ms'.padStart(8)}`);
  line(`   ${'direct'.padEnd(30)} | ${fmt(r.latency.direct.p50Ms, 3).padStart(8)} ${fmt(r.latency.direct.p99Ms, 3).padStart(8)}`);
  line(`   ${'through strangler-proxy'.padEnd(30)} | ${fmt(r.latency.proxy.p50Ms, 3).padStart(8)} ${fmt(r.latency.proxy.p99Ms, 3).padStart(8)}`);
  line(`   ${'added by the proxy'.padEnd(30)} | ${fmt(r.latency.addedP50Ms, 3).padStart(8)} ${fmt(r.latency.addedP99Ms, 3).padStart(8)}`);
  for (const ref of NODE_REFERENCES) {
    const added = r.latency.references[ref.id];
    line(`   ${`added by the ${ref.short}`.padEnd(30)} | ${fmt(added?.addedP50Ms, 3).padStart(8)} ${fmt(added?.addedP99Ms, 3).padStart(8)}   (reference)`);
  }
  line(`\n3. Routing decision, decide() in-process, ${fmtCount(r.routing.distinctJobTypes)} job types (Zipf, top 10 = ${(r.routing.top10Share * 100).toFixed(0)} % of draws)`);
  line(`   ${'routes'.padEnd(16)} | ${'ns/decision'.padStart(11)} ${'matched'.padStart(8)} ${'default'.padStart(8)} ${'lookup'.padStart(7)} ${'1st sight'.padStart(10)} ${'routed'.padStart(7)} ${'parse ms'.padStart(9)}`);
  for (const c of r.routing.cases) line(`   ${`${fmtCount(c.routes)} ${c.mix}`.padEnd(16)} | ${fmt(c.nsPerDecision).padStart(11)} ${fmt(c.nsPerMatchedDecision).padStart(8)} ${fmt(c.nsPerUnmatchedDecision).padStart(8)} ${fmt(c.nsPerLookup).padStart(7)} ${fmtNs(c.nsPerColdDecision).padStart(10)} ${`${((c.matchedJobTypes / r.routing.distinctJobTypes) * 100).toFixed(0)}%`.padStart(7)} ${fmt(c.parseMs).padStart(9)}`);
  line('   ns/decision: decide() over the same job-type stream for every table; matched/default: only job types the table routes / sends');
  line('   to default; lookup: matchRoute() alone (memo + exact map + pattern scan) over the same stream; 1st sight: a job type not yet');
  line('   in the memo (the pattern scan); routed: share of the 2,000 job types a route matches; parse: parseConfig() of the whole file.');
  line(`\n4. ${fmtBytes(P.downloadBytes)} log download: direct ${fmt(r.download.directMiBps)} MiB/s, through the proxy ${fmt(r.download.proxyMiBps)} MiB/s (${fmt(r.download.ratio, 2)}×, proxy at ${fmt(r.download.proxyCpuPct)}% of a core),`);
  line(`   ${NODE_REFERENCES.map((ref) => `through the ${ref.short} ${fmt(r.download.references[ref.id]?.mibPerS)} MiB/s`).join(', ')} (references); proxy RSS growth ${fmt(r.download.proxyRssGrowthMiB, 1)} MiB`);
  line(`\n5. Shadow 100 % of GETs: ${fmt(r.shadow.withRps)} vs ${fmt(r.shadow.withoutRps)} req/s without (paired ratio ${fmt(r.shadow.ratio, 2)}, cost ${fmt(r.shadow.costPct, 1)} %); copies received by the mirror per request ${fmt(r.shadow.copiesPerRequest, 2)} (${Object.entries(r.shadow.shadowResults).map(([k, v]) => `${k} ${v}`).join(', ') || 'no shadow metrics'})`);
  line(`\n6. Memory: RSS ${fmt(r.memory.rssFirstMiB, 1)} MiB after ${fmtCount(r.memory.firstAt)} requests, ${fmt(r.memory.rssTotalMiB, 1)} MiB after ${fmtCount(r.memory.totalAt)} (growth ${fmt(r.memory.growthMiB, 1)} MiB)`);
  const t = r.tracking;
  line(`\n7. Build tracking: ${fmtCount(t.inFlight.after)} builds in flight (gauge; ${fmtCount(t.builds.queue)} on a queue, ${fmtCount(t.builds.legacy)} on a Buildbot master) vs none, ${fmt(t.windowS)} s measured`);
  line(`   CPU ${fmt(t.cpu.tracked * 100, 2)} vs ${fmt(t.cpu.reference * 100, 2)} % of a core (added ${fmt(t.cpu.added * 100, 2)} %), RSS ${fmt(t.rssMiB.tracked, 1)} vs ${fmt(t.rssMiB.reference, 1)} MiB (added ${fmt(t.rssMiB.added, 1)} MiB);`);
  line(`   the tracked proxy's calls: queue ${fmt(t.queueCallsPerS.total, 1)}/s, master ${fmt(t.masterCallsPerS.total, 1)}/s (${Object.entries(t.masterCallsPerS.byKind).map(([k, v]) => `${k} ${fmt(v, 1)}`).join(', ')});`);
  line(`   event-loop delay p99 / max ${fmt(t.eventLoopDelayMs.tracked.p99, 1)} / ${fmt(t.eventLoopDelayMs.tracked.max, 1)} ms vs ${fmt(t.eventLoopDelayMs.reference.p99, 1)} / ${fmt(t.eventLoopDelayMs.reference.max, 1)} ms; heap used ${fmt(t.memoryMiB.tracked.heapUsed, 1)} vs ${fmt(t.memoryMiB.reference.heapUsed, 1)} MiB, reserved ${fmt(t.memoryMiB.tracked.heapTotal, 1)} vs ${fmt(t.memoryMiB.reference.heapTotal, 1)} MiB`);
  line(`\n   access log: ${fmtCount(r.accessLog.proxyLines)} lines written by the proxy for ${fmtCount(r.accessLog.proxyRequests)} measured requests (plus warm-up)`);
  line(`\nTARGETS`);
  for (const t of r.targets) {
    const v = t.unit === '×' ? `${fmt(t.value, 2)}×` : `${fmt(t.value, t.unit === 'ms' ? 3 : 1)} ${t.unit}`;
    const lim = `${t.kind === 'min' ? '≥' : '≤'} ${t.limit}${t.unit === '×' ? '×' : ` ${t.unit}`}`;
    line(`   ${t.verdict.padEnd(11)} ${t.description.padEnd(58)} ${v.padStart(10)}  (${lim})${t.note ? `  [${t.note}]` : ''}`);
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.stack ?? error.message : error);
  killAllSync();
  process.exit(1);
});
