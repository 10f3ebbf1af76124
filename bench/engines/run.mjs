#!/usr/bin/env node
// Forwarding-engine comparison for the strangler-proxy hot path.
//
//   node bench/engines/run.mjs           # quick profile: 2 s slices, 2 cycles, < 6 min
//   node bench/engines/run.mjs --full    # decision-record profile: 2 s warm-up, 5 s slices, 4 cycles (~21 min idle box, ~30 min busy)
//   node bench/engines/run.mjs --full --slice 10 --cycles 2   # 10 s runs, each config measured twice
//   node bench/engines/run.mjs --only d-dispatch,e-full-hand --slice 5 --cycles 3
//
// Options: --slice S (seconds per measurement)  --cycles N  --warmup S  --connections C
//          --only id,id (the reference 'a' is always included)
//          --e-api stream|request|dispatch|dispatch-v2 (undici API of the e-* configs; default dispatch)
//          --budget S (wall-clock cap; default 330 quick / 1800 full; slices past it are skipped)
//          --no-micro (skip the in-process feature-cost microbenchmark)
//          --out FILE (default bench/engines/results.json)
//          --autocannon PATH (default: $AUTOCANNON, /tmp/benchtools/node_modules/autocannon)
//          --base-port P (default 27600; uses P .. P+15)
//          --max-foreign PCT (default 20) --retries N (default 1): a slice during
//            which processes that are not ours used more than PCT % of a core is re-measured
//            up to N times; ratios use only clean pairs when there are any
//
// Method. On a 2-core box the load generator (autocannon, one persistent
// process driven over stdin, see loadgen.mjs) is pinned to CPU 1; the upstream
// and every proxy under test (one process each, all started up front and
// warmed up, idle when not measured) are pinned to CPU 0. Measurement is
// paired: for each method and cycle the configs are visited in a shuffled
// order with the reference proxy (a) measured between every two of them —
//   a X1 a X2 a X3 ... a
// — and each slice of X is divided by the mean of its two neighbouring (a)
// slices. The "×a" ratio reported is the median of those paired ratios, which
// cancels the slow and not-so-slow throughput drift of a shared VM (we saw
// the same process swing 2× within a minute). req/s, p50, p99 and CPU µs per
// request are medians over a config's slices. CPU time is read from
// /proc/<pid>/stat (user+sys) of the proxy process.
//
// Every child is tracked by pid and stopped by pid (SIGTERM, then SIGKILL);
// nothing is killed by name.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '../..');
const T_START = Date.now();

// ------------------------------------------------------------------ options
const argv = process.argv.slice(2);
const flag = (name) => argv.includes(`--${name}`);
const opt = (name, dflt) => {
  const i = argv.indexOf(`--${name}`);
  if (i >= 0 && i + 1 < argv.length) return argv[i + 1];
  const eq = argv.find((a) => a.startsWith(`--${name}=`));
  return eq ? eq.slice(name.length + 3) : dflt;
};
const FULL = flag('full');
const SLICE = Number(opt('slice', FULL ? 5 : 2));
const WARMUP = Number(opt('warmup', FULL ? 2 : 1));
const CYCLES = Number(opt('cycles', FULL ? 4 : 2));
const CONNECTIONS = Number(opt('connections', 50));
const E_API = opt('e-api', 'dispatch');
const BUDGET_S = Number(opt('budget', FULL ? 1800 : 330));
const OUT = path.resolve(opt('out', path.join(HERE, 'results.json')));
const ONLY = opt('only', null)?.split(',').map((s) => s.trim()).filter(Boolean) ?? null;
const MICRO = !flag('no-micro');
const BASE_PORT = Number(opt('base-port', 27600)); // below the ephemeral range (32768+)
const SEED = Number(opt('seed', 20261124));
// Other processes on this box (e.g. someone's test run) distort a slice. We
// measure the CPU used by everything that is not ours during each slice and
// re-measure a slice when it exceeds this share of one core.
const MAX_FOREIGN = Number(opt('max-foreign', 20)); // % of one core
const RETRIES = Number(opt('retries', 1));

