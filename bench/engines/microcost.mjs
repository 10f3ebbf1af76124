// In-process cost of the per-request features, using exactly the code the
// proxies use (./features.mjs). One variant per process (features are chosen
// by env at import time):
//   node bench/engines/microcost.mjs                 -> runs all variants, prints a table
//   MICRO_VARIANT=winston node bench/engines/microcost.mjs  -> one variant, JSON on stderr
// Each op = one done(...) call (metrics record and/or access-log line).
// Ops are issued in batches of 1000 with an event-loop turn in between (like
// a server does), and the clock runs until async log writes have drained.
// "cpu" is process CPU time (all threads, i.e. including libuv's fs writes).
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const VARIANTS = {
  baseline: {},
  'prom-labels': { METRICS: 'labels' },
  'prom-child': { METRICS: 'child' },
  'prom-fast': { METRICS: 'fast' },
  winston: { LOG: 'winston' },
  'hand-buffered': { LOG: 'hand' },
  'hand-stdout': { LOG: 'stdout' },
  'full-winston': { METRICS: 'labels', LOG: 'winston', ROUTE: '1' },
  'full-hand': { METRICS: 'fast', LOG: 'hand', ROUTE: '1' },
};

const N = Number(process.env.MICRO_N ?? 100_000);
const BATCH = 1000;
const turn = () => new Promise((r) => setImmediate(r));

async function one() {
  const f = await import('./features.mjs');
  const urls = ['/api/v2/builders/linux64-opt/builds?limit=1', '/api/v2/forceschedulers/force'];
  const run = async (n) => {
    for (let i = 0; i < n; i += BATCH) {
      for (let j = 0; j < BATCH; j++) {
        const post = (j & 3) === 0;
        f.done(post ? 'POST' : 'GET', urls[post ? 1 : 0], 200, performance.now() - 3, post ? 'force' : 'builders', 'legacy');
      }
      await turn();
    }
    // let pending async writes (winston stream / buffered fd writes) drain
    for (let k = 0; k < 200; k++) await turn();
    await new Promise((r) => setTimeout(r, 20));
  };
  await run(Math.min(N, 30_000)); // warm-up / JIT
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await run(N);
  const wallMs = performance.now() - t0 - 20; // minus the final fixed sleep
  const c = process.cpuUsage(c0);
  process.stderr.write(JSON.stringify({ n: N, wallNsPerOp: (wallMs * 1e6) / N, cpuNsPerOp: ((c.user + c.system) * 1e3) / N }) + '\n');
}

/**
 * Runs every variant in its own child process, `rounds` times interleaved
 * (this VM's speed drifts), and keeps the minimum per variant.
 * Returns {variant: {wallNsPerOp, cpuNsPerOp, cpuNsPerOpOverBaseline, all}}.
 */
export async function runAll({ rounds = Number(process.env.MICRO_ROUNDS ?? 3), spawnNode = (args, env) => spawn(process.execPath, args, { env, stdio: ['ignore', 'ignore', 'pipe'] }) } = {}) {
  const self = fileURLToPath(import.meta.url);
  const all = {};
  for (let r = 0; r < rounds; r++) {
    for (const [name, env] of Object.entries(VARIANTS)) {
      const child = spawnNode([self], { ...process.env, METRICS: 'none', LOG: 'none', ROUTE: '0', ...env, MICRO_VARIANT: name });
      let err = '';
      child.stderr.on('data', (d) => { err += d; });
      const code = await new Promise((res) => child.on('exit', res));
      const line = err.trim().split('\n').pop();
      (all[name] ??= []).push((() => { try { return JSON.parse(line); } catch { return { error: `exit ${code}: ${err.slice(0, 300)}` }; } })());
    }
  }
  const out = {};
  for (const [name, rs] of Object.entries(all)) {
    const ok = rs.filter((x) => !x.error);
    if (!ok.length) { out[name] = { error: rs[0].error }; continue; }
    out[name] = {
      wallNsPerOp: Math.min(...ok.map((x) => x.wallNsPerOp)),
      cpuNsPerOp: Math.min(...ok.map((x) => x.cpuNsPerOp)),
      all: ok.map((x) => Math.round(x.cpuNsPerOp)),
    };
  }
  const base = out.baseline?.cpuNsPerOp ?? 0;
  for (const v of Object.values(out)) if (v.cpuNsPerOp != null) v.cpuNsPerOpOverBaseline = v.cpuNsPerOp - base;
  return out;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  if (process.env.MICRO_VARIANT) {
    await one();
  } else {
    const res = await runAll();
    console.log('variant          wall ns/op   cpu ns/op   over baseline   (min of rounds; all rounds cpu ns/op)');
    for (const [k, v] of Object.entries(res)) {
      if (v.error) { console.log(k.padEnd(16), v.error); continue; }
      console.log(k.padEnd(16), v.wallNsPerOp.toFixed(0).padStart(10), v.cpuNsPerOp.toFixed(0).padStart(11), v.cpuNsPerOpOverBaseline.toFixed(0).padStart(14), '  ', v.all.join(' '));
    }
  }
}