const GET_PATH = '/api/v2/builders/linux64-opt/builds?limit=1';
const POST_PATH = '/api/v2/forceschedulers/force';
// ~300-byte Buildbot JSON-RPC force request: the issue's example plus the
// usual reason/owner/revision fields (298 bytes).
const POST_BODY = JSON.stringify({
  jsonrpc: '2.0', method: 'force', id: 1,
  params: {
    builderNames: ['linux64-opt'], reason: 're-run after infra failure',
    owner: 'Release Engineering <releng@example.org>', branch: 'main',
    revision: '3f1c2e9a7b5d4c6e8f0a1b2c3d4e5f6a7b8c9d0e', project: 'autoland',
    properties: { priority: 'normal' },
  },
});

// ------------------------------------------------------------------ configs
const CONFIGS = [
  { id: 'upstream', label: 'upstream direct (no proxy)', file: null },
  { id: 'a', label: 'a  minimal: node:http + http.Agent, pipe', file: 'a-minimal.mjs' },
  { id: 'b', label: 'b  http-proxy-middleware on node:http', file: 'b-hpm.mjs' },
  { id: 'c', label: 'c  express + http-proxy-middleware', file: 'c-express-hpm.mjs' },
  { id: 'c-full', label: 'c+ express+hpm +route +prom +winston', file: 'c-express-hpm.mjs', env: { ROUTE: '1', METRICS: 'labels', LOG: 'winston' } },
  { id: 'd-request', label: 'd  undici Pool.request', file: 'd-undici.mjs', env: { API: 'request' } },
  { id: 'd-stream', label: 'd  undici Pool.stream', file: 'd-undici.mjs', env: { API: 'stream' } },
  { id: 'd-dispatch', label: 'd  undici Pool.dispatch (raw handler)', file: 'd-undici.mjs', env: { API: 'dispatch' } },
  { id: 'd-dispatch-v2', label: 'd  undici Pool.dispatch (v7 controller)', file: 'd-undici.mjs', env: { API: 'dispatch-v2' } },
  { id: 'e-metrics', label: `e  ${E_API} + prom-client`, file: 'd-undici.mjs', env: { API: E_API, METRICS: 'labels' } },
  { id: 'e-winston', label: `e  ${E_API} + winston log`, file: 'd-undici.mjs', env: { API: E_API, LOG: 'winston' } },
  { id: 'e-hand', label: `e  ${E_API} + hand-built log, batched`, file: 'd-undici.mjs', env: { API: E_API, LOG: 'hand' } },
  { id: 'e-stdout', label: `e  ${E_API} + hand-built log, stdout/line`, file: 'd-undici.mjs', env: { API: E_API, LOG: 'stdout' } },
  { id: 'e-full-winston', label: `e+ ${E_API} +route +prom +winston`, file: 'd-undici.mjs', env: { API: E_API, ROUTE: '1', METRICS: 'labels', LOG: 'winston' } },
  { id: 'e-full-hand', label: `e+ ${E_API} +route +prom(pre-agg) +hand log`, file: 'd-undici.mjs', env: { API: E_API, ROUTE: '1', METRICS: 'fast', LOG: 'hand' } },
];
if (ONLY) for (const id of ONLY) if (!CONFIGS.some((c) => c.id === id)) { console.error(`unknown config ${id}; known: ${CONFIGS.map((c) => c.id).join(', ')}`); process.exit(2); }
const selected = CONFIGS.filter((c) => !ONLY || ONLY.includes(c.id) || c.id === 'a');
selected.forEach((c, i) => { c.port = c.file ? BASE_PORT + 1 + i : BASE_PORT; });
const others = selected.filter((c) => c.id !== 'a');

// ------------------------------------------------------------------ environment
function findAutocannon() {
  const candidates = [opt('autocannon', null), process.env.AUTOCANNON, '/tmp/benchtools/node_modules/autocannon'].filter(Boolean);
  for (const c of candidates) {
    let p = c;
    try { if (fs.statSync(p).isDirectory()) p = path.join(p, 'autocannon.js'); } catch { continue; }
    try { p = fs.realpathSync(p); if (fs.existsSync(p)) return p; } catch { /* next */ }
  }
  try { return createRequire(path.join(process.cwd(), 'x.js')).resolve('autocannon/autocannon.js'); } catch { /* none */ }
  return null;
}
const AUTOCANNON = findAutocannon();
if (!AUTOCANNON) {
  console.error('autocannon not found. Install it outside the repo:\n  mkdir -p /tmp/benchtools && cd /tmp/benchtools && npm init -y && npm i autocannon@8\nor pass --autocannon /path/to/node_modules/autocannon');
  process.exit(2);
}
const NCPU = os.cpus().length;
const HAVE_TASKSET = spawnSync('taskset', ['-c', '0', 'true']).status === 0;
const PIN = HAVE_TASKSET && NCPU >= 2;
const SERVER_CPU = '0';
const LOAD_CPU = '1';
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

// ------------------------------------------------------------------ process tracking
const children = new Map(); // pid -> {child, name}
function spawnNode(cpu, args, env, stdio, name) {
  const cmd = PIN ? 'taskset' : process.execPath;
  const full = PIN ? ['-c', cpu, process.execPath, ...args] : args;
  const child = spawn(cmd, full, { env: { ...process.env, ...env }, stdio, cwd: REPO });
  // taskset exec()s node, so child.pid is node's pid.
  children.set(child.pid, { child, name });
  child.on('exit', () => children.delete(child.pid));
  return child;
}
function alive(pid) { try { process.kill(pid, 0); return true; } catch { return false; } }
async function stop(child) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const pid = child.pid;
  const exited = new Promise((r) => child.once('exit', r));
  try { process.kill(pid, 'SIGTERM'); } catch { return; }
  const t = setTimeout(() => { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }, 2000);
  await exited;
  clearTimeout(t);
}
function killAllSync() {
  for (const pid of children.keys()) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
  children.clear();
}
process.on('exit', killAllSync);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => { console.error(`\n${sig}: stopping children`); killAllSync(); process.exit(130); });
process.on('uncaughtException', (e) => { console.error(e); killAllSync(); process.exit(1); });
process.on('unhandledRejection', (e) => { console.error(e); killAllSync(); process.exit(1); });

// ------------------------------------------------------------------ helpers
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function portFree(port) {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}
async function waitListening(port, child, timeoutMs = 10000) {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (child.exitCode !== null) throw new Error(`process exited with ${child.exitCode} before listening on ${port}`);
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => { s.destroy(); resolve(true); });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`timeout waiting for port ${port}`);
}
function cpuTicks(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]); // utime + stime
  } catch { return NaN; }
}
function busyTicks() {
  const l = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal ...
  return l[0] + l[1] + l[2] + l[5] + l[6] + l[7];
}
function ourTicks() {
  let t = cpuTicks(process.pid);
  for (const pid of children.keys()) { const x = cpuTicks(pid); if (Number.isFinite(x)) t += x; }
  return t;
}
const median = (xs) => {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return NaN;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
};
function shuffled(arr, seed) {
  const a = arr.slice();
  let s = seed >>> 0;
  const rnd = () => { s = (s * 1664525 + 1013904223) >>> 0; return s / 2 ** 32; };
  for (let i = a.length - 1; i > 0; i--) { const j = Math.floor(rnd() * (i + 1)); [a[i], a[j]] = [a[j], a[i]]; }
  return a;
}

// ------------------------------------------------------------------ load generator
let loadgen = null;
const pendingJobs = new Map();
let jobId = 0;
function startLoadgen() {
  loadgen = spawnNode(LOAD_CPU, [path.join(HERE, 'loadgen.mjs')], { AUTOCANNON }, ['pipe', 'pipe', 'inherit'], 'loadgen');
  readline.createInterface({ input: loadgen.stdout }).on('line', (l) => {
    let msg;
    try { msg = JSON.parse(l); } catch { return; }
    const p = pendingJobs.get(msg.id);
    if (!p) return;
    pendingJobs.delete(msg.id);
    clearTimeout(p.timer);
    if (msg.error) p.reject(new Error(msg.error)); else p.resolve(msg.result);
  });
  loadgen.on('exit', (code) => { for (const p of pendingJobs.values()) p.reject(new Error(`loadgen exited ${code}`)); pendingJobs.clear(); });
}
function load(port, method, seconds) {
  const id = ++jobId;
  const job = {
    id, url: `http://127.0.0.1:${port}${method === 'GET' ? GET_PATH : POST_PATH}`, method,
    body: method === 'POST' ? POST_BODY : null, duration: seconds, connections: CONNECTIONS,
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { pendingJobs.delete(id); reject(new Error('loadgen timeout')); }, (seconds + 30) * 1000);
    pendingJobs.set(id, { resolve, reject, timer });
    loadgen.stdin.write(JSON.stringify(job) + '\n');
  });
}

// ------------------------------------------------------------------ measurement
const deadline = T_START + BUDGET_S * 1000;
const slicesPerCycle = 2 * (2 * others.length + 1);
const estimateS = Math.round(5 + selected.length * 2 * (WARMUP + 0.1) + CYCLES * slicesPerCycle * (SLICE + 0.15) + (MICRO ? 25 : 0));

async function measureOnce(cfg, method, cycle, seq, procs, upstream) {
  const pid = procs.get(cfg.id)?.pid;
  const p0 = pid ? cpuTicks(pid) : NaN;
  const u0 = cpuTicks(upstream.pid);
  const b0 = busyTicks();
  const o0 = ourTicks();
  const w0 = performance.now();
  const r = await load(cfg.port, method, SLICE);
  const wall = (performance.now() - w0) / 1000;
  const p1 = pid ? cpuTicks(pid) : NaN;
  const u1 = cpuTicks(upstream.pid);
  const b1 = busyTicks();
  const o1 = ourTicks();
  const total = r.requests.total || 1;
  // everything busy on the box minus our processes; includes some kernel
  // softirq time for our own loopback traffic (a few %)
  const foreignPct = Math.max(0, ((b1 - b0) - (o1 - o0)) * 100 / CLK_TCK / wall);
  return {
    config: cfg.id, method, cycle, seq, t: Math.round((Date.now() - T_START) / 100) / 10,
    rps: total / r.duration, total, durationS: r.duration,
    p50: r.latency.p50, p99: r.latency.p99, latencyAvg: r.latency.average,
    errors: r.errors, timeouts: r.timeouts, non2xx: r.non2xx,
    proxyCpuUsPerReq: pid ? ((p1 - p0) * 1e6) / CLK_TCK / total : null,
    proxyCpuPct: pid ? ((p1 - p0) * 100) / CLK_TCK / r.duration : null,
    upstreamCpuUsPerReq: ((u1 - u0) * 1e6) / CLK_TCK / total,
    foreignCpuPct: Math.round(foreignPct * 10) / 10,
    // a slice with no completed request (we saw a 2 s total stall while other
    // processes saturated both cores) is invalid: re-measured, never aggregated
    invalid: !(r.requests.total > 0),
    contaminated: foreignPct > MAX_FOREIGN || !(r.requests.total > 0),
  };
}
const discarded = [];
let remainingSlices = 0; // planned slices not yet measured (for the retry budget)
async function measure(cfg, method, cycle, seq, procs, upstream) {
  let s = await measureOnce(cfg, method, cycle, seq, procs, upstream);
  // retry only when the rest of the plan (and the micro benchmark) still fits the budget
  const spare = () => deadline - Date.now() - (remainingSlices * (SLICE + 0.2) + (MICRO ? 30 : 0)) * 1000;
  for (let i = 0; i < RETRIES && s.contaminated && spare() > (SLICE + 1.5) * 1000; i++) {
    console.log(`  ${String(s.t).padStart(6)}s ${cfg.id.padEnd(15)} ${method.padEnd(4)} ${s.rps.toFixed(0).padStart(7)} req/s  -- ${s.invalid ? 'no request completed' : `other processes used ${s.foreignCpuPct}% cpu`}, re-measuring`);
    discarded.push(s);
    await sleep(1000);
    s = await measureOnce(cfg, method, cycle, seq, procs, upstream);
    s.retry = i + 1;
  }
  return s;
}

function aggregate(allSlices) {
  const slices = allSlices.filter((x) => !x.invalid);
  const out = {};
  for (const cfg of selected) {
    out[cfg.id] = { label: cfg.label, file: cfg.file, env: cfg.env ?? {} };
    for (const method of ['GET', 'POST']) {
      const rs = slices.filter((r) => r.config === cfg.id && r.method === method);
      if (!rs.length) continue;
      // paired ratios against the neighbouring (a) slices
      const pairs = [];
      for (const r of rs) {
        const nb = slices.filter((s) => s.config === 'a' && s.method === method && s.cycle === r.cycle && Math.abs(s.seq - r.seq) === 1);
        if (!nb.length || cfg.id === 'a') continue;
        pairs.push({
          clean: !r.contaminated && nb.every((x) => !x.contaminated),
          ratio: r.rps / (nb.reduce((s, x) => s + x.rps, 0) / nb.length),
          cpuRatio: r.proxyCpuUsPerReq ? (nb.reduce((s, x) => s + x.proxyCpuUsPerReq, 0) / nb.length) / r.proxyCpuUsPerReq : null,
        });
      }
      const cleanPairs = pairs.filter((p) => p.clean);
      const used = cleanPairs.length ? cleanPairs : pairs;
      const ratios = used.map((p) => p.ratio);
      const cpuRatios = used.map((p) => p.cpuRatio).filter((x) => x != null);
      const cleanSlices = rs.filter((r) => !r.contaminated);
      const rsUsed = cleanSlices.length ? cleanSlices : rs;
      out[cfg.id][method] = {
        slices: rs.length,
        cleanSlices: cleanSlices.length,
        pairs: pairs.length,
        cleanPairs: cleanPairs.length,
        rps: median(rsUsed.map((r) => r.rps)),
        p50: median(rsUsed.map((r) => r.p50)),
        p99: median(rsUsed.map((r) => r.p99)),
        rpsMin: Math.min(...rsUsed.map((r) => r.rps)),
        rpsMax: Math.max(...rsUsed.map((r) => r.rps)),
        proxyCpuUsPerReq: median(rsUsed.map((r) => r.proxyCpuUsPerReq ?? NaN)),
        upstreamCpuUsPerReq: median(rsUsed.map((r) => r.upstreamCpuUsPerReq)),
        ratioVsMinimal: cfg.id === 'a' ? 1 : median(ratios),
        ratioMin: ratios.length ? Math.min(...ratios) : null,
        ratioMax: ratios.length ? Math.max(...ratios) : null,
        pairedRatios: ratios.map((x) => Math.round(x * 1000) / 1000),
        cpuRatioVsMinimal: cfg.id === 'a' ? 1 : (cpuRatios.length ? median(cpuRatios) : null),
        errors: rs.reduce((s, r) => s + r.errors + r.non2xx + r.timeouts, 0),
      };
      out[cfg.id][method].meetsTarget = out[cfg.id][method].ratioVsMinimal >= 1.2;
    }
  }
  return out;
}

function printTable(agg) {
  const f = (x, d = 0) => (Number.isFinite(x) ? x.toFixed(d) : '-');
  const side = (m) => {
    if (!m) return ' '.repeat(37);
    const range = m.ratioMin == null ? '' : `${f(m.ratioMin, 2)}-${f(m.ratioMax, 2)}`;
    const dirty = m.cleanPairs === 0 && m.pairs > 0 ? '*' : ' ';
    return `${f(m.rps).padStart(6)} ${f(m.p50).padStart(3)} ${f(m.p99).padStart(4)} ${f(m.ratioVsMinimal, 2).padStart(5)}${m.meetsTarget ? '✓' : ' '} ${range.padStart(9)}${dirty}${f(m.proxyCpuUsPerReq, 0).padStart(4)}`;
  };
  const h = (m) => `${(m + '/s').padStart(6)} ${'p50'.padStart(3)} ${'p99'.padStart(4)} ${'×a'.padStart(5)}  ${'range'.padStart(9)} ${'µs/r'.padStart(4)}`;
  const head = `${'config'.padEnd(14)} ${'engine'.padEnd(40)} | ${h('GET')} | ${h('POST')}`;
  console.log('\n' + head + '\n' + '-'.repeat(head.length));
  for (const [id, v] of Object.entries(agg)) {
    console.log(`${id.padEnd(14)} ${v.label.slice(0, 40).padEnd(40)} | ${side(v.GET)} | ${side(v.POST)}`);
  }
  console.log('r/s, p50/p99 (ms, autocannon, 1 ms resolution), µs/r (proxy CPU µs per request, /proc) = medians over slices;');
  console.log('×a = median of paired ratios vs the neighbouring (a) slices (range = min-max of those ratios); ✓ = ×a ≥ 1.2.');
  console.log(`Slices during which other processes used > ${MAX_FOREIGN}% of a core are left out when clean ones exist; * = no clean pair, value uses contaminated slices.`);
}

async function main() {
  console.log(`strangler-proxy forwarding-engine bench — node ${process.version}, ${NCPU} cpu (${os.cpus()[0]?.model ?? '?'})`);
  console.log(`profile ${FULL ? 'full' : 'quick'}: ${SLICE}s slices, ${CYCLES} cycles, warm-up ${WARMUP}s, ${CONNECTIONS} connections; ${selected.length} configs (${slicesPerCycle} slices/cycle); est. ${estimateS}s, budget ${BUDGET_S}s`);
  console.log(`pinning: ${PIN ? `upstream + proxies on cpu ${SERVER_CPU}, load generator on cpu ${LOAD_CPU}` : 'none (taskset unavailable or < 2 cpus)'}; autocannon ${AUTOCANNON}`);
  if (estimateS > BUDGET_S) console.log('warning: estimate exceeds budget; slices past the budget are skipped');
  for (const c of selected) if (!(await portFree(c.port))) throw new Error(`port ${c.port} is in use (use --base-port)`);

  const upstream = spawnNode(SERVER_CPU, [path.join(HERE, 'upstream.mjs')], { PORT: String(BASE_PORT) }, ['ignore', 'ignore', 'inherit'], 'upstream');
  await waitListening(BASE_PORT, upstream);
  const procs = new Map();
  for (const cfg of selected) {
    if (!cfg.file) continue;
    const child = spawnNode(SERVER_CPU, [path.join(HERE, cfg.file)], {
      PORT: String(cfg.port), UPSTREAM_PORT: String(BASE_PORT),
      METRICS: 'none', LOG: 'none', ROUTE: '0', LOG_FILE: '/dev/null', ...(cfg.env ?? {}),
    }, ['ignore', 'ignore', 'inherit'], cfg.id);
    procs.set(cfg.id, child);
  }
  for (const cfg of selected) if (cfg.file) await waitListening(cfg.port, procs.get(cfg.id));
  startLoadgen();

  const slices = [];
  let truncated = false;
  let micro = null;
  try {
    console.log('warm-up ...');
    for (const method of ['GET', 'POST']) for (const cfg of selected) await load(cfg.port, method, WARMUP);
    remainingSlices = CYCLES * slicesPerCycle;
    outer: for (let cycle = 1; cycle <= CYCLES; cycle++) {
      for (const method of ['GET', 'POST']) {
        const order = shuffled(others, SEED + cycle * 7 + (method === 'POST' ? 3 : 0));
        const seqCfgs = [];
        for (const c of order) seqCfgs.push(selected.find((x) => x.id === 'a'), c);
        seqCfgs.push(selected.find((x) => x.id === 'a'));
        console.log(`cycle ${cycle}/${CYCLES} ${method}`);
        for (let seq = 0; seq < seqCfgs.length; seq++) {
          if (Date.now() + (SLICE + 2 + (MICRO ? 30 : 0)) * 1000 > deadline) { truncated = true; console.log(`budget of ${BUDGET_S}s reached; stopping early`); break outer; }
          const cfg = seqCfgs[seq];
          for (const [id, ch] of procs) if (!alive(ch.pid)) throw new Error(`${id} died`);
          remainingSlices--;
          const s = await measure(cfg, method, cycle, seq, procs, upstream);
          slices.push(s);
          const cpu = s.proxyCpuUsPerReq != null ? `  ${s.proxyCpuUsPerReq.toFixed(1)} µs/req (${s.proxyCpuPct.toFixed(0)}% cpu)` : '';
          const bad = (s.errors || s.non2xx || s.timeouts ? `  !! errors=${s.errors} non2xx=${s.non2xx} timeouts=${s.timeouts}` : '') + (s.contaminated ? `  (other processes: ${s.foreignCpuPct}% cpu)` : '');
          console.log(`  ${String(s.t).padStart(6)}s ${cfg.id.padEnd(15)} ${method.padEnd(4)} ${s.rps.toFixed(0).padStart(7)} req/s  p50 ${s.p50} p99 ${s.p99} ms${cpu}${bad}`);
        }
      }
    }
  } finally {
    loadgen.stdin.end();
    await stop(loadgen);
    for (const ch of procs.values()) await stop(ch);
    await stop(upstream);
  }

  if (MICRO && Date.now() + 25_000 < deadline) {
    console.log('\nfeature micro-cost (in-process, one child per variant and round, pinned to the server cpu; min over rounds):');
    const { runAll } = await import('./microcost.mjs');
    micro = await runAll({ spawnNode: (args, env) => spawnNode(SERVER_CPU, args, env, ['ignore', 'ignore', 'pipe'], 'microcost') });
    for (const [k, v] of Object.entries(micro)) {
      console.log(`  ${k.padEnd(14)} ${v.error ?? `${v.cpuNsPerOp.toFixed(0).padStart(6)} ns/op cpu  (${v.cpuNsPerOpOverBaseline.toFixed(0)} ns over baseline)`}`);
    }
  }

  const agg = aggregate(slices);
  printTable(agg);
  const result = {
    date: new Date().toISOString(),
    machine: { cpus: NCPU, model: os.cpus()[0]?.model ?? null, node: process.version, platform: `${os.type()} ${os.release()}`, memGiB: Math.round(os.totalmem() / 2 ** 30) },
    params: {
      maxForeignPct: MAX_FOREIGN, retries: RETRIES,
      profile: FULL ? 'full' : 'quick', sliceS: SLICE, warmupS: WARMUP, cycles: CYCLES, connections: CONNECTIONS, eApi: E_API,
      pinning: PIN ? { serverCpu: SERVER_CPU, loadCpu: LOAD_CPU } : null, getPath: GET_PATH, postPath: POST_PATH,
      postBody: POST_BODY, postBodyBytes: Buffer.byteLength(POST_BODY), autocannon: AUTOCANNON, seed: SEED,
    },
    versions: versions(),
    truncated,
    foreign: { maxForeignPct: MAX_FOREIGN, retries: RETRIES, discardedSlices: discarded.length, contaminatedSlicesKept: slices.filter((x) => x.contaminated).length, invalidSlicesKept: slices.filter((x) => x.invalid).length },
    elapsedS: Math.round((Date.now() - T_START) / 1000),
    summary: agg,
    micro,
    slices,
    discarded,
  };
  fs.writeFileSync(OUT, JSON.stringify(result, null, 2) + '\n');
  console.log(`\nwrote ${path.relative(process.cwd(), OUT) || OUT} (${result.elapsedS}s)`);
  const leftovers = [...children.keys()].filter(alive);
  if (leftovers.length) { console.error(`stopping leftover children: ${leftovers.join(' ')}`); killAllSync(); }
}

function versions() {
  const v = {};
  for (const p of ['undici', 'express', 'http-proxy-middleware', 'http-proxy', 'prom-client', 'winston']) {
    try { v[p] = JSON.parse(fs.readFileSync(path.join(REPO, 'node_modules', p, 'package.json'), 'utf8')).version; } catch { v[p] = null; }
  }
  try { v.autocannon = JSON.parse(fs.readFileSync(path.join(path.dirname(AUTOCANNON), 'package.json'), 'utf8')).version; } catch { /* ignore */ }
  return v;
}

main().catch((e) => { console.error(e); killAllSync(); process.exit(1); });
